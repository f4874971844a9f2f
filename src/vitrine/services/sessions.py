"""Server-side sessions of the admin UI, kept in the database.

The browser holds a random token; the database holds only its SHA-256, the user and
the session's CSRF token. Signing out, or the end of the session's lifetime, ends it
for every process that shares the database.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import Engine, delete, select

from vitrine.catalog.models import AdminSession, User, utcnow
from vitrine.services.users import UserInfo, as_utc, user_info


@dataclass(frozen=True)
class SessionInfo:
    user: UserInfo
    csrf_token: str


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class SessionService:
    def __init__(self, engine: Engine, lifetime_hours: int = 12) -> None:
        self.engine = engine
        self.lifetime = timedelta(hours=lifetime_hours)

    def create(self, user_id: int) -> tuple[str, str]:
        """A new session: (the cookie's token, the CSRF token)."""
        token = secrets.token_urlsafe(32)
        csrf = secrets.token_urlsafe(32)
        now = utcnow()
        with self.engine.begin() as conn:
            # Expired sessions are swept on every sign-in; nothing else has to.
            conn.execute(delete(AdminSession).where(AdminSession.expires_at < now))
            conn.execute(
                AdminSession.__table__.insert().values(
                    id=_digest(token),
                    user_id=user_id,
                    csrf_token=csrf,
                    created_at=now,
                    expires_at=now + self.lifetime,
                )
            )
        return token, csrf

    def get(self, token: str) -> SessionInfo | None:
        with self.engine.connect() as conn:
            row = conn.execute(
                select(AdminSession.csrf_token, AdminSession.expires_at, User.__table__)
                .join(User, User.id == AdminSession.user_id)
                .where(AdminSession.id == _digest(token))
            ).first()
        if row is None:
            return None
        expires = as_utc(row.expires_at)
        if expires is None or expires <= utcnow():
            return None
        return SessionInfo(user_info(row), row.csrf_token)

    def end(self, token: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(delete(AdminSession).where(AdminSession.id == _digest(token)))

    def end_all(self, user_id: int) -> None:
        with self.engine.begin() as conn:
            conn.execute(delete(AdminSession).where(AdminSession.user_id == user_id))
