"""Signed, expiring addresses of product photos, for ``<img src>`` in a shop's pages.

A browser loading an image sends no API key, so the photo route cannot ask for one. A
product card carries ``/images/{id}.jpg?exp=<unix time>&sig=<HMAC>`` instead: the HMAC
(SHA-256, a server secret) of the product id and the expiry. Expiries are rounded up to
the hour, so one address serves a whole hour of page views from browser and CDN caches,
and stays valid between ``hours`` and ``hours + 1`` hours.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import time
from pathlib import Path
from urllib.parse import quote

from vitrine.config import Settings
from vitrine.private_fs import PRIVATE_FILE

SECRET_FILE = "image-url.secret"
_HOUR = 3600


def _home_secret(home: Path) -> bytes:
    """The home folder's signing secret, made once (0600); a concurrent maker's wins."""
    path = Path(home) / SECRET_FILE
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE)
    except FileExistsError:
        return path.read_bytes().strip()
    with os.fdopen(fd, "w") as handle:
        handle.write(secrets.token_urlsafe(32))
    return path.read_bytes().strip()


class ImageSigner:
    """Signs and checks photo addresses (see the module docstring)."""

    def __init__(self, secret: bytes, hours: int) -> None:
        if not secret:
            raise ValueError("an image signing secret cannot be empty")
        self.secret = secret
        self.hours = max(1, hours)

    @classmethod
    def from_settings(cls, settings: Settings) -> ImageSigner:
        secret = settings.image_url_secret.encode() or _home_secret(settings.home)
        return cls(secret, settings.image_url_hours)

    def _signature(self, product_id: str, expires: int) -> str:
        message = f"{product_id}\n{expires}".encode()
        return hmac.new(self.secret, message, hashlib.sha256).hexdigest()[:32]

    def path(self, product_id: str, now: float | None = None) -> str:
        """``/images/{id}.jpg?exp=...&sig=...``, valid at least ``hours`` from ``now``."""
        now = time.time() if now is None else now
        expires = (int(now) // _HOUR + self.hours + 1) * _HOUR
        sig = self._signature(product_id, expires)
        return f"/images/{quote(product_id, safe='')}.jpg?exp={expires}&sig={sig}"

    def valid(self, product_id: str, expires: int, sig: str, now: float | None = None) -> bool:
        """Whether ``sig`` signs this product and expiry, and the expiry is still ahead."""
        now = time.time() if now is None else now
        if expires <= now or not sig.isascii():  # compare_digest refuses non-ASCII text
            return False
        return hmac.compare_digest(self._signature(product_id, expires), sig)
