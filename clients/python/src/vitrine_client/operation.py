"""Each API operation defined once, a method of both clients: :func:`operation` makes a
function that builds a :class:`~vitrine_client.calls.Call` into a descriptor, which is a
plain method on a :class:`SyncSession` and a coroutine method on an
:class:`AsyncSession`. ``OPERATIONS`` records every method's OpenAPI operation."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Awaitable, Callable, Mapping
from types import TracebackType
from typing import Any, Generic, ParamSpec, Self, TypeVar, cast, overload

import httpx

from vitrine_client.calls import Call

P = ParamSpec("P")
T = TypeVar("T")

# method name -> (HTTP method, OpenAPI path): one row per operation of the service's /v1.
OPERATIONS: dict[str, tuple[str, str]] = {}

USER_AGENT = "vitrine-client/0.1.0"


def _client_options(
    base_url: str,
    api_key: str | None,
    timeout: float | httpx.Timeout,
    headers: Mapping[str, str] | None,
) -> dict[str, Any]:
    sent = {"User-Agent": USER_AGENT, **(headers or {})}
    if api_key:
        sent["X-API-Key"] = api_key
    return {"base_url": base_url, "headers": sent, "timeout": timeout}


class SyncSession:
    """Sends calls with an ``httpx.Client`` (``transport``: e.g. a mock transport)."""

    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        *,
        timeout: float | httpx.Timeout = 60.0,
        transport: httpx.BaseTransport | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        options = _client_options(base_url, api_key, timeout, headers)
        self.http = httpx.Client(transport=transport, **options)

    def execute(self, method: str, path: str, call: Call[T]) -> T:
        with call.request(method, path) as request:
            response = self.http.request(**request)
        return call.parse(response)

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.close()


class AsyncSession:
    """Sends calls with an ``httpx.AsyncClient`` (``transport``: e.g. ASGITransport(app))."""

    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        *,
        timeout: float | httpx.Timeout = 60.0,
        transport: httpx.AsyncBaseTransport | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        options = _client_options(base_url, api_key, timeout, headers)
        self.http = httpx.AsyncClient(transport=transport, **options)

    async def execute(self, method: str, path: str, call: Call[T]) -> T:
        with call.request(method, path) as request:
            response = await self.http.request(**request)
        return call.parse(response)

    async def aclose(self) -> None:
        await self.http.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        await self.aclose()


class Operation(Generic[P, T]):
    """An operation (HTTP method, OpenAPI path, how to build its call) as a method."""

    def __init__(self, method: str, path: str, build: Callable[P, Call[T]]) -> None:
        self.method = method
        self.path = path
        self.build = build
        functools.update_wrapper(cast(Any, self), build)  # its name, doc and __wrapped__
        # help() and IDEs show what the method returns, not the Call it builds.
        signature = inspect.signature(build)
        answer = str(signature.return_annotation)
        if answer.startswith("Call[") and answer.endswith("]"):
            signature = signature.replace(return_annotation=answer[5:-1])
        self.__signature__ = signature

    def __set_name__(self, owner: type, name: str) -> None:
        known = OPERATIONS.get(name)
        if known is not None and known != (self.method, self.path):
            raise TypeError(f"two operations named {name!r}: {known} and {self.path}")
        OPERATIONS[name] = (self.method, self.path)

    @overload
    def __get__(self, session: None, owner: type) -> Self: ...
    @overload
    def __get__(self, session: SyncSession, owner: type) -> Callable[P, T]: ...
    @overload
    def __get__(self, session: AsyncSession, owner: type) -> Callable[P, Awaitable[T]]: ...
    def __get__(self, session: Any, owner: type) -> Any:
        if session is None:
            return self

        @functools.wraps(self.build)
        def bound(*args: P.args, **kwargs: P.kwargs) -> Any:
            return session.execute(self.method, self.path, self.build(*args, **kwargs))

        bound.__signature__ = self.__signature__  # type: ignore[attr-defined]
        return bound


def operation(method: str, path: str) -> Callable[[Callable[P, Call[T]]], Operation[P, T]]:
    """Declare an operation: ``@operation("GET", "/v1/products/{product_id}")`` over a
    function (no ``self``) whose arguments are the method's and that returns its Call."""

    def declare(build: Callable[P, Call[T]]) -> Operation[P, T]:
        return Operation(method, path, build)

    return declare
