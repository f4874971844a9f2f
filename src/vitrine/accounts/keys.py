"""API keys: created once in clear, kept only as a hash, checked in constant time.

A key looks like ``vtr_<prefix>_<secret>``; the prefix finds the row, the SHA-256 of
the whole key (256 random bits: a slow password hash adds nothing) must match.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, select, update
from sqlalchemy.orm import Session

from vitrine.catalog.models import ApiKey, utcnow

SCOPES = ("read", "write", "admin")
# A scope grants itself and every scope before it.
_RANK = {scope: i for i, scope in enumerate(SCOPES)}


@dataclass(frozen=True)
class KeyInfo:
    """A verified API key: its name, prefix and scope (never the key itself)."""

    id: int
    name: str
    prefix: str
    scope: str
    created_at: datetime
    revoked_at: datetime | None

    def allows(self, needed: str) -> bool:
        return _RANK[self.scope] >= _RANK[needed]


def _hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def _info(row: Any) -> KeyInfo:
    return KeyInfo(row.id, row.name, row.prefix, row.scopes, row.created_at, row.revoked_at)


class KeyService:
    """Creates, checks and revokes keys. Checks are cached for ``cache_seconds``, so a
    revocation reaches every process within that time."""

    def __init__(self, engine: Engine, cache_seconds: float = 5.0) -> None:
        self.engine = engine
        self.cache_seconds = cache_seconds
        self._cache: dict[str, tuple[float, KeyInfo | None]] = {}

    def create(self, name: str, scope: str) -> tuple[KeyInfo, str]:
        """A new key; the clear key is returned once and never stored."""
        if scope not in _RANK:
            raise ValueError(f"scope must be one of {', '.join(SCOPES)}, not {scope!r}")
        if not name.strip():
            raise ValueError("a key needs a name")
        prefix = secrets.token_hex(4)
        key = f"vtr_{prefix}_{secrets.token_urlsafe(32)}"
        with Session(self.engine) as session, session.begin():
            row = ApiKey(name=name, prefix=prefix, key_hash=_hash(key), scopes=scope)
            session.add(row)
            session.flush()
            info = _info(row)
        return info, key

    def verify(self, key: str) -> KeyInfo | None:
        """The key's record if the key is valid and not revoked."""
        digest = _hash(key)
        cached = self._cache.get(digest)
        now = time.monotonic()
        if cached is not None and now - cached[0] < self.cache_seconds:
            return cached[1]
        info = self._verify(key, digest)
        if len(self._cache) > 10_000:
            self._cache.clear()
        self._cache[digest] = (now, info)
        return info

    def _verify(self, key: str, digest: str) -> KeyInfo | None:
        parts = key.split("_", 2)
        if len(parts) != 3 or parts[0] != "vtr":
            return None
        with self.engine.connect() as conn:
            row = conn.execute(select(ApiKey.__table__).where(ApiKey.prefix == parts[1])).first()
        if row is None or not hmac.compare_digest(row.key_hash, digest):
            return None
        info = _info(row)
        return None if info.revoked_at is not None else info

    def revoke(self, name_or_prefix: str) -> int:
        with self.engine.begin() as conn:
            result = conn.execute(
                update(ApiKey)
                .where(
                    (ApiKey.name == name_or_prefix) | (ApiKey.prefix == name_or_prefix),
                    ApiKey.revoked_at.is_(None),
                )
                .values(revoked_at=utcnow())
            )
        self._cache.clear()
        return int(result.rowcount)

    def list(self) -> list[KeyInfo]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(ApiKey.__table__).order_by(ApiKey.id)).all()
        return [_info(r) for r in rows]
