"""OpenTelemetry traces: one tracer provider per process, set up from the settings, and a
cheap way for the services to open spans.

Tracing is on when ``otlp_endpoint`` is set: spans are batched and sent over OTLP/HTTP
(protobuf) to that collector, a sampled share (``trace_sample_ratio``) of the traces that
start here; a caller's sampled ``traceparent`` is followed. When it is off no provider is
installed and :func:`span` returns one shared do-nothing context manager, so instrumented
code pays one function call. Tests and benchmarks install their own provider with
:func:`record_in_memory` (or :func:`install`).

Vitrine keeps its provider to itself (the OpenTelemetry global one is left alone); the
HTTP server spans come from FastAPI's native telemetry given :func:`provider`.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING
from urllib.parse import unquote

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import INVALID_SPAN, Link, Span, Tracer

from vitrine import __version__
from vitrine.config import ConfigError, Settings

if TYPE_CHECKING:
    from contextlib import AbstractContextManager

    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

AttributeValue = str | bool | int | float
Attributes = Mapping[str, AttributeValue]

TRACES_PATH = "/v1/traces"

_provider: TracerProvider | None = None
_tracer: Tracer | None = None


class _Off:
    """What :func:`span` returns while tracing is off: enters as a non-recording span."""

    __slots__ = ()

    def __enter__(self) -> Span:
        return INVALID_SPAN

    def __exit__(self, *exc_info: object) -> None:
        return None


_OFF = _Off()


def enabled() -> bool:
    """Whether this process records spans."""
    return _tracer is not None


def provider() -> TracerProvider | None:
    """This process's tracer provider (None: tracing is off)."""
    return _provider


def span(
    name: str,
    attributes: Attributes | None = None,
    *,
    parent: Context | None = None,
    links: Iterable[Context | None] = (),
) -> AbstractContextManager[Span]:
    """A span around a ``with`` block, child of the current span (or of ``parent``, a
    context taken on another thread with :func:`current_context`), linked to the spans
    current in ``links``; an exception leaving the block is recorded on it. Attributes
    known later go on the span the block receives (a no-op while tracing is off)."""
    tracer = _tracer
    if tracer is None:
        return _OFF
    linked = [Link(c) for c in _span_contexts(links)]
    return tracer.start_as_current_span(
        name, context=parent, attributes=attributes, links=linked or None
    )


def root_span(name: str, attributes: Attributes | None = None) -> AbstractContextManager[Span]:
    """:func:`span` starting a trace of its own, whatever is current (a job, a worker)."""
    if _tracer is None:
        return _OFF
    return span(name, attributes, parent=Context())


def current_context() -> Context | None:
    """The caller's trace context, to continue its trace on another thread (None while
    tracing is off, so that callers pay nothing)."""
    return otel_context.get_current() if _tracer is not None else None


def trace_id() -> str:
    """The current trace's id as 32 hex digits ("" outside a recorded span), for logs."""
    context = trace.get_current_span().get_span_context()
    return format(context.trace_id, "032x") if context.is_valid else ""


def _span_contexts(contexts: Iterable[Context | None]) -> Iterable[trace.SpanContext]:
    for context in contexts:
        if context is not None:
            found = trace.get_current_span(context).get_span_context()
            if found.is_valid:
                yield found


# -- set-up ----------------------------------------------------------------------------


def configure(settings: Settings, role: str) -> TracerProvider | None:
    """Install this process's provider from the settings, once: an OTLP/HTTP exporter
    when ``otlp_endpoint`` is set (else nothing: tracing stays off). ``role`` names the
    kind of process in the traces' resource (``api``, ``cli``)."""
    if _provider is not None or not settings.otlp_endpoint:
        return _provider
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    exporter = OTLPSpanExporter(
        endpoint=traces_url(settings.otlp_endpoint), headers=parse_headers(settings.otlp_headers)
    )
    created = new_provider(role, settings.trace_sample_ratio)
    created.add_span_processor(BatchSpanProcessor(exporter))
    install(created)
    return created


def new_provider(
    role: str, sample_ratio: float = 1.0, *, shutdown_on_exit: bool = True
) -> TracerProvider:
    """A provider with Vitrine's resource and sampler, no exporter yet (by default
    flushed and shut down when the process exits)."""
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

    if not 0.0 <= sample_ratio <= 1.0:
        raise ConfigError(f"setting 'trace_sample_ratio' must be in 0..1, got {sample_ratio}")
    resource = Resource.create(
        {
            "service.name": "vitrine",
            "service.version": __version__,
            "vitrine.process.role": role,
            "process.pid": os.getpid(),
        }
    )
    return TracerProvider(
        resource=resource,
        sampler=ParentBased(TraceIdRatioBased(sample_ratio)),
        shutdown_on_exit=shutdown_on_exit,
    )


def install(new: TracerProvider) -> None:
    """Record spans with ``new`` from now on, in this process."""
    global _provider, _tracer
    _provider = new
    _tracer = new.get_tracer("vitrine", __version__)


def flush(timeout_s: float = 5.0) -> None:
    """Send the spans still waiting for their batch: a server calls it as it stops, since
    its process may end without running exit handlers (uvicorn ends on the signal it
    caught, re-raised)."""
    if _provider is not None:
        _provider.force_flush(int(timeout_s * 1000))


def shutdown() -> None:
    """Send what is pending and turn tracing off (tests; the process's exit does it too)."""
    global _provider, _tracer
    if _provider is not None:
        _provider.shutdown()
    _provider = None
    _tracer = None


def record_in_memory(role: str = "test") -> InMemorySpanExporter:
    """Install a provider that keeps every finished span in memory (tests, benchmarks);
    returns the exporter holding them."""
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    created = new_provider(role, shutdown_on_exit=False)
    created.add_span_processor(SimpleSpanProcessor(exporter))
    install(created)
    return exporter


def traces_url(endpoint: str) -> str:
    """The collector's traces URL: ``endpoint`` itself when it names the traces path,
    else that path under it (as ``OTEL_EXPORTER_OTLP_ENDPOINT`` is read)."""
    endpoint = endpoint.strip()
    if endpoint.rstrip("/").endswith(TRACES_PATH):
        return endpoint
    return endpoint.rstrip("/") + TRACES_PATH


def parse_headers(text: str) -> dict[str, str]:
    """``key=value,key2=value2`` (values percent-decoded, as ``OTEL_EXPORTER_OTLP_HEADERS``)."""
    headers: dict[str, str] = {}
    for item in text.split(","):
        if not item.strip():
            continue
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"setting 'otlp_headers': expected key=value, got {item.strip()!r}")
        headers[key.strip().lower()] = unquote(value.strip())
    return headers


__all__ = [
    "Attributes",
    "configure",
    "current_context",
    "enabled",
    "flush",
    "install",
    "new_provider",
    "parse_headers",
    "provider",
    "record_in_memory",
    "root_span",
    "shutdown",
    "span",
    "trace_id",
    "traces_url",
]
