"""Webhook signatures: HMAC-SHA256 of the timestamp and the body, as Stripe signs theirs.

Every delivery carries ``Vitrine-Signature: t=<unix seconds>,v1=<hex>`` where ``<hex>``
is HMAC-SHA256, keyed with the subscription's secret (the whole ``whsec_...`` text as
UTF-8), of ``f"{t}.{body}"`` (the raw body bytes as sent). A receiver recomputes it over
the body it received, compares in constant time, and refuses a timestamp older (or newer)
than its tolerance, so that a captured delivery cannot be replayed later. Several ``v1=``
values may appear (for a future secret rotation): one match is enough.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time

HEADER = "Vitrine-Signature"
SECRET_PREFIX = "whsec_"
TOLERANCE_S = 300


class SignatureError(ValueError):
    """A delivery whose signature does not verify (the message says why)."""


def new_secret() -> str:
    """A fresh signing secret (``whsec_`` and 256 random bits)."""
    return SECRET_PREFIX + secrets.token_urlsafe(32)


def _digest(secret: str, timestamp: int, body: bytes) -> str:
    message = str(timestamp).encode() + b"." + body
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def sign(secret: str, body: bytes, timestamp: int | None = None) -> str:
    """The ``Vitrine-Signature`` header value of ``body`` sent at ``timestamp``."""
    t = int(time.time()) if timestamp is None else int(timestamp)
    return f"t={t},v1={_digest(secret, t, body)}"


def verify(
    secret: str,
    body: bytes,
    header: str,
    tolerance: float = TOLERANCE_S,
    now: float | None = None,
) -> int:
    """Check a received delivery; returns its timestamp, or raises :class:`SignatureError`."""
    timestamp: int | None = None
    signatures: list[str] = []
    for part in (header or "").split(","):
        key, _, value = part.strip().partition("=")
        if key == "t" and value.isdigit():
            timestamp = int(value)
        elif key == "v1" and value:
            signatures.append(value)
    if timestamp is None or not signatures:
        raise SignatureError("no timestamp or no v1 signature in the header")
    current = time.time() if now is None else now
    if abs(current - timestamp) > tolerance:
        raise SignatureError("the timestamp is outside the tolerance window")
    expected = _digest(secret, timestamp, body)
    if not any(hmac.compare_digest(expected, s) for s in signatures):
        raise SignatureError("the signature does not match the body")
    return timestamp
