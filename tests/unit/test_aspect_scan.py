"""Unit tests for the aspect scans' IVF indexes (vitrine.index.aspect_scan)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from vitrine.index.aspect_scan import AspectScans, ScanIndex
from vitrine.index.aspect_store import AspectStore
from vitrine.index.ivf import list_count

SCANS = ({"a": 1.0}, {"a": 1.0, "b": 2.0})


def clustered(n: int, dim: int, seed: int, centres: int = 40) -> np.ndarray:
    """Rows around a few centres, as real aspects are (neighbourhoods, not noise)."""
    rng = np.random.default_rng(seed)
    base = rng.standard_normal((centres, dim)).astype(np.float32)
    rows = base[rng.integers(0, centres, n)] + 0.35 * rng.standard_normal((n, dim))
    return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)


def store_of(n: int, seed: int = 0) -> AspectStore:
    store = AspectStore()
    ids = [f"p{i:05d}" for i in range(n)]
    store.upsert(ids, {"a": clustered(n, 24, seed), "b": clustered(n, 16, seed + 1)})
    return store


def query_of(store: AspectStore, pid: str, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        k: v + 0.2 * rng.standard_normal(v.shape).astype(np.float32)
        for k, v in store.get(pid).items()
    }


def test_list_count_grows_with_the_square_root() -> None:
    assert list_count(10_000) == 200
    assert list_count(1_000_000) == 2000
    assert list_count(100) == 2  # at least 39 points per list
    assert list_count(10) == 1


def test_ivf_scan_scores_as_the_exact_scan_and_finds_its_top_ten() -> None:
    store = store_of(3000)
    scans = AspectScans(store, SCANS, min_products=1000, nprobe=16)
    scans.rebuild()
    assert scans.approximate
    overlap = []
    for n, pid in enumerate(store.ids()[:40]):
        query = query_of(store, pid, n)
        for weights in SCANS:
            exact = store.scan(query, weights, 10)
            index = ScanIndex(weights, store.kinds, 8)
            found = scans._search_one(
                scans._indexes[SCANS.index(weights)], weights, query, 10, None
            )
            assert len(found) == 10
            overlap.append(len({h.product_id for h in found} & {h.product_id for h in exact}) / 10)
            # The same score as the exact scan, up to the 8-bit codes.
            scores = {h.product_id: h.score for h in exact}
            for hit in found:
                if hit.product_id in scores:
                    assert abs(hit.score - scores[hit.product_id]) < 0.02
            assert index.dim == sum(store.kinds[k] for k in weights)
    assert np.mean(overlap) >= 0.9


def test_small_catalog_scans_exactly() -> None:
    store = store_of(500)
    scans = AspectScans(store, SCANS, min_products=1000)
    scans.rebuild()
    assert not scans.approximate
    query = query_of(store, "p00007", 1)
    expected = [h for w in SCANS for h in store.scan(query, w, 5)]
    assert scans.search(query, 5) == expected


def test_changes_are_followed_and_the_lists_trained_again_when_the_catalog_doubles() -> None:
    store = store_of(2000)
    scans = AspectScans(store, SCANS, min_products=1000, nprobe=200)
    scans.rebuild()
    target = store.get("p00042")
    store.upsert(["new"], {k: v[None, :] for k, v in target.items()})
    scans.refresh(["new"])
    found = {h.product_id for h in scans.search(target, 3)}
    assert {"new", "p00042"} <= found

    store.remove(["p00042"])
    scans.refresh(["p00042"])
    assert "p00042" not in {h.product_id for h in scans.search(target, 3)}
    assert scans._indexes[0].trained_on == 2000

    extra = store_of(2500, seed=7)
    ids, rows = extra.rows(["a", "b"])
    renamed = [f"x{pid}" for pid in ids]
    store.upsert(renamed, rows)
    scans.refresh(renamed)
    assert scans._indexes[0].trained_on == len(store) == 4500

    store.remove(store.ids()[:4000])
    scans.refresh(store.ids())
    assert not scans.approximate  # back below min_products: exact again


def test_filters_allow_only_their_products() -> None:
    store = store_of(3000)
    scans = AspectScans(store, SCANS, min_products=1000, nprobe=8, exact_filter_max=100)
    scans.rebuild()
    query = query_of(store, "p00010", 3)
    small = {f"p{i:05d}" for i in range(0, 3000, 50)}  # 60: scored exactly
    hits = scans.search(query, 5, small)
    assert len(hits) == 10 and {h.product_id for h in hits} <= small
    large = {f"p{i:05d}" for i in range(0, 3000, 2)}  # 1,500: through the IVF selector
    hits = scans.search(query, 5, large)
    assert len(hits) == 10 and {h.product_id for h in hits} <= large
    assert scans.search(query, 5, set()) == []


def test_saved_indexes_are_read_back_only_for_their_fingerprint(tmp_path: Path) -> None:
    store = store_of(2000)
    scans = AspectScans(store, SCANS, min_products=1000, nprobe=8)
    scans.rebuild()
    store.remove(["p00003"])
    scans.refresh(["p00003"])
    assert scans.dirty
    scans.save(tmp_path, "fp-1")
    assert not scans.dirty
    query = query_of(store, "p00011", 5)
    before = scans.search(query, 10)

    again = AspectScans(store, SCANS, min_products=1000, nprobe=8)
    assert not again.load(tmp_path, "fp-2")
    assert not again.approximate
    assert again.load(tmp_path, "fp-1")
    assert again.search(query, 10) == before
    assert "p00003" not in {h.product_id for h in again.search(query_of(store, "p00003", 1), 10)}
    other_scans = AspectScans(store, ({"a": 2.0},), min_products=1000)
    assert not other_scans.load(tmp_path, "fp-1")  # built for other weights


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="nprobe"):
        AspectScans(AspectStore(), SCANS, nprobe=0)
    with pytest.raises(ValueError, match="positive weight"):
        ScanIndex({"a": 0.0}, {"a": 3}, 4)
