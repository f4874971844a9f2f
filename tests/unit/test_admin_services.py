"""What the admin pages compute: latency percentiles, index recall, thumbnails, label metrics."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from prometheus_client import CollectorRegistry
from prometheus_client import Histogram as PromHistogram

from vitrine.admin.monitor import Histogram, read_registry
from vitrine.catalog.blobs import LocalBlobStore
from vitrine.catalog.browse import BrowseFilter, CatalogBrowser
from vitrine.catalog.database import make_engine, migrate
from vitrine.catalog.models import Label
from vitrine.catalog.store import CatalogStore, ProductRecord
from vitrine.catalog.thumbnails import thumbnail, thumbnail_key
from vitrine.classify.label_metrics import LabelStatistics, histogram
from vitrine.index import VectorIndex
from vitrine.index.health import check_recall


def test_histogram_quantiles_interpolate_within_buckets() -> None:
    registry = CollectorRegistry()
    h = PromHistogram(
        "vitrine_http_request_seconds",
        "x",
        ["method", "route"],
        buckets=(0.01, 0.1, 1),
        registry=registry,
    )
    for value in [0.005] * 50 + [0.05] * 40 + [0.5] * 10:
        h.labels("GET", "/x").observe(value)
    hist = read_registry(registry)["latency"]["GET /x"]
    assert hist.total == 100
    assert hist.quantile(0.5) == pytest.approx(0.01)  # all of the first bucket
    assert 0.01 < hist.quantile(0.7) < 0.1
    assert 0.1 < hist.quantile(0.99) <= 1.0
    older = Histogram(hist.bounds, [50, 50, 50, 50], 50, 0.25)
    recent = hist.minus(older)
    assert recent.total == 50 and recent.quantile(0.5) > 0.01  # only the slower half is new
    assert Histogram().quantile(0.5) is None


def test_recall_check_is_exact_on_flat_and_measured_on_hnsw() -> None:
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(3000, 32)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    ids = [f"p{i}" for i in range(len(vectors))]
    flat = VectorIndex(32, hnsw_threshold=10_000)
    flat.upsert(ids, vectors)
    result = check_recall(flat, k=10, sample=20)
    assert result.kind == "flat" and result.recall == 1.0 and result.queries == 20
    # A deliberately poor graph (M=2, efSearch=1) must show a recall well below 1.
    poor = VectorIndex(32, hnsw_threshold=100, hnsw_m=2, ef_construction=4, ef_search=1)
    poor.upsert(ids, vectors)
    measured = check_recall(poor, k=10, sample=30)
    assert measured.kind == "hnsw" and measured.recall is not None and measured.recall < 0.9
    good = VectorIndex(32, hnsw_threshold=100, ef_search=256)
    good.upsert(ids, vectors)
    assert check_recall(good, k=10, sample=30).recall > measured.recall
    assert check_recall(VectorIndex(32), k=10).recall is None  # empty: nothing to check


def test_thumbnails_are_made_once_and_kept_in_the_blob_store(tmp_path: Path) -> None:
    blobs = LocalBlobStore(tmp_path / "blobs")
    buf = io.BytesIO()
    Image.new("RGB", (1200, 800), (10, 120, 200)).save(buf, format="JPEG")
    blobs.put("images/ab/cd/abcd.jpg", buf.getvalue())
    data = thumbnail(blobs, "images/ab/cd/abcd.jpg", 320)
    with Image.open(io.BytesIO(data)) as img:
        assert img.size == (320, 213)
    key = thumbnail_key("images/ab/cd/abcd.jpg", 320)
    assert blobs.exists(key) and blobs.get(key) == data
    with pytest.raises(ValueError, match="size"):
        thumbnail(blobs, "images/ab/cd/abcd.jpg", 999)


@pytest.fixture()
def store(tmp_path: Path) -> CatalogStore:
    engine = make_engine(f"sqlite:///{tmp_path / 'c.db'}")
    migrate(engine)
    store = CatalogStore(engine)
    store.upsert_products(
        [
            ProductRecord(id=f"p{i}", title=f"thing {i}", attributes={"cat": "A" if i < 4 else "B"})
            for i in range(6)
        ]
    )
    return store


def model_label(store: CatalogStore, pid: str, value: str, confidence: float) -> None:
    with store.engine.begin() as conn:
        conn.execute(
            Label.__table__.insert().values(
                product_id=pid,
                field="type",
                value=value,
                source="model",
                confidence=confidence,
                model_version="clf-1",
            )
        )


def human_label(store: CatalogStore, pid: str, value: str) -> None:
    store.upsert_labels([{"product_id": pid, "field": "type", "value": value, "source": "human"}])


def test_label_agreement_gives_per_class_metrics_and_confusion(store: CatalogStore) -> None:
    for pid, predicted, truth in [
        ("p0", "shirt", "shirt"),
        ("p1", "shirt", "dress"),
        ("p2", "dress", "dress"),
        ("p3", "dress", "dress"),
    ]:
        model_label(store, pid, predicted, 0.8)
        human_label(store, pid, truth)
    model_label(store, "p4", "shirt", 0.4)  # not reviewed: not in the metrics
    stats = LabelStatistics(store.engine)
    [metrics] = stats.agreement()
    assert metrics.classes == ["dress", "shirt"]
    assert metrics.confusion == [[2, 1], [0, 1]]  # rows: people, columns: model
    assert metrics.precision == [1.0, 0.5] and metrics.recall == [pytest.approx(0.6667), 1.0]
    assert "4 products" in metrics.evaluated_on
    # Counts: a human label wins over the model's for the same product and field.
    assert dict(stats.label_counts("type")) == {"dress": 3, "shirt": 2}
    source, confidences = stats.model_confidences()
    assert source == "classifier labels" and sorted(confidences) == [0.4, 0.8, 0.8, 0.8, 0.8]
    labels, counts = histogram(confidences, bins=5)
    assert counts == [0, 0, 1, 0, 4] and labels[0] == "0.0–0.2"
    assert dict(stats.attribute_counts("cat")) == {"A": 4, "B": 2}


def test_browse_filters_by_text_attribute_and_label(store: CatalogStore) -> None:
    browser = CatalogBrowser(store.engine, "v1")
    assert [c.id for c in browser.cards(BrowseFilter(attribute="cat=B"))] == ["p4", "p5"]
    assert [c.id for c in browser.cards(BrowseFilter(text="thing 3"))] == ["p3"]
    model_label(store, "p1", "shirt", 0.3)
    model_label(store, "p2", "shirt", 0.9)
    human_label(store, "p3", "shirt")
    found = browser.cards(BrowseFilter(label="type=shirt", min_confidence=0.5))
    assert [c.id for c in found] == ["p2", "p3"]  # p1 too unsure; a human label always counts
    assert [c.id for c in browser.cards(BrowseFilter(), after="p3", limit=2)] == ["p4", "p5"]
    assert [c.id for c in browser.cards(BrowseFilter(), ids=["p5", "p0"])] == ["p5", "p0"]
    with pytest.raises(ValueError, match="field=value"):
        browser.cards(BrowseFilter(attribute="nonsense"))
    growth = browser.catalog_growth(7)
    assert growth["size"][-1] == 6 and sum(growth["products"]) == 6
    assert browser.corrections_per_day(3)[-1][1] == 1
