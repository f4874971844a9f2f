"""A search by photo traced end to end with the real CNN: the request, the micro-batch on
the batcher's thread, the onnxruntime call and the index search share one trace."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from PIL import Image

from vitrine import tracing
from vitrine.accounts.keys import KeyService
from vitrine.api.app import create_app
from vitrine.config import load_settings

pytestmark = pytest.mark.integration


def photo(color: tuple[int, int, int]) -> bytes:
    arr = np.full((160, 120, 3), 255, np.uint8)
    arr[30:130, 25:95] = color
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="JPEG", quality=92)
    return buf.getvalue()


@pytest.fixture()
def traced_api(
    tmp_path: Path, model_dir: Path
) -> Iterator[tuple[TestClient, InMemorySpanExporter]]:
    spans = tracing.record_in_memory()
    home = tmp_path / "home"
    home.mkdir()
    (home / "models").symlink_to(model_dir, target_is_directory=True)
    settings = load_settings(env={}).with_overrides(
        home=home, api_rate_limit=0, recommend_retrain_minutes=0
    )
    app = create_app(settings)
    key = KeyService(app.state.runtime.engine).create("writer", "write")[1]
    try:
        with TestClient(app, headers={"X-API-Key": key}) as client:
            for pid, color in (("red", (200, 30, 30)), ("blue", (30, 30, 200))):
                files = [("images", (f"{pid}.jpg", photo(color), "image/jpeg"))]
                r = client.post("/v1/products", data={"id": pid}, files=files)
                assert r.status_code == 201, r.text
            yield client, spans
    finally:
        tracing.shutdown()


def by_name(spans: InMemorySpanExporter) -> dict[str, ReadableSpan]:
    finished = spans.get_finished_spans()
    names = [s.name for s in finished]
    assert len(names) == len(set(names)), names
    return {s.name: s for s in finished}


def test_search_by_photo_is_one_trace_through_the_cnn_and_the_index(
    traced_api: tuple[TestClient, InMemorySpanExporter],
) -> None:
    client, spans = traced_api
    spans.clear()
    files = {"image": ("q.jpg", photo((190, 40, 40)), "image/jpeg")}
    r = client.post("/v1/search/image", data={"k": "2"}, files=files)
    assert r.status_code == 200 and r.json()["results"][0]["product_id"] == "red"
    spans_of = by_name(spans)
    request = spans_of["POST /v1/search/image"]
    batch, inference, search = (
        spans_of[name] for name in ("cnn.batch", "cnn.inference", "index.search")
    )
    trace_id = request.context.trace_id
    assert {s.context.trace_id for s in (batch, inference, search)} == {trace_id}
    assert batch.parent is not None and inference.parent is not None
    assert batch.parent.span_id == request.context.span_id  # across the batcher's thread
    assert inference.parent.span_id == batch.context.span_id
    assert search.parent is not None and search.parent.span_id == request.context.span_id
    attributes = dict(inference.attributes or {})
    assert attributes["vitrine.cnn.batch_size"] == 1
    assert attributes["vitrine.cnn.input_size"] == 224
    assert (
        attributes["vitrine.cnn.model_version"] == client.app.state.runtime.embedder.model_version
    )  # type: ignore[attr-defined]
    assert (search.attributes or {})["vitrine.index.query"] == "photo"
    assert (search.attributes or {})["vitrine.index.size"] == 2
