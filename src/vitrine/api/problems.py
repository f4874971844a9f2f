"""Errors as RFC 9457 problem details (``application/problem+json``) that name the problem."""

from __future__ import annotations

import logging
import re
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from vitrine.vision.decode import (
    ImageDecodeError,
)

PROBLEM_JSON = "application/problem+json"
log = logging.getLogger("vitrine.api")
_TITLES = {
    400: "Bad request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not found",
    405: "Method not allowed",
    409: "Conflict",
    413: "Content too large",
    415: "Unsupported media type",
    422: "Unprocessable content",
    429: "Too many requests",
    500: "Internal server error",
    503: "Service unavailable",
}


class Problem(Exception):
    """Raise anywhere in a route to answer with a problem document."""

    def __init__(
        self,
        status: int,
        detail: str,
        kind: str = "",
        *,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.kind = kind or _TITLES.get(status, "error").lower().replace(" ", "-")
        self.headers = headers
        self.extra = extra


def problem_response(
    request: Request,
    status: int,
    detail: str,
    kind: str,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> JSONResponse:
    body = {
        "type": f"https://vitrine.dev/problems/{kind}",
        "title": _TITLES.get(status, "Error"),
        "status": status,
        "detail": detail,
        "instance": request.url.path,
        **extra,
    }
    request_id = getattr(request.state, "request_id", None)
    if request_id:
        body["request_id"] = request_id
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


def image_problem(exc: ImageDecodeError) -> Problem:
    """The problem document for an unusable image (its status: see ``ImageDecodeError``)."""
    return Problem(exc.status, str(exc), exc.kind, source=exc.source, reason=exc.reason)


def install_problem_handlers(app: FastAPI) -> None:
    @app.exception_handler(Problem)
    async def _problem(request: Request, exc: Problem) -> JSONResponse:
        return problem_response(
            request, exc.status, exc.detail, exc.kind, headers=exc.headers, **exc.extra
        )

    @app.exception_handler(ImageDecodeError)
    async def _image(request: Request, exc: ImageDecodeError) -> JSONResponse:
        p = image_problem(exc)
        return problem_response(request, p.status, p.detail, p.kind, **p.extra)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {"field": ".".join(str(part) for part in e.get("loc", ())), "message": e.get("msg")}
            for e in exc.errors()
        ]
        detail = "; ".join(f"{e['field']}: {e['message']}" for e in errors) or "invalid request"
        return problem_response(request, 422, detail, "invalid-fields", errors=errors)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        # Starlette's ServerErrorMiddleware calls this (outside the request-id middleware)
        # and re-raises afterwards; the client gets a problem document without internals.
        request_id = getattr(request.state, "request_id", None)
        log.error(
            "unhandled %s on %s %s",
            type(exc).__name__,
            request.method,
            request.url.path,
            exc_info=exc,
            extra={"request_id": request_id},
        )
        return problem_response(
            request,
            500,
            "an unexpected error occurred; quote the request_id when reporting it",
            "internal-error",
            headers={"X-Request-ID": request_id} if request_id else None,
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        kind = _TITLES.get(exc.status_code, "error").lower().replace(" ", "-")
        headers = getattr(exc, "headers", None)
        if exc.status_code == 405:
            allow = allowed_methods(request)
            if allow:
                headers = {**(headers or {}), "Allow": allow}
        return problem_response(request, exc.status_code, str(exc.detail), kind, headers=headers)


def allowed_methods(request: Request) -> str:
    """The ``Allow`` header of a 405: the documented methods of this path.

    Starlette names those of the first route that matches only, and a concrete path such
    as ``/v1/models/rollback`` also matches ``/v1/models/{model_id}``; as in OpenAPI, a
    concrete path wins over templated ones. "" for a path the document does not have.
    """
    app = request.app
    paths = getattr(app.state, "openapi_paths", None)
    if paths is None:
        paths = []
        for template, item in app.openapi().get("paths", {}).items():
            pattern = re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(template))
            methods = [m.upper() for m in item if m in _METHODS]
            paths.append((re.compile(pattern), "{" not in template, methods))
        app.state.openapi_paths = paths
    path = request.url.path
    matching = [(concrete, methods) for regex, concrete, methods in paths if regex.fullmatch(path)]
    chosen = [methods for concrete, methods in matching if concrete] or [
        methods for _, methods in matching
    ]
    return ", ".join(dict.fromkeys(m for methods in chosen for m in methods))


_METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}
