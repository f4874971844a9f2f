"""API-key authentication and scopes, and per-key rate limits."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Request, Security
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from vitrine.accounts.keys import KeyInfo
from vitrine.api.problems import Problem


class RateLimiter:
    """A token bucket per key: ``rate`` requests per second, bursts up to ``burst``."""

    def __init__(self, rate: float, burst: int) -> None:
        self.rate = rate
        self.burst = burst
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def allow(self, key: str) -> tuple[bool, float]:
        """Whether a request may pass now, and if not, how many seconds until it may."""
        if self.rate <= 0:
            return True, 0.0
        now = time.monotonic()
        with self._lock:
            tokens, last = self._buckets.get(key, (float(self.burst), now))
            tokens = min(float(self.burst), tokens + (now - last) * self.rate)
            if tokens >= 1.0:
                self._buckets[key] = (tokens - 1.0, now)
                return True, 0.0
            self._buckets[key] = (tokens, now)
            return False, (1.0 - tokens) / self.rate

    def policy(self) -> str:
        """The ``RateLimit-Policy`` header (draft-ietf-httpapi-ratelimit-headers): a quota of
        ``burst`` requests, refilled in full in ``burst / rate`` seconds."""
        window = max(1, math.ceil(self.burst / self.rate))
        return f'"default";q={self.burst};w={window}'

    def limited_headers(self, retry: float) -> dict[str, str]:
        """The headers of a 429: nothing is left now; one request may pass in ``retry`` s."""
        seconds = str(max(1, math.ceil(retry)))
        return {
            "Retry-After": seconds,
            "RateLimit-Policy": self.policy(),
            "RateLimit": f'"default";r=0;t={seconds}',
        }


# Declared for the OpenAPI document (security schemes); the key is read by _presented_key.
api_key_header = APIKeyHeader(
    name="X-API-Key", auto_error=False, description="An API key (`vitrine keys create`)."
)
bearer = HTTPBearer(auto_error=False, description="The same API key as a bearer token.")


def _presented_key(request: Request) -> str | None:
    key = request.headers.get("x-api-key")
    if key:
        return key.strip()
    auth = request.headers.get("authorization", "")
    scheme, _, value = auth.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return None


def require(scope: str) -> Callable[[Request], Awaitable[KeyInfo]]:
    """A dependency: the request must carry a valid key with at least ``scope``."""

    async def dependency(
        request: Request,
        _api_key: Annotated[str | None, Security(api_key_header)],
        _bearer: Annotated[HTTPAuthorizationCredentials | None, Security(bearer)],
    ) -> KeyInfo:
        key = _presented_key(request)
        if key is None:
            raise Problem(
                401,
                "an API key is required: send it as X-API-Key or Authorization: Bearer",
                "missing-api-key",
            )
        info = request.app.state.keys.verify(key)
        if info is None:
            raise Problem(401, "the API key is not valid or was revoked", "invalid-api-key")
        if not info.allows(scope):
            raise Problem(
                403,
                f"this key has scope {info.scope!r}; this request needs {scope!r}",
                "insufficient-scope",
            )
        limiter: RateLimiter = request.app.state.rate_limiter
        allowed, retry = limiter.allow(info.prefix)
        if not allowed:
            raise Problem(
                429,
                f"rate limit exceeded for key {info.name!r}; retry in {retry:.2f} s",
                "rate-limited",
                headers=limiter.limited_headers(retry),
                retry_after=round(retry, 3),
            )
        request.state.api_key = info
        return info

    return dependency
