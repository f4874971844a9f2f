"""classification: model registry and review flags on labels

Revision ID: 0003_classification
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003_classification"
down_revision = "0005_change_feed"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "classifier_models",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("field", sa.String(length=128), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("version", sa.String(length=96), nullable=False),
        sa.Column("algorithm", sa.String(length=64), nullable=False),
        sa.Column("feature_groups", sa.JSON(), nullable=False),
        sa.Column("embedding_version", sa.String(length=96), nullable=False),
        sa.Column("feature_version", sa.String(length=32), nullable=False),
        sa.Column("train_size", sa.Integer(), nullable=False),
        sa.Column("validation_size", sa.Integer(), nullable=False),
        sa.Column("corrections_used", sa.Integer(), nullable=False),
        sa.Column("metrics", sa.JSON(), nullable=False),
        sa.Column("params", sa.JSON(), nullable=False),
        sa.Column("comparison", sa.JSON(), nullable=True),
        sa.Column("artifact_key", sa.String(length=512), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("trigger", sa.String(length=32), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("activated_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("version", name="uq_classifier_models_version"),
        sqlite_autoincrement=True,
    )
    op.create_index(
        "ix_classifier_models_field_active", "classifier_models", ["field", "active"], unique=False
    )
    with op.batch_alter_table("labels", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("needs_review", sa.Boolean(), nullable=False, server_default=sa.false())
        )


def downgrade() -> None:
    with op.batch_alter_table("labels", schema=None) as batch_op:
        batch_op.drop_column("needs_review")
    op.drop_index("ix_classifier_models_field_active", table_name="classifier_models")
    op.drop_table("classifier_models")
