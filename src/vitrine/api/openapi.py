"""The OpenAPI document: the shared problem schema, error responses and UTC datetimes.

Routes declare what only they know (``responses=problems(409)``); :func:`install_openapi`
adds what every operation of a kind can answer:

* 401, 403 and 429 on every operation that needs an API key;
* 422 on every operation with parameters or a body (FastAPI's ``HTTPValidationError``
  is replaced: the validation handler answers a problem document);
* 400 (a body that cannot be parsed) and 413 (the request-size limit) on every operation
  with a body;
* 404 on every operation with a path parameter (they all name a resource).

Every error is a ``Problem`` (RFC 9457) under ``application/problem+json``.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime
from typing import Annotated, Any

from fastapi import FastAPI
from pydantic import AfterValidator, BeforeValidator

from vitrine.api.problems import _TITLES, PROBLEM_JSON

PROBLEM_REF = {"$ref": "#/components/schemas/Problem"}

PROBLEM_SCHEMA: dict[str, Any] = {
    "title": "Problem",
    "type": "object",
    "description": "An error, as RFC 9457 problem details.",
    "required": ["type", "title", "status", "detail"],
    "properties": {
        "type": {
            "type": "string",
            "format": "uri",
            "description": "What kind of problem, e.g. https://vitrine.dev/problems/unknown-product",
        },
        "title": {"type": "string", "description": "The status in words."},
        "status": {"type": "integer", "minimum": 400, "maximum": 599},
        "detail": {"type": "string", "description": "What went wrong with this request."},
        "instance": {"type": "string", "description": "The request's path."},
        "request_id": {"type": "string", "description": "Also the X-Request-ID header."},
        "errors": {
            "type": "array",
            "description": "The invalid fields (422).",
            "items": {"$ref": "#/components/schemas/ProblemFieldError"},
        },
        "retry_after": {
            "type": "number",
            "minimum": 0,
            "description": "Seconds to wait before retrying (429, 503).",
        },
    },
    "additionalProperties": True,
}
PROBLEM_FIELD_ERROR_SCHEMA: dict[str, Any] = {
    "title": "ProblemFieldError",
    "type": "object",
    "required": ["field", "message"],
    "properties": {
        "field": {"type": "string", "description": "Where: e.g. body.price, query.k"},
        "message": {"type": "string"},
    },
}

_DESCRIPTIONS = {
    400: "The body cannot be parsed",
    401: "No API key, or one that is not valid",
    403: "The API key's scope does not allow this request",
    404: "The resource does not exist",
    409: "Conflict with the resource's current state",
    413: "The request body (or an uploaded file) is too large",
    415: "The uploaded file is not an image of a supported format",
    422: "Invalid parameters or body",
    429: "Too many requests for this API key",
    503: "Not ready yet (retry later)",
}

RATE_LIMIT_HEADERS: dict[str, Any] = {
    "Retry-After": {
        "description": "Seconds to wait before retrying (an integer, at least 1).",
        "required": True,
        "schema": {"type": "integer", "minimum": 1},
    },
    "RateLimit-Policy": {
        "description": 'The key\'s quota policy, e.g. `"default";q=400;w=2` '
        "(draft-ietf-httpapi-ratelimit-headers).",
        "required": True,
        "schema": {"type": "string"},
    },
    "RateLimit": {
        "description": 'What is left of the quota, e.g. `"default";r=0;t=1`.',
        "required": True,
        "schema": {"type": "string"},
    },
}


def problem_response(status: int) -> dict[str, Any]:
    """One documented error response."""
    response: dict[str, Any] = {
        "description": _DESCRIPTIONS.get(status, _TITLES.get(status, "Error")),
        "content": {PROBLEM_JSON: {"schema": PROBLEM_REF}},
    }
    if status == 429:
        response["headers"] = RATE_LIMIT_HEADERS
    elif status == 503:
        response["headers"] = {
            "Retry-After": {**RATE_LIMIT_HEADERS["Retry-After"], "required": False}
        }
    return response


def problems(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """``responses=`` of a route: the problem documents it answers besides the defaults."""
    return {status: problem_response(status) for status in statuses}


UPLOAD_PROBLEMS = problems(413, 415)  # an uploaded photo: too large, or no image
# What an uploaded photo may be (vitrine.vision.decode.SUPPORTED_FORMATS).
UPLOAD_IMAGE_TYPES = "image/jpeg, image/png, image/webp, image/gif, image/bmp, image/tiff"


def form_parts(**content_types: str) -> dict[str, Any]:
    """``openapi_extra=`` of a multipart route: the media types of its file parts."""
    encoding = {name: {"contentType": media} for name, media in content_types.items()}
    return {"requestBody": {"content": {"multipart/form-data": {"encoding": encoding}}}}


def _to_utc(value: datetime) -> datetime:
    """Naive values (SQLite keeps no offset) are UTC; aware ones are converted to UTC."""
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


# A datetime answered as UTC with a `Z` (`format: date-time` requires an offset).
UTCDateTime = Annotated[datetime, AfterValidator(_to_utc)]

_RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})")


def _rfc3339(value: Any) -> Any:
    if isinstance(value, datetime):
        return value
    if not isinstance(value, str) or not _RFC3339.fullmatch(value.strip()):
        raise ValueError("expected a date-time with an offset, e.g. 2026-01-31T12:00:00Z")
    return value.strip()


# A datetime parameter as `format: date-time` says: RFC 3339 text with an offset (not a
# number of seconds, not a bare date), as UTC.
DateTimeParam = Annotated[datetime, BeforeValidator(_rfc3339), AfterValidator(_to_utc)]


_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


def _iso_date(value: Any) -> Any:
    if isinstance(value, date) and not isinstance(value, datetime):
        return value
    if not isinstance(value, str) or not _ISO_DATE.fullmatch(value.strip()):
        raise ValueError("expected a date, e.g. 2026-01-31")
    return value.strip()


# A date as `format: date` says: YYYY-MM-DD text (not a number of seconds).
DateParam = Annotated[date, BeforeValidator(_iso_date)]


def install_openapi(app: FastAPI) -> None:
    """Make ``app.openapi()`` the completed document (built once, then cached)."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        return complete(generate())

    app.openapi = openapi  # type: ignore[method-assign]


