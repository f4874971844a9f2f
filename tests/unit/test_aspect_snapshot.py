"""The aspect snapshot: written compactly, mapped, kept current, and served by VisualSearch."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from vitrine.catalog.database import make_engine, migrate
from vitrine.catalog.records import ASPECT_VERSIONS
from vitrine.catalog.store import (
    EMBEDDING_KIND,
    CatalogStore,
    FeatureRecord,
    ImageRecord,
    ProductRecord,
)
from vitrine.config import load_settings
from vitrine.index import aspect_snapshot
from vitrine.index.aspect_store import AspectStore
from vitrine.index.visual_search import VisualSearch
from vitrine.vision.embedding import EMBEDDING_DIM

DIMS = {"color": 100, "texture": 62, "shape": 219, "pattern": 43, "layout": 300}
VERSION = "cnn-test"


def rows(n: int, dim: int, seed: int) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def snapshot_of(store: AspectStore, path: Path, sizes: int = 0) -> aspect_snapshot.AspectSnapshot:
    ids, kinds, order = store.export()
    size_ids = ids[:sizes]
    return aspect_snapshot.write_snapshot(
        path, "fp-1", ids, kinds, order, size_ids, np.full((len(size_ids), 2), 7)
    )


def test_kinds_read_whole_by_exact_scans_stay_float32(tmp_path: Path) -> None:
    store = AspectStore()
    store.upsert(["a", "b"], {"color": rows(2, 100, 1), "shape": rows(2, 219, 2)})
    ids, kinds, order = store.export()
    snap = aspect_snapshot.write_snapshot(
        tmp_path / "s", "fp", ids, kinds, order, [], np.zeros((0, 2)), full_precision={"color"}
    )
    assert snap.kinds["color"][0].dtype == np.float32
    assert snap.kinds["shape"][0].dtype == np.float16
    assert np.array_equal(snap.kinds["color"][0][:2], store.rows(["color"])[1]["color"])


def test_round_trip_is_float16_close_and_keeps_presence(tmp_path: Path) -> None:
    store = AspectStore()
    ids = [f"p{i}" for i in range(50)]
    store.upsert(ids, {"color": rows(50, 100, 1), "shape": rows(50, 219, 2)})
    store.upsert(["p3"], {"color": rows(1, 100, 3)})  # p3 has no shape now
    store.remove(["p7"])
    path = tmp_path / "aspects.snapshot"
    snap = snapshot_of(store, path, sizes=10)
    assert aspect_snapshot.snapshot_fingerprint(path) == "fp-1"
    assert snap.ids == [pid for pid in ids if pid != "p7"]
    matrix, present = snap.kinds["shape"]
    assert matrix.dtype == np.float16 and len(matrix) == len(snap.ids) + 1024  # spare rows
    assert not present[snap.ids.index("p3")] and present[snap.ids.index("p4")]
    assert not matrix[len(snap.ids) :].any()
    assert snap.size_ids == snap.ids[:10] and (snap.sizes == 7).all()
    mapped = AspectStore()
    mapped.attach(snap.ids, snap.kinds)
    assert len(mapped) == 49 and "p7" not in mapped and "p3" in mapped
    assert set(mapped.get("p3")) == {"color"}
    got, want = mapped.get("p4")["shape"], store.get("p4")["shape"]
    assert got.dtype == np.float32 and np.abs(got - want).max() < 1e-3
    query = {"color": rows(1, 100, 9)[0], "shape": rows(1, 219, 8)[0]}
    a = mapped.similarities(query, snap.ids)
    b = store.similarities(query, snap.ids)
    for kind in query:
        assert np.allclose(a[kind], b[kind], atol=2e-3, equal_nan=True)


def test_changes_after_the_snapshot_stay_private(tmp_path: Path) -> None:
    store = AspectStore()
    store.upsert([f"p{i}" for i in range(20)], {"color": rows(20, 100, 1)})
    path = tmp_path / "aspects.snapshot"
    snap = snapshot_of(store, path)
    mapped = AspectStore()
    mapped.attach(snap.ids, snap.kinds)
    before = path.read_bytes()
    new = [f"n{i}" for i in range(1500)]  # past the 1024 spare rows: the store grows
    mapped.upsert(["p0", *new], {"color": rows(1501, 100, 2)})
    mapped.remove(["p1"])
    assert path.read_bytes() == before  # copy-on-write: the file is never written
    assert len(mapped) == 1519 and "p1" not in mapped
    assert np.abs(mapped.get("p0")["color"] - rows(1501, 100, 2)[0]).max() < 1e-3
    again = aspect_snapshot.read_snapshot(path)
    assert again.ids == snap.ids and np.array_equal(again.kinds["color"][0], snap.kinds["color"][0])


def test_a_foreign_or_truncated_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "aspects.snapshot"
    assert aspect_snapshot.snapshot_fingerprint(path) is None
    path.write_bytes(b"not a snapshot")
    assert aspect_snapshot.snapshot_fingerprint(path) is None
    with pytest.raises(ValueError):
        aspect_snapshot.read_snapshot(path)


# -- served by VisualSearch --------------------------------------------------------------


@pytest.fixture
def catalog(tmp_path: Path) -> Iterator[tuple[CatalogStore, object]]:
    settings = load_settings(env={}).with_overrides(home=tmp_path / "home")
    settings.home.mkdir(mode=0o700)
    engine = make_engine(settings.resolved_database_url)
    migrate(engine)
    yield CatalogStore(engine), settings
    engine.dispose()


def add(store: CatalogStore, n: int, seed: int, start: int = 0) -> None:
    products, images = [], []
    for i in range(start, start + n):
        features = [FeatureRecord(EMBEDDING_KIND, VERSION, rows(1, EMBEDDING_DIM, seed + i)[0])]
        features += [
            FeatureRecord(kind, ASPECT_VERSIONS[kind], rows(1, dim, seed + i)[0])
            for kind, dim in DIMS.items()
        ]
        pid = f"p{i}"
        products.append(ProductRecord(pid, title=pid))
        images.append(
            ImageRecord(pid, f"h{i}", f"{pid}.jpg", "jpeg", 100 + i, 200, 1, True, 0, features)
        )
    store.save_products(products, images)


def test_visual_search_serves_the_snapshot_without_reading_features(
    catalog: tuple[CatalogStore, object], monkeypatch: pytest.MonkeyPatch
) -> None:
    store, settings = catalog
    add(store, 30, seed=0)
    first = VisualSearch(store, settings, VERSION)  # type: ignore[arg-type]
    assert first.load_or_rebuild() == "rebuilt"
    assert first.snapshot_path.exists()
    assert isinstance(first.aspects.export()[1]["color"][0], np.memmap)
    query = {kind: rows(1, dim, 99)[0] for kind, dim in DIMS.items()}
    expected = first.aspects.similarities(query, [f"p{i}" for i in range(30)])

    def no_feature_reads(*args: object, **kwargs: object) -> None:
        raise AssertionError("aspect rows read from the database")

    second = VisualSearch(store, settings, VERSION)  # type: ignore[arg-type]
    with monkeypatch.context() as patch:
        patch.setattr(store, "primary_vectors", no_feature_reads)
        patch.setattr(store, "primary_image_sizes", no_feature_reads)
        assert second.load_or_rebuild() == "loaded"
    got = second.aspects.similarities(query, [f"p{i}" for i in range(30)])
    for kind in query:
        assert np.array_equal(got[kind], expected[kind])
    assert second._sizes == first._sizes and len(second.aspects) == 30
    assert "layout_coarse" in second.aspects.kinds

    add(store, 2, seed=0, start=30)  # changed through another process
    second.reload(["p30", "p31"])
    store.delete_product("p0")
    second.remove(["p0"])
    assert "p30" in second.aspects and "p0" not in second.aspects
    second.save()  # folded into a new snapshot, mapped again
    current = store.aspect_fingerprint(ASPECT_VERSIONS)
    assert aspect_snapshot.snapshot_fingerprint(second.snapshot_path) == current
    assert isinstance(second.aspects.export()[1]["color"][0], np.memmap)
    third = VisualSearch(store, settings, VERSION)  # type: ignore[arg-type]
    third.load_or_rebuild()
    assert "p30" in third.aspects and "p0" not in third.aspects
    assert third.aspects.get("p31").keys() == second.aspects.get("p31").keys()


def test_a_stale_snapshot_is_rebuilt_from_the_database(
    catalog: tuple[CatalogStore, object],
) -> None:
    store, settings = catalog
    add(store, 10, seed=0)
    VisualSearch(store, settings, VERSION).load_or_rebuild()  # type: ignore[arg-type]
    add(store, 3, seed=0, start=10)  # written while no process ran
    search = VisualSearch(store, settings, VERSION)  # type: ignore[arg-type]
    search.load_or_rebuild()
    assert len(search.aspects) == 13 and "p12" in search.aspects
    current = store.aspect_fingerprint(ASPECT_VERSIONS)
    assert aspect_snapshot.snapshot_fingerprint(search.snapshot_path) == current
