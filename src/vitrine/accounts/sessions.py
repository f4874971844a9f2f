"""Server-side sessions of the admin UI, kept in the database.

The browser holds a random token; the database holds only its SHA-256 and the user. The
session's CSRF token is derived from the browser's token (an HMAC), so nothing stored
lets anyone forge either of them. Signing out, or the end of the session's lifetime,
ends it for every process that shares the database.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import Engine, delete, select

from vitrine.accounts.users import UserInfo, as_utc, user_info
from vitrine.catalog.models import AdminSession, User, utcnow


@dataclass(frozen=True)
class SessionInfo:
    """A live session: its user and the CSRF token derived from its token."""

    user: UserInfo
    csrf_token: str


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def csrf_token(token: str) -> str:
    """The CSRF token of the session whose cookie carries ``token``: HMAC-SHA256 keyed
    with the session token, so only the browser holding the cookie (and the server while
    it serves that browser) can compute it, and the database never holds it."""
    return hmac.new(token.encode(), b"csrf", hashlib.sha256).hexdigest()


class SessionService:
    """Admin sign-in sessions: only a hash of each session token is stored."""

    def __init__(self, engine: Engine, lifetime_hours: int = 12) -> None:
        self.engine = engine
        self.lifetime = timedelta(hours=lifetime_hours)

    def create(self, user_id: int) -> tuple[str, str]:
        """A new session: (the cookie's token, the CSRF token)."""
        token = secrets.token_urlsafe(32)
        now = utcnow()
        with self.engine.begin() as conn:
            # Expired sessions are swept on every sign-in; nothing else has to.
            conn.execute(delete(AdminSession).where(AdminSession.expires_at < now))
            conn.execute(
                AdminSession.__table__.insert().values(
                    id=_digest(token),
                    user_id=user_id,
                    created_at=now,
                    expires_at=now + self.lifetime,
                )
            )
        return token, csrf_token(token)

    def get(self, token: str) -> SessionInfo | None:
        with self.engine.connect() as conn:
            row = conn.execute(
                select(AdminSession.expires_at, User.__table__)
                .join(User, User.id == AdminSession.user_id)
                .where(AdminSession.id == _digest(token))
            ).first()
        if row is None:
            return None
        expires = as_utc(row.expires_at)
        if expires is None or expires <= utcnow():
            return None
        return SessionInfo(user_info(row), csrf_token(token))

    def end(self, token: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(delete(AdminSession).where(AdminSession.id == _digest(token)))

    def end_all(self, user_id: int) -> None:
        with self.engine.begin() as conn:
            conn.execute(delete(AdminSession).where(AdminSession.user_id == user_id))
