"""Errors: every non-2xx answer raised as a :class:`VitrineError` with the fields of the
service's RFC 9457 problem document (``application/problem+json``)."""

from __future__ import annotations

from typing import Any

import httpx

_STANDARD = ("type", "title", "status", "detail", "instance")


class VitrineError(Exception):
    """A request the service answered with an error status.

    ``status``, ``type``, ``title``, ``detail`` and ``instance`` are the problem
    document's members; ``extensions`` holds the others (``request_id``, ``errors`` of
    a 422, ``retry_after`` of a 429 or 503, ``reason`` of an unreadable photo...), also
    readable as attributes (``error.request_id``). ``response`` is the raw answer.
    """

    def __init__(self, response: httpx.Response, problem: dict[str, Any]) -> None:
        self.response = response
        self.problem = problem
        self.status: int = int(problem.get("status") or response.status_code)
        self.type: str = str(problem.get("type") or "about:blank")
        self.title: str = str(problem.get("title") or response.reason_phrase)
        self.detail: str = str(problem.get("detail") or "")
        self.instance: str | None = problem.get("instance")
        self.extensions: dict[str, Any] = {k: v for k, v in problem.items() if k not in _STANDARD}
        super().__init__(f"{self.status} {self.title}: {self.detail}".rstrip(": "))

    def __getattr__(self, name: str) -> Any:
        # Only called for what is not a regular attribute: the extension members.
        extensions = self.__dict__.get("extensions", {})
        if name in extensions:
            return extensions[name]
        raise AttributeError(name)

    @property
    def kind(self) -> str:
        """The last segment of ``type``, e.g. ``unknown-product``."""
        return self.type.rstrip("/").rpartition("/")[2]

    @property
    def request_id(self) -> str | None:
        """The id to quote when reporting the problem (also the X-Request-ID header)."""
        found = self.extensions.get("request_id") or self.response.headers.get("x-request-id")
        return str(found) if found else None


class BadRequest(VitrineError):
    """400: the body could not be parsed."""


class Unauthorized(VitrineError):
    """401: no API key, or one that is not valid."""


class Forbidden(VitrineError):
    """403: the key's scope does not allow this request."""


class NotFound(VitrineError):
    """404: the product, job, model or strategy does not exist."""


class Conflict(VitrineError):
    """409: conflict with the resource's current state."""


class PayloadTooLarge(VitrineError):
    """413: the body or an uploaded file is over the service's limit."""


class UnsupportedMediaType(VitrineError):
    """415: an uploaded file is not an image of a supported format."""


class ValidationFailed(VitrineError):
    """422: invalid parameters or body; ``errors`` names the fields when the schema
    refused them."""

    @property
    def errors(self) -> list[dict[str, Any]]:
        return list(self.extensions.get("errors") or [])


class _RetryLater(VitrineError):
    @property
    def retry_after(self) -> float | None:
        """Seconds to wait before retrying: the body's member, else the header."""
        value = self.extensions.get("retry_after", self.response.headers.get("retry-after"))
        try:
            return float(value) if value is not None else None
        except ValueError:
            return None


class RateLimited(_RetryLater):
    """429: too many requests for this API key; wait ``retry_after`` seconds."""


class ServerError(VitrineError):
    """5xx: the service failed; quote ``request_id`` when reporting it."""


class Unavailable(_RetryLater, ServerError):
    """503: not ready yet (e.g. recommendation models still training)."""


_BY_STATUS: dict[int, type[VitrineError]] = {
    400: BadRequest,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    413: PayloadTooLarge,
    415: UnsupportedMediaType,
    422: ValidationFailed,
    429: RateLimited,
    503: Unavailable,
}


def error_for(response: httpx.Response) -> VitrineError:
    """The exception for an error answer (a problem document, or any other body)."""
    problem: dict[str, Any] = {}
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        problem = body
    elif response.content:
        problem = {"detail": response.text[:2000]}
    status = response.status_code
    cls = _BY_STATUS.get(status) or (ServerError if status >= 500 else VitrineError)
    return cls(response, problem)
