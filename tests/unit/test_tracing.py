"""Traces: request spans with their service spans in one trace, jobs, the batcher's
hand-over between threads, sampling, and nothing at all while tracing is off."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from concurrent.futures import Future
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar

import pytest
from fastapi.testclient import TestClient
from opentelemetry import trace
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from small_shop import purchases, small_shop
from vitrine import tracing
from vitrine.accounts.keys import KeyService
from vitrine.api.app import create_app
from vitrine.catalog.database import make_engine, migrate
from vitrine.cluster.job_queue import JobError, JobQueue, JobRunner, Progress
from vitrine.cluster.job_store import JobStore
from vitrine.config import ConfigError, load_settings
from vitrine.index.visual_search import VisualSearch
from vitrine.recommend.strategies import Strategy
from vitrine.vision.batcher import MicroBatcher

T0 = datetime(2024, 1, 1, tzinfo=UTC)
TRACE_ID = 0x4BF92F3577B34DA6A3CE929D0E0E4736
PARENT_ID = 0x00F067AA0BA902B7
# Quick to train: popularity, and a one-window hybrid in place of the built-in one.
STRATEGIES = [
    Strategy("hybrid", "hybrid", params={"windows": 1}),
    Strategy("default", "popularity"),
    Strategy("popular", "popularity"),
]


@pytest.fixture()
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = tracing.record_in_memory()
    yield exporter
    tracing.shutdown()


def named(finished: tuple[ReadableSpan, ...], name: str) -> list[ReadableSpan]:
    return [s for s in finished if s.name == name]


def one(finished: tuple[ReadableSpan, ...], name: str) -> ReadableSpan:
    found = named(finished, name)
    assert len(found) == 1, [s.name for s in finished]
    return found[0]


def parent_of(span: ReadableSpan) -> int | None:
    return span.parent.span_id if span.parent is not None else None


# -- a shop served with tracing on -------------------------------------------------------


@pytest.fixture()
def shop(
    spans: InMemorySpanExporter, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[TestClient, str]]:
    app = small_shop(tmp_path / "home", purchases(T0), STRATEGIES)
    vitrine = app.state.runtime
    # The index of the shop's 16-number embeddings (no CNN).
    monkeypatch.setattr("vitrine.index.visual_search.EMBEDDING_DIM", 16)
    search = VisualSearch(vitrine.store, vitrine.settings, "m1")
    search.load_or_rebuild()
    vitrine.override(search=search)
    key = KeyService(vitrine.engine).create("reader", "read")[1]
    with TestClient(app) as client:
        spans.clear()
        yield client, key


def test_a_request_is_one_trace_with_its_index_search(
    shop: tuple[TestClient, str], spans: InMemorySpanExporter
) -> None:
    client, key = shop
    r = client.get("/v1/products/sh1/similar?k=3", headers={"X-API-Key": key})
    assert r.status_code == 200 and len(r.json()["results"]) == 3
    finished = spans.get_finished_spans()
    request = one(finished, "GET /v1/products/{product_id}/similar")
    assert request.kind == SpanKind.SERVER
    assert request.attributes is not None
    assert request.attributes["http.request.method"] == "GET"
    assert request.attributes["http.route"] == "/v1/products/{product_id}/similar"
    assert request.attributes["http.response.status_code"] == 200
    assert request.resource.attributes["service.name"] == "vitrine"
    search = one(finished, "index.search")
    assert search.context.trace_id == request.context.trace_id
    assert parent_of(search) == request.context.span_id
    assert dict(search.attributes or {}) == {
        "vitrine.index.query": "vector",
        "vitrine.index.k": 3,
        "vitrine.index.kind": "flat",
        "vitrine.index.size": 20,
        "vitrine.index.filtered": False,
        "vitrine.index.hits": 3,
    }


def test_a_recommendation_request_traces_the_list_computed_in_a_thread(
    shop: tuple[TestClient, str], spans: InMemorySpanExporter
) -> None:
    client, key = shop
    traceparent = f"00-{TRACE_ID:032x}-{PARENT_ID:016x}-01"
    url = "/v1/users/u3/recommendations?k=4&strategy=popular"
    r = client.get(url, headers={"X-API-Key": key, "traceparent": traceparent})
    assert r.status_code == 200 and len(r.json()["items"]) == 4
    finished = spans.get_finished_spans()
    request = one(finished, "GET /v1/users/{user_id}/recommendations")
    # The caller's trace is continued.
    assert request.context.trace_id == TRACE_ID and parent_of(request) == PARENT_ID
    lists = named(finished, "recommend")
    assert lists and all(s.context.trace_id == TRACE_ID for s in lists)
    assert all(parent_of(s) == request.context.span_id for s in lists)
    computed = [s for s in lists if (s.attributes or {}).get("vitrine.recommend.items")]
    assert len(computed) == 1  # not kept yet: computed on a worker thread, in the trace
    assert dict(computed[0].attributes or {}) == {
        "vitrine.recommend.context": "user",
        "vitrine.recommend.k": 4,
        "vitrine.recommend.strategy": "popular",
        "vitrine.recommend.items": 4,
        "vitrine.recommend.cache_hit": False,
    }

    spans.clear()
    assert client.get(url, headers={"X-API-Key": key}).status_code == 200
    again = one(spans.get_finished_spans(), "recommend")
    assert (again.attributes or {})["vitrine.recommend.cache_hit"] is True


def test_a_server_error_marks_the_request_span(
    shop: tuple[TestClient, str], spans: InMemorySpanExporter, monkeypatch: pytest.MonkeyPatch
) -> None:
    client, key = shop
    search = client.app.state.runtime.search  # type: ignore[attr-defined]

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(search.vectors, "search", broken)
    client_no_raise = TestClient(client.app, raise_server_exceptions=False)
    r = client_no_raise.get("/v1/products/sh1/similar", headers={"X-API-Key": key})
    assert r.status_code == 500
    finished = spans.get_finished_spans()
    request = one(finished, "GET /v1/products/{product_id}/similar")
    assert request.status.status_code == StatusCode.ERROR
    assert (request.attributes or {})["error.type"] == "RuntimeError"
    failed = one(finished, "index.search")
    assert failed.status.status_code == StatusCode.ERROR
    assert [e.name for e in failed.events] == ["exception"]


# -- jobs --------------------------------------------------------------------------------


def test_a_job_is_a_trace_of_its_own(spans: InMemorySpanExporter, tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'jobs.db'}")
    migrate(engine)
    store = JobStore(engine)

    def refuse(params: dict[str, Any], progress: Progress) -> dict[str, Any]:
        raise JobError("nothing to train")

    handlers = {"count": lambda params, progress: {"n": params["n"]}, "refuse": refuse}
    queue = JobQueue(store, kinds=tuple(handlers))
    done_id = queue.submit("count", {"n": 3})["id"]
    failed_id = queue.submit("refuse", {})["id"]
    with tracing.span("a request that queued them"):  # a job does not join the caller's trace
        finished_jobs = JobRunner(store, handlers).run_queued()
    assert [j["state"] for j in finished_jobs] == ["done", "failed"]
    finished = spans.get_finished_spans()
    done, failed = one(finished, "job count"), one(finished, "job refuse")
    assert done.parent is None and failed.parent is None
    assert dict(done.attributes or {}) == {
        "vitrine.job.kind": "count",
        "vitrine.job.id": done_id,
        "vitrine.job.outcome": "done",
    }
    assert (failed.attributes or {})["vitrine.job.outcome"] == "failed"
    assert (failed.attributes or {})["vitrine.job.id"] == failed_id
    assert failed.status.status_code == StatusCode.ERROR
    assert failed.status.description == "nothing to train"
    assert done.status.status_code == StatusCode.UNSET


# -- the CNN's micro-batcher -------------------------------------------------------------


def test_a_cnn_batch_continues_the_first_request_and_links_the_others(
    spans: InMemorySpanExporter,
) -> None:
    def complete(images: Any) -> list[Any]:
        return list(images)

    batcher = MicroBatcher(complete, max_batch=3, max_wait=5.0)
    futures: list[Future[Any]] = []
    requests = []
    try:
        for i in range(3):
            with tracing.span(f"request {i}") as request:
                requests.append(request)
                futures.append(batcher.submit([f"photo {i}"]))  # type: ignore[list-item]
        assert [f.result(timeout=10) for f in futures] == [["photo 0"], ["photo 1"], ["photo 2"]]
    finally:
        batcher.close()
    batch = one(spans.get_finished_spans(), "cnn.batch")
    first, *others = (r.get_span_context() for r in requests)
    assert batch.context.trace_id == first.trace_id and parent_of(batch) == first.span_id
    assert [link.context for link in batch.links] == others
    assert (batch.attributes or {})["vitrine.cnn.batch_size"] == 3
    assert (batch.attributes or {})["vitrine.cnn.requests"] == 3


# -- sampling and configuration ----------------------------------------------------------


def test_sampling_keeps_a_share_of_new_traces_and_follows_the_caller() -> None:
    exporter = InMemorySpanExporter()
    provider = tracing.new_provider("test", 0.0, shutdown_on_exit=False)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.install(provider)
    try:
        with tracing.span("not kept") as dropped:
            assert not dropped.is_recording()
        sampled = trace.set_span_in_context(
            trace.NonRecordingSpan(
                trace.SpanContext(
                    TRACE_ID, PARENT_ID, is_remote=True, trace_flags=trace.TraceFlags(1)
                )
            )
        )
        with tracing.span("kept: the caller sampled it", parent=sampled):
            pass
    finally:
        tracing.shutdown()
    assert [s.name for s in exporter.get_finished_spans()] == ["kept: the caller sampled it"]


def test_settings_name_the_collector_its_headers_and_the_sample_ratio() -> None:
    settings = load_settings(
        env={
            "VITRINE_OTLP_ENDPOINT": "http://collector:4318",
            "VITRINE_OTLP_HEADERS": "Authorization=Bearer%20abc, x-tenant=shop1",
            "VITRINE_TRACE_SAMPLE_RATIO": "0.25",
        }
    )
    assert tracing.traces_url(settings.otlp_endpoint) == "http://collector:4318/v1/traces"
    assert tracing.traces_url("https://c.example/otlp/v1/traces") == (
        "https://c.example/otlp/v1/traces"
    )
    assert tracing.parse_headers(settings.otlp_headers) == {
        "authorization": "Bearer abc",
        "x-tenant": "shop1",
    }
    assert settings.trace_sample_ratio == 0.25
    with pytest.raises(ConfigError, match="otlp_headers"):
        tracing.parse_headers("no-equals-sign")
    with pytest.raises(ConfigError, match="trace_sample_ratio"):
        tracing.new_provider("test", 1.5)


class _Collector(http.server.BaseHTTPRequestHandler):
    """An OTLP/HTTP collector that keeps what it receives."""

    received: ClassVar[list[tuple[str, dict[str, str], bytes]]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.received.append((self.path, dict(self.headers), body))
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture()
def collector() -> Iterator[tuple[str, list[tuple[str, dict[str, str], bytes]]]]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Collector)
    received: ClassVar[list[tuple[str, dict[str, str], bytes]]] = []
    _Collector.received = received
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", received
    server.shutdown()
    server.server_close()


def test_spans_go_to_the_configured_collector_over_otlp_http(
    collector: tuple[str, list[Any]], tmp_path: Path
) -> None:
    url, received = collector
    settings = load_settings(env={}).with_overrides(
        home=tmp_path, otlp_endpoint=url, otlp_headers="x-tenant=shop1"
    )
    assert tracing.configure(settings, "api") is tracing.provider() is not None
    try:
        assert tracing.configure(settings, "cli") is tracing.provider()  # once per process
        with tracing.span("index.search", {"vitrine.index.k": 5}):
            pass
    finally:
        tracing.shutdown()  # sends what the batch processor holds
    assert len(received) == 1
    path, headers, body = received[0]
    assert path == "/v1/traces" and headers["x-tenant"] == "shop1"
    export = ExportTraceServiceRequest.FromString(body)
    resource = {a.key: a.value for a in export.resource_spans[0].resource.attributes}
    assert resource["service.name"].string_value == "vitrine"
    assert resource["vitrine.process.role"].string_value == "api"
    [sent] = [s for scope in export.resource_spans[0].scope_spans for s in scope.spans]
    assert sent.name == "index.search"


def test_a_stopping_server_sends_its_pending_spans(
    collector: tuple[str, list[Any]], tmp_path: Path
) -> None:
    url, received = collector
    settings = load_settings(env={}).with_overrides(home=tmp_path, otlp_endpoint=url)
    try:
        app = create_app(settings, warm=False)
        with TestClient(app) as client:
            assert client.get("/healthz").status_code == 200
            assert received == []  # held for its batch
        # Sent as the app stopped, not at the process's exit (which may skip it).
        names = [
            span.name
            for _, _, body in received
            for resource in ExportTraceServiceRequest.FromString(body).resource_spans
            for scope in resource.scope_spans
            for span in scope.spans
        ]
        assert names == ["GET /healthz"]
    finally:
        tracing.shutdown()


def test_without_an_endpoint_nothing_is_installed_or_sent(
    collector: tuple[str, list[Any]], tmp_path: Path
) -> None:
    _, received = collector
    events = [{"user_id": "u1", "product_id": "sh1", "type": "purchase", "timestamp": T0}]
    app = small_shop(tmp_path / "home", events, STRATEGIES)  # default settings
    assert tracing.provider() is None and not tracing.enabled()
    # The OpenTelemetry global provider is left alone (still the API's placeholder).
    assert type(trace.get_tracer_provider()).__name__ == "ProxyTracerProvider"
    key = KeyService(app.state.runtime.engine).create("reader", "read")[1]
    with TestClient(app) as client:
        r = client.get("/v1/users/u1/recommendations?k=2", headers={"X-API-Key": key})
        assert r.status_code == 200
    # Spans opened while off are the shared no-op, and carry no context to other threads.
    with tracing.span("anything", {"a": 1}) as span:
        assert not span.is_recording()
    assert tracing.span("other") is tracing.span("anything")
    assert tracing.current_context() is None and tracing.trace_id() == ""
    assert tracing.provider() is None and received == []
