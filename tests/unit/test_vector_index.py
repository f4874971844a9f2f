"""Unit tests for vitrine.index.vector_index.VectorIndex (flat and HNSW paths)."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

from vitrine.index import Hit, VectorIndex

DIM = 32


def normalised(n: int, seed: int = 0, dim: int = DIM) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def sku(i: int) -> str:
    return f"{i:010d}"  # leading zeros, like H&M article ids


def exact_top(x: np.ndarray, ids: list[str], q: np.ndarray, k: int) -> list[str]:
    scores = x @ q
    return [ids[i] for i in np.argsort(-scores, kind="stable")[:k]]


@pytest.fixture(params=["flat", "hnsw"])
def filled(request: pytest.FixtureRequest) -> tuple[VectorIndex, np.ndarray, list[str]]:
    threshold = 10_000 if request.param == "flat" else 50
    index = VectorIndex(DIM, hnsw_threshold=threshold, ef_search=64)
    x = normalised(400)
    ids = [sku(i) for i in range(400)]
    index.upsert(ids, x)
    assert index.kind == request.param
    return index, x, ids


def test_search_returns_the_vector_itself_first(filled) -> None:
    index, x, ids = filled
    assert len(index) == 400
    for i in (0, 17, 399):
        hits = index.search(x[i], k=5)
        assert len(hits) == 5
        assert hits[0].product_id == ids[i]
        assert hits[0].score == pytest.approx(1.0, abs=1e-5)
        assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    assert isinstance(hits[0], Hit)


def test_hnsw_recall_matches_exact_on_small_data(filled) -> None:
    index, x, ids = filled
    queries = normalised(20, seed=9)
    agree = 0
    for q in queries:
        got = {h.product_id for h in index.search(q, k=10)}
        agree += len(got & set(exact_top(x, ids, q, 10)))
    assert agree / 200 >= 0.95


def test_replace_moves_a_product(filled) -> None:
    index, x, ids = filled
    index.upsert([ids[3]], x[200][None, :])  # product 3 now looks like product 200
    assert len(index) == 400
    np.testing.assert_allclose(index.vector(ids[3]), x[200], rtol=1e-6)
    top2 = {h.product_id for h in index.search(x[200], k=2)}
    assert top2 == {ids[3], ids[200]}
    hits = index.search(x[3], k=400)  # the old vector no longer scores 1 for product 3
    (moved,) = [h for h in hits if h.product_id == ids[3]]
    assert moved.score == pytest.approx(float(x[3] @ x[200]), abs=1e-5)
    assert len({h.product_id for h in hits}) == 400  # no duplicate for the replaced id


def test_remove_makes_products_unreachable(filled) -> None:
    index, x, ids = filled
    assert index.remove([ids[5], ids[6], "missing"]) == 2
    assert index.remove([ids[5]]) == 0
    assert len(index) == 398
    assert ids[5] not in index and ids[7] in index
    assert index.vector(ids[5]) is None
    for hit in index.search(x[5], k=400):
        assert hit.product_id not in (ids[5], ids[6])
    assert len(index.search(x[5], k=400)) == 398
    assert ids[5] not in index.ids()


def test_duplicate_ids_in_one_batch_last_wins() -> None:
    index = VectorIndex(DIM)
    x = normalised(3)
    index.upsert(["a", "b", "a"], x)
    assert len(index) == 2
    np.testing.assert_allclose(index.vector("a"), x[2])


def test_crossing_threshold_converts_to_hnsw() -> None:
    index = VectorIndex(DIM, hnsw_threshold=50)
    x = normalised(120, seed=1)
    ids = [sku(i) for i in range(120)]
    index.upsert(ids[:30], x[:30])
    assert index.kind == "flat"
    index.upsert(ids[30:49], x[30:49])
    assert index.kind == "flat"
    index.upsert(ids[49:60], x[49:60])  # 60 >= 50
    assert index.kind == "hnsw"
    assert len(index) == 60
    index.upsert(ids[60:], x[60:])
    assert index.kind == "hnsw" and len(index) == 120
    for i in range(0, 120, 7):
        assert index.search(x[i], k=1)[0].product_id == ids[i]


def test_compaction_after_many_removals() -> None:
    index = VectorIndex(DIM, hnsw_threshold=50, compact_ratio=0.2)
    x = normalised(300, seed=2)
    ids = [sku(i) for i in range(300)]
    index.upsert(ids, x)
    assert index.kind == "hnsw"
    index.remove(ids[:40])
    assert index.tombstones == 40  # 40 / 300 < 20%: not compacted yet
    index.remove(ids[40:100])
    assert index.tombstones == 0  # compacted
    assert index.kind == "hnsw" and len(index) == 200
    for i in (100, 150, 299):
        assert index.search(x[i], k=1)[0].product_id == ids[i]
    assert all(h.product_id not in ids[:100] for h in index.search(x[0], k=200))
    # shrinking well below the threshold goes back to exact search
    index.remove(ids[100:280])
    assert index.kind == "flat" and len(index) == 20
    assert index.search(x[290], k=1)[0].product_id == ids[290]


def test_replacements_compact_too() -> None:
    index = VectorIndex(DIM, hnsw_threshold=50)
    x = normalised(100, seed=3)
    ids = [sku(i) for i in range(100)]
    index.upsert(ids, x)
    for _ in range(3):
        index.upsert(ids[:30], x[:30])
    assert index.tombstones <= 0.2 * (len(index) + index.tombstones)
    assert len(index) == 100
    assert index.search(x[10], k=1)[0].product_id == ids[10]


@pytest.mark.parametrize("threshold", [10_000, 50])
def test_save_load_round_trip(tmp_path: Path, threshold: int) -> None:
    index = VectorIndex(DIM, hnsw_threshold=threshold, ef_search=77)
    x = normalised(200, seed=4)
    ids = [sku(i) for i in range(200)]
    index.upsert(ids, x)
    index.remove([ids[1]])  # a tombstone travels too
    path = tmp_path / "sub" / "visual.index"
    index.save(path, fingerprint="fp-123")

    assert VectorIndex.stored_fingerprint(path) == "fp-123"
    meta = VectorIndex.read_metadata(path)
    assert meta is not None and meta["count"] == 199 and meta["dim"] == DIM
    loaded = VectorIndex.load(path)
    assert loaded.kind == index.kind
    assert loaded.params == index.params
    assert len(loaded) == 199
    assert "0000000000" in loaded and ids[1] not in loaded
    assert set(loaded.ids()) == set(ids) - {ids[1]}
    for i in (0, 50, 199):
        assert loaded.search(x[i], k=3) == index.search(x[i], k=3)
    assert VectorIndex.load(path, ef_search=200).params["ef_search"] == 200
    loaded.upsert(["0000000001"], x[1][None, :])
    assert loaded.search(x[1], k=1)[0].product_id == "0000000001"


def test_stored_fingerprint_reads_only_the_metadata(tmp_path: Path) -> None:
    index = VectorIndex(DIM)
    index.upsert([sku(i) for i in range(300)], normalised(300))
    path = tmp_path / "visual.index"
    index.save(path, fingerprint="abc")
    data = path.read_bytes()
    path.write_bytes(b"\0" * 1024 + data[1024:])  # the faiss index damaged
    assert VectorIndex.stored_fingerprint(path) == "abc"
    with pytest.raises((ValueError, RuntimeError)):
        VectorIndex.load(path)
    path.write_bytes(data[:-8])  # the trailer cut off
    assert VectorIndex.stored_fingerprint(path) is None


@pytest.mark.parametrize("threshold", [10_000, 50])
def test_mapped_index_searches_and_copies_itself_before_growing(
    tmp_path: Path, threshold: int
) -> None:
    x = normalised(200, seed=5)
    ids = [sku(i) for i in range(200)]
    index = VectorIndex(DIM, hnsw_threshold=threshold)
    index.upsert(ids, x)
    path = tmp_path / "visual.index"
    index.save(path, fingerprint="fp")
    mapped = VectorIndex.load(path, mmap=True)
    maps = Path("/proc/self/maps").read_text()
    assert str(path) in maps  # the vectors are read from the file, not copied
    assert mapped.search(x[3], k=5) == index.search(x[3], k=5)
    assert np.array_equal(mapped.vector(ids[7]), x[7])
    path.unlink()  # replaced by another process's save: the open file still serves
    mapped.remove([ids[0]])
    mapped.upsert(["new"], x[0][None, :])  # faiss cannot grow a mapped index
    assert mapped.search(x[0], k=1)[0].product_id == "new"
    assert ids[0] not in mapped and len(mapped) == 200
    assert np.array_equal(mapped.vector(ids[9]), x[9])


def test_version_1_files_are_still_read(tmp_path: Path) -> None:
    import json
    import struct

    import faiss

    x = normalised(20, seed=6)
    flat = faiss.IndexFlatIP(DIM)
    flat.add(x)
    meta = {"format": "vitrine-vector-index", "version": 1, "dim": DIM, "kind": "flat"}
    meta.update({"params": {}, "fingerprint": "old", "count": 20, "rows": 20})
    ids = json.dumps([sku(i) for i in range(20)]).encode()
    head = json.dumps(meta).encode()
    body = faiss.serialize_index(flat).tobytes()
    path = tmp_path / "v1.index"
    path.write_bytes(
        b"VITRIDX\x01"
        + struct.pack("<Q", len(head))
        + head
        + struct.pack("<Q", len(ids))
        + ids
        + body
    )
    assert VectorIndex.stored_fingerprint(path) == "old"
    loaded = VectorIndex.load(path, mmap=True)  # copied: the index is not at offset 0
    assert loaded.search(x[4], k=1)[0].product_id == sku(4)


def test_save_is_atomic_and_leaves_no_temp_files(tmp_path: Path) -> None:
    index = VectorIndex(DIM)
    index.upsert(["007"], normalised(1))
    path = tmp_path / "visual.index"
    index.save(path, fingerprint="one")
    index.upsert(["008"], normalised(1, seed=1))
    index.save(path, fingerprint="two")  # overwrite in place
    assert [p.name for p in tmp_path.iterdir()] == ["visual.index"]
    assert VectorIndex.stored_fingerprint(path) == "two"
    assert len(VectorIndex.load(path)) == 2


def test_failed_save_keeps_old_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import faiss

    index = VectorIndex(DIM)
    index.upsert(["a"], normalised(1))
    path = tmp_path / "visual.index"
    index.save(path, fingerprint="old")

    def boom(*args: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(faiss, "write_index", boom)
    with pytest.raises(OSError, match="disk full"):
        index.save(path, fingerprint="new")
    assert [p.name for p in tmp_path.iterdir()] == ["visual.index"]
    assert VectorIndex.stored_fingerprint(path) == "old"


def test_stored_fingerprint_of_missing_or_foreign_file(tmp_path: Path) -> None:
    assert VectorIndex.stored_fingerprint(tmp_path / "nope") is None
    junk = tmp_path / "junk"
    junk.write_bytes(b"not an index at all")
    assert VectorIndex.stored_fingerprint(junk) is None
    with pytest.raises(ValueError):
        VectorIndex.load(junk)


def test_selective_filter_returns_exactly_the_allowed(filled_big) -> None:
    index, x, ids = filled_big
    q = x[0]
    allowed = {ids[10], ids[500], ids[1999], "not-in-index"}
    hits = index.search(q, k=10, allowed=allowed)
    expected = sorted(
        (ids[i] for i in (10, 500, 1999)), key=lambda pid: -float(x[ids.index(pid)] @ q)
    )
    assert [h.product_id for h in hits] == expected
    assert hits[0].score >= hits[1].score >= hits[2].score


def test_broad_filter_returns_k_allowed(filled_big) -> None:
    index, x, ids = filled_big
    allowed = set(ids[::2])  # 50%: goes through the faiss selector path
    for i in (1, 2, 3):
        hits = index.search(x[i], k=10, allowed=allowed)
        assert len(hits) == 10
        assert all(h.product_id in allowed for h in hits)
        assert len({h.product_id for h in hits}) == 10
    hits = index.search(x[2], k=10, allowed=allowed)
    assert hits[0].product_id == ids[2]


def test_filter_with_tombstones_and_exclude(filled_big) -> None:
    index, x, ids = filled_big
    index.remove(ids[:100:2])
    allowed = set(ids[:600])
    hits = index.search(x[0], k=600, allowed=allowed, exclude=[ids[1]])
    expected = set(ids[:600]) - set(ids[:100:2]) - {ids[1]}
    assert {h.product_id for h in hits} == expected


def test_exclude(filled) -> None:
    index, x, ids = filled
    hits = index.search(x[7], k=5, exclude=[ids[7]])
    assert len(hits) == 5
    assert ids[7] not in {h.product_id for h in hits}
    assert hits[0].product_id == exact_top(x, ids, x[7], 2)[1]
    assert len(index.search(x[7], k=1000, exclude=ids[:10])) == 390


def test_search_batch_and_edge_cases(filled) -> None:
    index, x, ids = filled
    results = index.search_batch(x[:4], k=3)
    assert [r[0].product_id for r in results] == ids[:4]
    assert index.search(x[0], k=0) == []
    assert index.search(x[0], k=5, allowed=set()) == []
    assert index.search(x[0], k=5, allowed={"nope"}) == []
    with pytest.raises(ValueError):
        index.search(np.ones(DIM + 1, dtype=np.float32))
    with pytest.raises(ValueError):
        index.upsert(["x"], np.full((1, DIM), np.nan, dtype=np.float32))
    with pytest.raises(ValueError):
        index.upsert(["x", "y"], normalised(1))
    assert VectorIndex(DIM).search(x[0], k=3) == []


def test_concurrent_search_during_upsert() -> None:
    index = VectorIndex(DIM, hnsw_threshold=100, hnsw_m=16, ef_construction=64)
    x = normalised(1200, seed=5)
    ids = [sku(i) for i in range(1200)]
    index.upsert(ids[:50], x[:50])
    errors: list[BaseException] = []
    stop = threading.Event()

    def reader(seed: int) -> None:
        rng = np.random.default_rng(seed)
        try:
            while not stop.is_set():
                q = x[int(rng.integers(0, 50))]
                hits = index.search(q, k=5)
                assert hits and hits[0].score > 0.99
                index.search(q, k=5, allowed=set(ids[:40]), exclude=[ids[0]])
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=reader, args=(s,)) for s in range(3)]
    for t in threads:
        t.start()
    try:
        for start in range(50, 1200, 50):
            index.upsert(ids[start : start + 50], x[start : start + 50])
            index.remove(ids[start : start + 10])
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert not errors, errors[0]
    assert index.kind == "hnsw"
    assert len(index) == 1200 - 23 * 10


@pytest.fixture
def filled_big() -> tuple[VectorIndex, np.ndarray, list[str]]:
    index = VectorIndex(DIM, hnsw_threshold=50, hnsw_m=16, ef_construction=32, exact_filter_max=64)
    x = normalised(2000, seed=6)
    ids = [sku(i) for i in range(2000)]
    index.upsert(ids, x)
    assert index.kind == "hnsw"
    return index, x, ids


def test_frozenset_filter_cache_sees_index_changes(filled_big) -> None:
    index, x, ids = filled_big
    broad = frozenset(ids[:1000])  # past exact_filter_max: bitmap path, cached
    small = frozenset(ids[:20])  # exact path, cached
    for allowed in (broad, small):
        first = index.search(x[0], k=5, allowed=allowed)
        assert first[0].product_id == ids[0]
        assert index.search(x[0], k=5, allowed=allowed) == first
    index.remove([ids[0]])
    for allowed in (broad, small):
        hits = index.search(x[0], k=5, allowed=allowed)
        assert len(hits) == 5 and ids[0] not in {h.product_id for h in hits}
        assert all(h.product_id in allowed for h in hits)
    index.upsert([ids[0]], x[0][None, :])
    assert index.search(x[0], k=1, allowed=broad)[0].product_id == ids[0]
    assert index.search(x[0], k=1, allowed=small)[0].product_id == ids[0]


def test_float16_storage_halves_the_vectors_and_keeps_the_neighbours(tmp_path: Path) -> None:
    x = normalised(600, seed=11)
    ids = [sku(i) for i in range(600)]
    full = VectorIndex(DIM, hnsw_threshold=50)
    half = VectorIndex(DIM, hnsw_threshold=50, storage="float16")
    full.upsert(ids, x)
    half.upsert(ids, x)
    assert (full.storage, half.storage) == ("float32", "float16")
    assert half.kind == "hnsw" and half.params["storage"] == "float16"
    assert np.allclose(half.vector(ids[5]), x[5], atol=1e-3)
    queries = normalised(20, seed=12)
    agree = sum(
        len({h.product_id for h in half.search(q, k=10)} & set(exact_top(x, ids, q, 10)))
        for q in queries
    )
    assert agree >= 190
    # Filtered (exact) search and compaction read the float16 rows back.
    allowed = set(ids[:30])
    assert {h.product_id for h in half.search(x[3], k=5, allowed=allowed)} <= allowed
    assert half.search(x[3], k=1, allowed=allowed)[0].product_id == ids[3]
    half.remove(ids[:200])
    assert half.tombstones == 0 and half.storage == "float16"
    assert half.search(x[300], k=1)[0].product_id == ids[300]
    path = tmp_path / "half.index"
    half.save(path)
    for mmap in (False, True):
        loaded = VectorIndex.load(path, mmap=mmap)
        assert loaded.storage == "float16"
        assert loaded.search(x[301], k=3) == half.search(x[301], k=3)
    assert VectorIndex.load(path, storage="float32").storage == "float16"  # until rebuilt
    with pytest.raises(ValueError, match="storage"):
        VectorIndex(DIM, storage="int4")
