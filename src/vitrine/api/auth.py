"""API-key authentication and scopes, and per-key rate limits.

A storefront key (see ``vitrine.accounts.keys``) passes only routes declared with
``require(scope, storefront=True)``, only from the origins listed on it (or the
service's own), and within two limits: the key's own rate and a rate per client address.
"""

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

    def allow(self, key: str, rate: float | None = None) -> tuple[bool, float]:
        """Whether a request may pass now, and if not, how many seconds until it may.
        ``rate``: this key's own rate (its burst twice that), instead of the limiter's."""
        rate, burst = self._params(rate)
        if rate <= 0:
            return True, 0.0
        now = time.monotonic()
        with self._lock:
            if len(self._buckets) > 100_000:  # client addresses come and go
                self._buckets.clear()
            tokens, last = self._buckets.get(key, (float(burst), now))
            tokens = min(float(burst), tokens + (now - last) * rate)
            if tokens >= 1.0:
                self._buckets[key] = (tokens - 1.0, now)
                return True, 0.0
            self._buckets[key] = (tokens, now)
            return False, (1.0 - tokens) / rate

    def _params(self, rate: float | None) -> tuple[float, int]:
        """(rate, burst): the limiter's, or a key's own rate with a burst of twice that."""
        return (self.rate, self.burst) if rate is None else (rate, max(1, int(2 * rate)))

    def policy(self, rate: float | None = None) -> str:
        """The ``RateLimit-Policy`` header (draft-ietf-httpapi-ratelimit-headers): a quota of
        ``burst`` requests, refilled in full in ``burst / rate`` seconds."""
        rate, burst = self._params(rate)
        window = max(1, math.ceil(burst / rate))
        return f'"default";q={burst};w={window}'

    def limited_headers(self, retry: float, rate: float | None = None) -> dict[str, str]:
        """The headers of a 429: nothing is left now; one request may pass in ``retry`` s."""
        seconds = str(max(1, math.ceil(retry)))
        return {
            "Retry-After": seconds,
            "RateLimit-Policy": self.policy(rate),
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


def _own_origin(request: Request) -> str:
    url = request.base_url
    return f"{url.scheme}://{url.netloc}".lower()


def _limit(limiter: RateLimiter, bucket: str, rate: float | None, who: str) -> None:
    allowed, retry = limiter.allow(bucket, rate)
    if not allowed:
        raise Problem(
            429,
            f"rate limit exceeded for {who}; retry in {retry:.2f} s",
            "rate-limited",
            headers=limiter.limited_headers(retry, rate),
            retry_after=round(retry, 3),
        )


def check_storefront(request: Request, info: KeyInfo) -> None:
    """A storefront key's request: from an allowed origin, within the key's rate and its
    client address's. A request without ``Origin`` is no cross-origin browser request
    (browsers send it on every one) and passes the origin check."""
    origin = request.headers.get("origin")
    if origin is not None:
        origin = origin.strip().rstrip("/").lower()
        if origin not in info.origins and origin != _own_origin(request):
            raise Problem(
                403,
                f"storefront key {info.name!r} is not allowed on pages of {origin}",
                "origin-not-allowed",
            )
    limiter: RateLimiter = request.app.state.rate_limiter
    _limit(limiter, info.prefix, info.rate_limit, f"key {info.name!r}")
    address = request.client.host if request.client else "unknown"
    clients: RateLimiter = request.app.state.client_limiter
    _limit(clients, f"{info.prefix} {address}", None, f"this address with key {info.name!r}")


def require(scope: str, *, storefront: bool = False) -> Callable[[Request], Awaitable[KeyInfo]]:
    """A dependency: the request must carry a valid key with at least ``scope``, or, where
    ``storefront``, a storefront key (see :func:`check_storefront`)."""

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
        if storefront and info.storefront:
            check_storefront(request, info)
            request.state.api_key = info
            return info
        if not info.allows(scope):
            raise Problem(
                403,
                f"this key has scope {info.scope!r}; this request needs {scope!r}",
                "insufficient-scope",
            )
        _limit(request.app.state.rate_limiter, info.prefix, None, f"key {info.name!r}")
        request.state.api_key = info
        return info

    return dependency
