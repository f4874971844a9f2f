"""People who use the admin UI: argon2-hashed passwords, roles, and lockout.

After ``lockout_attempts`` consecutive failed sign-ins an account is locked for
``lockout_minutes``; while locked even the right password is refused. An unknown
name costs the same argon2 work as a known one, so timing does not tell which names
exist.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlalchemy import Engine, delete, select, update

from vitrine.catalog.models import User, as_utc, utcnow

ROLES = ("admin", "analyst")
MIN_PASSWORD_LENGTH = 10
_hasher = PasswordHasher()
# Verified against when the name is unknown, so that both cases cost one argon2 check.
_DUMMY_HASH = _hasher.hash("vitrine-no-such-user")


class UserError(ValueError):
    """A user that cannot be created or changed; the message says why."""


@dataclass(frozen=True)
class UserInfo:
    """A user as the admin UI sees them (never the password hash)."""

    id: int
    username: str
    role: str
    locked_until: datetime | None
    last_login_at: datetime | None
    created_at: datetime

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


@dataclass(frozen=True)
class SignIn:
    """The outcome of a sign-in: the user, or why not (``invalid`` or ``locked``)."""

    user: UserInfo | None
    reason: str = ""
    locked_until: datetime | None = None


def user_info(row: Any) -> UserInfo:
    return UserInfo(
        row.id,
        row.username,
        row.role,
        as_utc(row.locked_until),
        as_utc(row.last_login_at),
        as_utc(row.created_at) or utcnow(),
    )


def check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise UserError(f"a password needs at least {MIN_PASSWORD_LENGTH} characters")


class UserService:
    """People who sign in to the admin UI: argon2 password hashes, roles, lockout."""

    def __init__(
        self, engine: Engine, lockout_attempts: int = 5, lockout_minutes: int = 15
    ) -> None:
        self.engine = engine
        self.lockout_attempts = lockout_attempts
        self.lockout = timedelta(minutes=lockout_minutes)

    def create(self, username: str, password: str, role: str) -> UserInfo:
        username = username.strip()
        if not username or len(username) > 64 or any(c.isspace() for c in username):
            raise UserError("a user name is 1 to 64 characters without spaces")
        if role not in ROLES:
            raise UserError(f"role must be one of {', '.join(ROLES)}, not {role!r}")
        check_password(password)
        with self.engine.begin() as conn:
            exists = conn.execute(select(User.id).where(User.username == username)).first()
            if exists is not None:
                raise UserError(f"user {username!r} already exists")
            conn.execute(
                User.__table__.insert().values(
                    username=username,
                    password_hash=_hasher.hash(password),
                    role=role,
                    failed_logins=0,
                    created_at=utcnow(),
                )
            )
        user = self.get(username)
        assert user is not None
        return user

    def get(self, username: str) -> UserInfo | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(User.__table__).where(User.username == username)).first()
        return user_info(row) if row else None

    def get_by_id(self, user_id: int) -> UserInfo | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(User.__table__).where(User.id == user_id)).first()
        return user_info(row) if row else None

    def has_admin(self) -> bool:
        """Whether any admin account exists (the first-run setup ends with the first)."""
        with self.engine.connect() as conn:
            return (
                conn.execute(select(User.id).where(User.role == "admin").limit(1)).first()
                is not None
            )

    def list(self) -> list[UserInfo]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(User.__table__).order_by(User.username)).all()
        return [user_info(r) for r in rows]

    def authenticate(self, username: str, password: str) -> SignIn:
        with self.engine.connect() as conn:
            row = conn.execute(select(User.__table__).where(User.username == username)).first()
        if row is None:
            self._verify(_DUMMY_HASH, password)
            return SignIn(None, "invalid")
        now = utcnow()
        locked_until = as_utc(row.locked_until)
        if locked_until is not None and locked_until > now:
            return SignIn(None, "locked", locked_until)
        if not self._verify(row.password_hash, password):
            return self._failed(row.id, row.failed_logins, now)
        values: dict[str, Any] = {"failed_logins": 0, "locked_until": None, "last_login_at": now}
        if _hasher.check_needs_rehash(row.password_hash):
            values["password_hash"] = _hasher.hash(password)
        with self.engine.begin() as conn:
            conn.execute(update(User).where(User.id == row.id).values(**values))
        user = self.get_by_id(row.id)
        return SignIn(user)

    def _failed(self, user_id: int, failures: int, now: datetime) -> SignIn:
        failures += 1
        locked = None
        if failures >= self.lockout_attempts:
            locked, failures = now + self.lockout, 0
        with self.engine.begin() as conn:
            conn.execute(
                update(User)
                .where(User.id == user_id)
                .values(failed_logins=failures, locked_until=locked)
            )
        if locked is not None:
            return SignIn(None, "locked", locked)
        return SignIn(None, "invalid")

    @staticmethod
    def _verify(password_hash: str, password: str) -> bool:
        try:
            return _hasher.verify(password_hash, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False

    def set_password(self, username: str, password: str) -> None:
        check_password(password)
        with self.engine.begin() as conn:
            result = conn.execute(
                update(User)
                .where(User.username == username)
                .values(password_hash=_hasher.hash(password), failed_logins=0, locked_until=None)
            )
        if result.rowcount == 0:
            raise UserError(f"no user named {username!r}")

    def unlock(self, username: str) -> None:
        with self.engine.begin() as conn:
            result = conn.execute(
                update(User)
                .where(User.username == username)
                .values(failed_logins=0, locked_until=None)
            )
        if result.rowcount == 0:
            raise UserError(f"no user named {username!r}")

    def delete(self, username: str) -> None:
        with self.engine.begin() as conn:
            result = conn.execute(delete(User).where(User.username == username))
        if result.rowcount == 0:
            raise UserError(f"no user named {username!r}")
