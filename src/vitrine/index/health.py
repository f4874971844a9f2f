"""Recall of the approximate visual index against exact search, on a sample of its products.

Exact search runs through the index's own exact path: the products are scored in
chunks small enough for the index to score them exactly (its filtered search), and the
best of all chunks are kept. On a flat index both sides are exact and recall is 1.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass

import numpy as np

from vitrine.index import Hit, VectorIndex


@dataclass(frozen=True)
class RecallCheck:
    """Recall@k of the approximate index against exact search on a sample."""

    recall: float | None  # None when the index has too few products to check
    k: int
    queries: int
    index_size: int
    kind: str
    seconds: float
    checked_at: float  # time.time()


def _exact(index: VectorIndex, queries: np.ndarray, k: int, ids: list[str]) -> list[list[Hit]]:
    best: list[list[Hit]] = [[] for _ in range(len(queries))]
    # Filtered searches over at most exact_filter_max products are scored exactly.
    size = max(1, int(index.params["exact_filter_max"]))
    for start in range(0, len(ids), size):
        chunk = ids[start : start + size]
        for i, hits in enumerate(index.search_batch(queries, k, allowed=chunk)):
            best[i] = sorted(best[i] + hits, key=lambda h: -h.score)[:k]
    return best


def check_recall(index: VectorIndex, k: int = 10, sample: int = 50, seed: int = 0) -> RecallCheck:
    """recall@k of ``index.search`` against exact search for ``sample`` stored products."""
    started = time.perf_counter()
    ids = index.ids()
    if len(ids) <= k:
        return RecallCheck(None, k, 0, len(ids), index.kind, 0.0, time.time())
    chosen = random.Random(seed).sample(ids, min(sample, len(ids)))
    vectors = [index.vector(pid) for pid in chosen]
    queries = np.vstack([v for v in vectors if v is not None]).astype(np.float32)
    approximate = index.search_batch(queries, k)
    exact = _exact(index, queries, k, ids)
    found = sum(
        len({h.product_id for h in a} & {h.product_id for h in e})
        for a, e in zip(approximate, exact, strict=True)
    )
    wanted = sum(len(e) for e in exact)
    return RecallCheck(
        found / wanted if wanted else None,
        k,
        len(queries),
        len(ids),
        index.kind,
        time.perf_counter() - started,
        time.time(),
    )
