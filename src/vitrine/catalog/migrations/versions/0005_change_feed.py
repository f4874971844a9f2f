"""change feed: a row per product change, written by triggers, followed by every API process

Revision ID: 0005_change_feed
Revises: 0006_admin_users
Create Date: 2026-11-21 14:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from vitrine.catalog.change_feed import drop_triggers, install_triggers

revision = "0005_change_feed"
down_revision = "0006_admin_users"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "change_feed",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("product_id", sa.String(length=128), nullable=False),
        sa.Column("op", sa.String(length=8), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_change_feed_created_at", "change_feed", ["created_at"])
    install_triggers(op.get_bind())


def downgrade() -> None:
    drop_triggers(op.get_bind())
    op.drop_index("ix_change_feed_created_at", table_name="change_feed")
    op.drop_table("change_feed")
