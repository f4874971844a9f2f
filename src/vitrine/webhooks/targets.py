"""Which addresses a webhook may be sent to.

Only ``http`` and ``https`` URLs with a host, no user name or password in them. Private
addresses (loopback, the shop's own network, link-local such as a cloud's metadata
service) are allowed by default, since a shop often runs its receiver beside Vitrine;
with ``webhook_block_private`` they are refused when the subscription is made and again
before every attempt (the name may resolve elsewhere by then).
"""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit

MAX_URL = 2048


class TargetError(ValueError):
    """An address webhooks may not be sent to (the message says why)."""


def check_url(url: str) -> str:
    """The URL, stripped, when it is one webhooks may use; else :class:`TargetError`."""
    url = (url or "").strip()
    if not url or len(url) > MAX_URL:
        raise TargetError(f"a webhook URL is 1 to {MAX_URL} characters")
    try:
        parts = urlsplit(url)
        host = parts.hostname
        parts.port  # noqa: B018 - raises ValueError for a port out of range
    except ValueError as exc:
        raise TargetError(f"not a usable URL: {exc}") from exc
    if parts.scheme not in ("http", "https"):
        raise TargetError("a webhook URL starts with http:// or https://")
    if not host:
        raise TargetError("a webhook URL names a host")
    if parts.username is not None or parts.password is not None:
        raise TargetError("a webhook URL carries no user name or password")
    if any(c.isspace() for c in url):
        raise TargetError("a webhook URL has no spaces")
    return url


def _private(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    return not ip.is_global or ip.is_multicast


def check_public(url: str) -> None:
    """Raise :class:`TargetError` when the URL's host is or resolves to a private address."""
    host = urlsplit(url).hostname or ""
    try:
        infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        raise TargetError(f"the host {host!r} does not resolve") from exc
    if any(_private(str(info[4][0])) for info in infos):
        raise TargetError(f"the host {host!r} is a private address, and they are blocked")
