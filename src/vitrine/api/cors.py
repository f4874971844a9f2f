"""CORS for browsers: the service's fixed origins and every storefront key's origins.

A preflight (``OPTIONS`` with ``Access-Control-Request-Method``) carries no API key, so it
is answered for any origin that may call: one of ``cors_origins`` (every method), or of
``storefront_origins`` or listed on an active storefront key (``GET`` and ``POST``). The
real request is then checked against the origins of the key it presents
(``vitrine.api.auth``); its response carries ``Access-Control-Allow-Origin`` so that the
page can read an error too.
"""

from __future__ import annotations

from collections.abc import Callable

from starlette.datastructures import Headers, MutableHeaders
from starlette.responses import PlainTextResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

ALLOWED_HEADERS = "X-API-Key, Authorization, Content-Type"
# What a page may read of a response: the limits' headers and the request id.
EXPOSED_HEADERS = "Retry-After, RateLimit, RateLimit-Policy, X-Request-ID"
PREFLIGHT_MAX_AGE = "600"


def origins_of(text: str) -> frozenset[str]:
    """Comma-separated origins as browsers send them (lower case, no trailing slash)."""
    return frozenset(o.strip().rstrip("/").lower() for o in text.split(",") if o.strip())


class BrowserCors:
    """Pure ASGI middleware (see the module docstring); ``storefront`` names the origins
    of the storefront keys when called (it caches them itself)."""

    def __init__(
        self,
        app: ASGIApp,
        fixed: frozenset[str],
        storefront_fixed: frozenset[str],
        storefront: Callable[[], frozenset[str]],
    ) -> None:
        self.app = app
        self.fixed = fixed
        self.storefront_fixed = storefront_fixed
        self.storefront = storefront

    def _methods(self, origin: str) -> str | None:
        """The methods an origin may use (None: it may not call at all)."""
        if origin in self.fixed:
            return "GET, POST, PUT, PATCH, DELETE"
        if origin in self.storefront_fixed or origin in self.storefront():
            return "GET, POST"
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        origin = headers.get("origin")
        if origin is None:
            await self.app(scope, receive, send)
            return
        origin = origin.strip().rstrip("/").lower()
        methods = self._methods(origin)
        preflight = scope["method"] == "OPTIONS" and "access-control-request-method" in headers
        if preflight:
            await self._preflight(origin, methods, headers)(scope, receive, send)
            return
        if methods is None:
            await self.app(scope, receive, send)
            return

        async def send_with_cors(message: Message) -> None:
            if message["type"] == "http.response.start":
                out = MutableHeaders(scope=message)
                out["Access-Control-Allow-Origin"] = headers["origin"]
                out["Access-Control-Expose-Headers"] = EXPOSED_HEADERS
                out.add_vary_header("Origin")
            await send(message)

        await self.app(scope, receive, send_with_cors)

    @staticmethod
    def _preflight(origin: str, methods: str | None, headers: Headers) -> PlainTextResponse:
        asked = headers["access-control-request-method"].upper()
        if methods is None or asked not in methods.split(", "):
            return PlainTextResponse(
                f"origin {origin} may not call this service with {asked}",
                status_code=400,
                headers={"Vary": "Origin"},
            )
        return PlainTextResponse(
            "OK",
            headers={
                "Access-Control-Allow-Origin": headers["origin"],
                "Access-Control-Allow-Methods": methods,
                "Access-Control-Allow-Headers": ALLOWED_HEADERS,
                "Access-Control-Max-Age": PREFLIGHT_MAX_AGE,
                "Vary": "Origin",
            },
        )
