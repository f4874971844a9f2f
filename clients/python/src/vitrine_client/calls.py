"""One API call as data: what an operation sends (path, query, JSON body, form fields,
uploads) and how its answer becomes a typed value. The sync and async clients build the
same :class:`Call` and differ only in how they send it."""

from __future__ import annotations

import json
import mimetypes
import os
from collections.abc import Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime
from functools import cache
from pathlib import Path
from typing import IO, Any, Generic, TypeVar
from urllib.parse import quote

import httpx
from pydantic import TypeAdapter
from pydantic_core import to_jsonable_python

from vitrine_client.errors import error_for

T = TypeVar("T")

# A file to upload: its bytes, a path to it, or a binary file object open for reading.
Upload = bytes | bytearray | str | os.PathLike[str] | IO[bytes]
# Attribute filters: {"color": "Red"} or ["color=Red", ...] (every one must match).
Filters = Mapping[str, str] | Sequence[str]
# Aspect weights of a visual search: {"embedding": 2, "color": 1} or "embedding=2,color=1".
Weights = Mapping[str, float] | str


class Unset:
    """The value of an optional argument that was not given (``None`` may mean null)."""

    _instance: Unset | None = None

    def __new__(cls) -> Unset:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "UNSET"

    def __bool__(self) -> bool:
        return False


UNSET = Unset()
NO_CONTENT: Any = None  # the response of an operation answered with 204 (no body)


@dataclass(frozen=True)
class Call(Generic[T]):
    """What to send, and what the answer is: a model type (or ``list[...]`` of one),
    ``bytes`` for a binary answer, or ``NO_CONTENT``."""

    response: Any
    path: Mapping[str, str | int] = field(default_factory=dict)
    query: Mapping[str, Any] = field(default_factory=dict)
    json: Any = None
    form: Mapping[str, Any] = field(default_factory=dict)
    files: Sequence[tuple[str, Upload]] = ()

    def url(self, template: str) -> str:
        """The path with its parameters filled in, each percent-encoded as one segment."""
        values = {}
        for name, value in self.path.items():
            text = str(value)
            if not text:
                raise ValueError(f"{name} must not be empty")
            values[name] = quote(text, safe="")
        return template.format(**values)

    @contextmanager
    def request(self, method: str, template: str) -> Iterator[dict[str, Any]]:
        """The arguments of ``httpx.Client.request``; files opened from paths are closed
        when the block ends."""
        kwargs: dict[str, Any] = {"method": method, "url": self.url(template)}
        params = _fields(self.query)
        if params:
            kwargs["params"] = params
        if self.json is not None:
            kwargs["json"] = to_jsonable_python(_without_unset(self.json))
        with ExitStack() as stack:
            files = [(name, _file(upload, stack)) for name, upload in self.files]
            data = _fields(self.form)
            if files:
                kwargs["files"] = files
            if data:
                kwargs["data"] = data
            yield kwargs

    def parse(self, response: httpx.Response) -> T:
        """The answer as a typed value; an error status raises its ``VitrineError``."""
        if not response.is_success:
            raise error_for(response)
        if self.response is NO_CONTENT:
            return None  # type: ignore[return-value]
        if self.response is bytes:
            return response.content  # type: ignore[return-value]
        return _adapter(self.response).validate_python(response.json())  # type: ignore[no-any-return]


@cache
def _adapter(kind: Any) -> TypeAdapter[Any]:
    return TypeAdapter(kind)


def filter_list(value: Filters | None) -> list[str] | None:
    """Filters as the repeated ``filter=field=value`` parameter."""
    if value is None:
        return None
    if isinstance(value, Mapping):
        return [f"{k}={v}" for k, v in value.items()]
    if isinstance(value, str):
        return [value]
    return list(value)


def weights_text(value: Weights | None) -> str | None:
    """Aspect weights as the ``embedding=2,color=1`` text the service reads."""
    if value is None or isinstance(value, str):
        return value
    return ",".join(f"{k}={v:g}" for k, v in value.items())


def present(**values: Any) -> dict[str, Any]:
    """A JSON body of the given values: those left ``None`` (or unset) are not sent, so
    that the service's defaults apply."""
    return {k: v for k, v in values.items() if v is not None and v is not UNSET}


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Mapping):
        return json.dumps(to_jsonable_python(value))
    return str(value)


def _fields(values: Mapping[str, Any]) -> dict[str, str | list[str]]:
    """Query or form fields: unset ones left out, lists repeated, the rest as text."""
    out: dict[str, str | list[str]] = {}
    for name, value in values.items():
        if value is None or value is UNSET:
            continue
        if isinstance(value, list | tuple):
            out[name] = [_text(v) for v in value]
        else:
            out[name] = _text(value)
    return out


def _without_unset(body: Any) -> Any:
    if isinstance(body, Mapping):
        return {k: _without_unset(v) for k, v in body.items() if v is not UNSET}
    return body


def _file(upload: Upload, stack: ExitStack) -> tuple[str, Any, str]:
    """``(filename, content, media type)`` of one upload."""
    if isinstance(upload, bytes | bytearray):
        return "upload", bytes(upload), "application/octet-stream"
    if isinstance(upload, str | os.PathLike):
        path = Path(upload)
        handle = stack.enter_context(path.open("rb"))
        return path.name, handle, _media_type(path.name)
    name = Path(str(getattr(upload, "name", "") or "upload")).name
    return name, upload, _media_type(name)


def _media_type(filename: str) -> str:
    return mimetypes.guess_type(filename)[0] or "application/octet-stream"


def uploads(value: Upload | Sequence[Upload] | None) -> list[Upload]:
    """One upload or several, as a list."""
    if value is None:
        return []
    if isinstance(value, bytes | bytearray | str | os.PathLike) or hasattr(value, "read"):
        return [value]  # type: ignore[list-item]
    return list(value)
