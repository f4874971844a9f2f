"""visual search ads: campaigns, the ads served for shared photos, events' ad ids

Revision ID: 0010_visual_ads
Revises: 0009_service_settings
Create Date: 2026-12-03 15:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010_visual_ads"
down_revision = "0009_service_settings"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "ad_campaigns",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("category_field", sa.String(length=64), nullable=False),
        sa.Column("categories", sa.JSON(), nullable=False),
        sa.Column("min_price", sa.Float(), nullable=True),
        sa.Column("max_price", sa.Float(), nullable=True),
        sa.Column("max_per_object", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )
    op.create_table(
        "ads_served",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("campaign", sa.String(length=64), nullable=False),
        sa.Column("source", sa.String(length=64), nullable=False),
        sa.Column("source_label", sa.String(length=512), nullable=True),
        sa.Column("object_index", sa.Integer(), nullable=False),
        sa.Column("box", sa.JSON(), nullable=False),
        sa.Column("product_id", sa.String(length=128), nullable=False),
        sa.Column("score", sa.Float(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("ads_served", schema=None) as batch_op:
        batch_op.create_index("ix_ads_served_campaign_created", ["campaign", "created_at"])
        batch_op.create_index(batch_op.f("ix_ads_served_source"), ["source"])
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.add_column(sa.Column("ad_id", sa.String(length=64), nullable=True))
        batch_op.create_index(batch_op.f("ix_events_ad_id"), ["ad_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_events_ad_id"))
        batch_op.drop_column("ad_id")
    with op.batch_alter_table("ads_served", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_ads_served_source"))
        batch_op.drop_index("ix_ads_served_campaign_created")
    op.drop_table("ads_served")
    op.drop_table("ad_campaigns")