def complete(document: dict[str, Any]) -> dict[str, Any]:
    """Add the shared problem schema and the default error responses, in place."""
    components = document.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    schemas["Problem"] = PROBLEM_SCHEMA
    schemas["ProblemFieldError"] = PROBLEM_FIELD_ERROR_SCHEMA
    for path, item in document.get("paths", {}).items():
        for method, operation in item.items():
            if method not in {"get", "put", "post", "patch", "delete", "head", "options"}:
                continue
            responses = operation.setdefault("responses", {})
            defaults: set[int] = set()
            if operation.get("security"):
                defaults |= {401, 403, 429}
            if operation.get("parameters") or operation.get("requestBody"):
                defaults.add(422)
            if operation.get("requestBody"):
                defaults |= {400, 413}
                _forms_without_null(operation["requestBody"], schemas)
            for parameter in operation.get("parameters", []):
                # A query parameter or a path segment is absent or text, never null.
                parameter["schema"] = _without_null(parameter.get("schema", {}))
            if "{" in path:
                defaults.add(404)
            if "422" in responses:  # FastAPI's HTTPValidationError: not what is answered
                responses["422"] = problem_response(422)
            for status in sorted(defaults):
                responses.setdefault(str(status), problem_response(status))
            operation["responses"] = dict(sorted(responses.items()))
    for name in ("HTTPValidationError", "ValidationError"):
        schemas.pop(name, None)
    return document


def _without_null(schema: dict[str, Any]) -> dict[str, Any]:
    """``anyOf: [X, {type: null}]`` (FastAPI's optional value) as plain ``X``."""
    variants = schema.get("anyOf")
    if not isinstance(variants, list) or {"type": "null"} not in variants:
        return schema
    rest = [v for v in variants if v != {"type": "null"}]
    out = {k: v for k, v in schema.items() if k != "anyOf"}
    if len(rest) == 1:
        return {**rest[0], **out}
    return {**out, "anyOf": rest}


def _forms_without_null(body: dict[str, Any], schemas: dict[str, Any]) -> None:
    """A form field is sent or left out, never null: optional fields lose the null type."""
    for media, content in body.get("content", {}).items():
        if media not in {"multipart/form-data", "application/x-www-form-urlencoded"}:
            continue
        ref = content.get("schema", {}).get("$ref", "")
        schema = schemas.get(ref.rpartition("/")[2]) if ref else content.get("schema")
        for name, prop in (schema or {}).get("properties", {}).items():
            schema["properties"][name] = _without_null(prop)
