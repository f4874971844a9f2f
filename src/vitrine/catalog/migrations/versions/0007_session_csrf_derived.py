"""admin sessions keep no CSRF token: it is derived from the session's own token

Revision ID: 0007_session_csrf_derived
Revises: 0004_events
Create Date: 2026-11-28 10:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007_session_csrf_derived"
down_revision = "0004_events"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # The CSRF token is now HMAC(session token, "csrf"), computed on each request: the
    # table keeps only the SHA-256 of the session token. Open sessions stay valid (their
    # pages show the derived token on the next load).
    with op.batch_alter_table("admin_sessions", schema=None) as batch_op:
        batch_op.drop_column("csrf_token")


def downgrade() -> None:
    # The old schema needs a stored token that cannot be rebuilt: everyone signs in again.
    op.execute(sa.text("DELETE FROM admin_sessions"))
    with op.batch_alter_table("admin_sessions", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("csrf_token", sa.String(length=64), nullable=False, server_default="")
        )
