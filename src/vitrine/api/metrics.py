"""Prometheus metrics of the service, and the middleware that records them."""

from __future__ import annotations

import logging
import time
import uuid
from typing import Any

from fastapi import Request
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from vitrine import tracing
from vitrine.api.problems import problem_response

log = logging.getLogger("vitrine.http")


class Metrics:
    """One registry per app, so that several apps (tests) never collide."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "vitrine_http_requests_total",
            "HTTP requests",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "vitrine_http_request_seconds",
            "HTTP request latency",
            ["method", "route"],
            buckets=(0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10),
            registry=self.registry,
        )
        self.errors = Counter(
            "vitrine_http_errors_total",
            "HTTP responses with status >= 500",
            ["route"],
            registry=self.registry,
        )
        self.images = Counter(
            "vitrine_images_processed_total", "Photos analysed", registry=self.registry
        )
        self.batch_size = Histogram(
            "vitrine_embedding_batch_size",
            "Photos per CNN call",
            buckets=(1, 2, 4, 8, 16, 32, 64),
            registry=self.registry,
        )
        self.inference = Histogram(
            "vitrine_embedding_seconds",
            "Seconds per CNN call of the service (one micro-batch)",
            buckets=(0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5),
            registry=self.registry,
        )
        self.index_size = Gauge(
            "vitrine_index_size", "Products in the visual index", registry=self.registry
        )


def route_template(scope: dict[str, Any]) -> str:
    route = scope.get("route")
    # path_format: /v1/models/{model_id}, without the route's convertor (:int)
    return getattr(route, "path_format", None) or getattr(route, "path", None) or "unmatched"


class ObservedRequests:
    """Pure ASGI middleware: request ids, body-size limits, metrics and one log line.

    (Starlette's BaseHTTPMiddleware costs several milliseconds a request on small CPUs.)
    """

    def __init__(self, app: ASGIApp, metrics: Metrics, max_body: int, max_import: int) -> None:
        self.app = app
        self.metrics = metrics
        self.max_body = max_body
        self.max_import = max_import

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        request_id = (headers.get(b"x-request-id") or b"").decode() or uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id
        start = time.perf_counter()
        status = 500
        length = headers.get(b"content-length", b"").decode()
        bulk = scope["path"].startswith(("/v1/imports", "/admin/upload/bulk"))
        limit = self.max_import if bulk else self.max_body
        if length.isdigit() and int(length) > limit:
            request = Request(scope)
            response = problem_response(
                request,
                413,
                f"request body of {length} bytes exceeds the limit of {limit}",
                "request-too-large",
            )
            await response(scope, receive, send)
            return

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message.setdefault("headers", []).append((b"x-request-id", request_id.encode()))
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            elapsed = time.perf_counter() - start
            route = route_template(scope)
            method = scope["method"]
            self.metrics.requests.labels(method, route, str(status)).inc()
            self.metrics.latency.labels(method, route).observe(elapsed)
            if status >= 500:
                self.metrics.errors.labels(route).inc()
            extra = {
                "request_id": request_id,
                "method": method,
                "route": route,
                "status": status,
                "ms": round(elapsed * 1000, 2),
            }
            if tracing.enabled():  # the line names its trace
                extra["trace_id"] = tracing.trace_id()
            log.info("request", extra=extra)
