"""storefront keys: the origins allowed to use a key, and its own rate limit

Revision ID: 0012_storefront_keys
Revises: 0011_webhooks
Create Date: 2026-12-03 16:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012_storefront_keys"
down_revision = "0011_webhooks"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("api_keys", schema=None) as batch_op:
        batch_op.add_column(sa.Column("allowed_origins", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("rate_limit", sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("api_keys", schema=None) as batch_op:
        batch_op.drop_column("rate_limit")
        batch_op.drop_column("allowed_origins")
