"""Top-k retrieval of the hybrid's candidate sources: exact below a size, IVF above."""

from __future__ import annotations

import pickle

import numpy as np

from vitrine.recommend.retrieval import ItemRetrieval


def _clustered(n: int, dim: int = 32, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(60, dim))
    x = centres[rng.integers(0, 60, n)] + 0.5 * rng.normal(size=(n, dim))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def _exact_top(vectors: np.ndarray, items: np.ndarray, query: np.ndarray, k: int) -> set[int]:
    return set(items[np.argsort(-(vectors @ query), kind="stable")[:k]].tolist())


def test_exact_below_the_size_and_ivf_above_find_the_same_items() -> None:
    vectors = _clustered(6000)
    items = np.arange(6000, dtype=np.int64) * 2  # item indices need not be row numbers
    queries = _clustered(20, seed=1)
    exact = ItemRetrieval(items, vectors, ann_min=0)
    ivf = ItemRetrieval(items, vectors, ann_min=1000, nprobe=16)
    assert not exact.approximate and ivf.approximate
    recall = []
    for q, (e_items, e_scores), (a_items, a_scores) in zip(
        queries, exact.search(queries, 50), ivf.search(queries, 50), strict=True
    ):
        assert set(e_items.tolist()) == _exact_top(vectors, items, q, 50)
        assert np.all(np.diff(e_scores) <= 1e-6)  # best first
        # scores are exact even when the candidates come from 8-bit codes
        rows = a_items // 2
        np.testing.assert_allclose(a_scores, vectors[rows] @ q, rtol=1e-5)
        recall.append(len(set(a_items.tolist()) & set(e_items.tolist())) / 50)
    assert np.mean(recall) >= 0.9


def test_the_mask_is_honoured_and_a_narrow_one_is_scored_exactly() -> None:
    vectors = _clustered(5000)
    items = np.arange(5000, dtype=np.int64)
    ivf = ItemRetrieval(items, vectors, ann_min=1000)
    query = _clustered(1, seed=2)
    allowed = np.zeros(5000, bool)
    allowed[::2] = True
    found, _ = ivf.search(query, 30, allowed)[0]
    assert len(found) == 30 and allowed[found].all()
    narrow = np.zeros(5000, bool)
    narrow[[7, 70, 700, 4000]] = True  # far fewer than k, anywhere in the space
    found, _ = ivf.search(query, 30, narrow)[0]
    assert sorted(found.tolist()) == [7, 70, 700, 4000]


def test_changed_rows_are_searched_beside_the_shared_index() -> None:
    vectors = _clustered(4000)
    items = np.arange(4000, dtype=np.int64)
    base = ItemRetrieval(items, vectors, ann_min=1000)
    query = vectors[10].copy()
    # a new item 5000 identical to the query; item 10 (the query's own row) removed;
    # item 11 moved far away
    changed = base.with_rows(
        np.array([5000, 11]), np.stack([query, -vectors[11]]), removed=np.array([10])
    )
    assert changed.index is base.index  # the IVF index is shared, not rebuilt
    found, scores = changed.search(query, 5)[0]
    assert found[0] == 5000 and abs(scores[0] - 1.0) < 1e-5
    assert 10 not in found.tolist() and 11 not in found.tolist()
    assert base.search(query, 1)[0][0][0] == 10  # the original is unchanged
    # many changes: everything is indexed again
    rebuilt = base.with_rows(np.arange(4000, 5500), _clustered(1500, seed=3))
    assert rebuilt.index is not base.index and len(rebuilt) == 5500


def test_a_pickled_retrieval_answers_the_same() -> None:
    vectors = _clustered(3000)
    ivf = ItemRetrieval(np.arange(3000), vectors, ann_min=1000)
    copy = pickle.loads(pickle.dumps(ivf))
    query = _clustered(3, seed=4)
    for a, b in zip(ivf.search(query, 20), copy.search(query, 20), strict=True):
        assert a[0].tolist() == b[0].tolist()
