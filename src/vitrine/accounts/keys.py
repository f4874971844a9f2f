"""API keys: created once in clear, kept only as a hash, checked in constant time.

A key looks like ``vtr_<prefix>_<secret>``; the prefix finds the row, the SHA-256 of
the whole key (256 random bits: a slow password hash adds nothing) must match.

Server keys climb a ladder (read < write < admin). A *storefront* key stands outside it:
it is meant to sit in a shop's pages, so it may only read recommendations, search and
product cards and send customer events, from the origins listed on it, within its own
rate limit (see ``vitrine.api.auth``).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import Engine, select, update
from sqlalchemy.orm import Session

from vitrine.catalog.models import ApiKey, utcnow

SCOPES = ("read", "write", "admin")
# A scope grants itself and every scope before it.
_RANK = {scope: i for i, scope in enumerate(SCOPES)}
STOREFRONT = "storefront"  # a key for browsers, outside the ladder
KINDS = (*SCOPES, STOREFRONT)


@dataclass(frozen=True)
class KeyInfo:
    """A verified API key: its name, prefix and scope (never the key itself)."""

    id: int
    name: str
    prefix: str
    scope: str
    created_at: datetime
    revoked_at: datetime | None
    origins: tuple[str, ...] = ()  # storefront keys: the pages' origins allowed to use it
    rate_limit: float | None = None  # storefront keys: requests per second (None: default)

    @property
    def storefront(self) -> bool:
        return self.scope == STOREFRONT

    def allows(self, needed: str) -> bool:
        """Whether the key's scope grants ``needed`` (a storefront key grants no scope of
        the ladder: routes open to it say so themselves)."""
        return self.scope in _RANK and _RANK[self.scope] >= _RANK[needed]


def _hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def _info(row: Any) -> KeyInfo:
    origins = tuple((row.allowed_origins or "").split())
    return KeyInfo(
        row.id, row.name, row.prefix, row.scopes, row.created_at, row.revoked_at,
        origins, row.rate_limit,
    )  # fmt: skip


def normalise_origin(origin: str) -> str:
    """``scheme://host[:port]`` in lower case, as browsers send it in ``Origin``; a
    ValueError for anything else (a path, a wildcard, a missing scheme)."""
    text = origin.strip().rstrip("/").lower()
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname or "*" in text:
        raise ValueError(f"origin {origin!r} is not of the form https://shop.example[:port]")
    if parts.path or parts.query or parts.fragment or parts.username or parts.password:
        raise ValueError(f"origin {origin!r} has more than a scheme, host and port")
    try:
        parts.port  # noqa: B018 - raises on a port out of range
    except ValueError as exc:
        raise ValueError(f"origin {origin!r} has an invalid port") from exc
    return text


class KeyService:
    """Creates, checks and revokes keys. Checks are cached for ``cache_seconds``, so a
    revocation reaches every process within that time."""

    def __init__(self, engine: Engine, cache_seconds: float = 5.0) -> None:
        self.engine = engine
        self.cache_seconds = cache_seconds
        self._cache: dict[str, tuple[float, KeyInfo | None]] = {}
        self._origins: tuple[float, frozenset[str]] | None = None

    def create(
        self,
        name: str,
        scope: str,
        origins: Iterable[str] = (),
        rate_limit: float | None = None,
    ) -> tuple[KeyInfo, str]:
        """A new key; the clear key is returned once and never stored. ``origins`` and
        ``rate_limit`` belong to storefront keys only."""
        if scope not in KINDS:
            raise ValueError(f"scope must be one of {', '.join(KINDS)}, not {scope!r}")
        if not name.strip():
            raise ValueError("a key needs a name")
        allowed = sorted({normalise_origin(o) for o in origins})
        if scope != STOREFRONT and (allowed or rate_limit is not None):
            raise ValueError("allowed origins and a rate limit belong to storefront keys")
        if rate_limit is not None and not rate_limit > 0:
            raise ValueError("a key's rate limit must be a positive number of requests/s")
        prefix = secrets.token_hex(4)
        key = f"vtr_{prefix}_{secrets.token_urlsafe(32)}"
        with Session(self.engine) as session, session.begin():
            row = ApiKey(
                name=name, prefix=prefix, key_hash=_hash(key), scopes=scope,
                allowed_origins=" ".join(allowed) or None, rate_limit=rate_limit,
            )  # fmt: skip
            session.add(row)
            session.flush()
            info = _info(row)
        self._origins = None
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

    def revoke_id(self, key_id: int) -> bool:
        """Revoke one key by its id; False when there is no such active key."""
        with self.engine.begin() as conn:
            result = conn.execute(
                update(ApiKey)
                .where(ApiKey.id == key_id, ApiKey.revoked_at.is_(None))
                .values(revoked_at=utcnow())
            )
        self._cache.clear()
        self._origins = None
        return result.rowcount > 0

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
        self._origins = None
        return int(result.rowcount)

    def storefront_origins(self) -> frozenset[str]:
        """Every origin listed on an active storefront key (cached like checks): the
        origins whose CORS preflight requests are answered."""
        now = time.monotonic()
        cached = self._origins
        if cached is not None and now - cached[0] < self.cache_seconds:
            return cached[1]
        query = select(ApiKey.allowed_origins).where(
            ApiKey.scopes == STOREFRONT, ApiKey.revoked_at.is_(None)
        )
        with self.engine.connect() as conn:
            found = frozenset(o for (text,) in conn.execute(query) for o in (text or "").split())
        self._origins = (now, found)
        return found

    def list(self) -> list[KeyInfo]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(ApiKey.__table__).order_by(ApiKey.id)).all()
        return [_info(r) for r in rows]
