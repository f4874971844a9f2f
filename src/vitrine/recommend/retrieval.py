"""Top-k retrieval for the hybrid's candidate sources, without reading the whole catalog.

A candidate source asks for the catalog items whose vectors score highest against a few
query vectors (a customer's visual interests, their recent items, their ALS factors),
among the items a request allows. :class:`ItemRetrieval` answers exactly, by one matrix
product over its rows, below ``ann_min`` rows; above, through a faiss inverted-file index
with 8-bit codes (:func:`vitrine.index.ivf.train_ivf_sq8`), so the cost per request grows
with the square root of the catalog instead of linearly. The scores it returns are always
exact (the retrieved rows are scored again on their float vectors): only which items come
back is approximate.

A request's mask is applied to what the index returns, fetching more while too few pass
(a query that still comes back short under a narrow mask is scored exactly on the allowed
rows).
"""

from __future__ import annotations

from typing import Any, Final

import faiss
import numpy as np

from vitrine.index.concurrency import omp_threads
from vitrine.index.ivf import train_ivf_sq8
from vitrine.recommend.base import top_k

# Below this many rows the exact matrix product is cheap enough: it reads every row
# (30,000 x 128 float32: 15 MB, about 2 ms on these cores, bound by memory bandwidth).
ANN_MIN_ROWS: Final = 30_000
NPROBE: Final = 16
# An allowed set this small is scored exactly on its rows.
EXACT_ALLOWED_MAX: Final = 65_536
_MAX_FETCH: Final = 4_096

Retrieved = tuple[np.ndarray, np.ndarray]  # (item indices, scores), best first
_EMPTY: Final[Retrieved] = (np.zeros(0, np.int64), np.zeros(0, np.float32))


class ItemRetrieval:
    """The ``k`` items of ``items`` whose ``vectors`` have the largest inner product with
    each query, exactly or through an IVF index chosen by size.

    Args:
        items: the item index of each row (int64, any order).
        vectors: one float32 row per item.
        ann_min: rows from which an IVF index is built (0: never; None:
            ``ANN_MIN_ROWS``).
        nprobe: inverted lists read per query.
    """

    def __init__(
        self,
        items: np.ndarray,
        vectors: np.ndarray,
        ann_min: int | None = None,
        nprobe: int = NPROBE,
    ) -> None:
        self.items = np.asarray(items, np.int64)
        self.vectors = np.ascontiguousarray(vectors, np.float32)
        ann_min = ANN_MIN_ROWS if ann_min is None else ann_min
        self.ann_min, self.nprobe = ann_min, nprobe
        self.index: faiss.Index | None = None
        self.overlay: ItemRetrieval | None = None  # rows changed since the index was built
        self.shadowed = np.zeros(0, np.int64)  # sorted items whose indexed row is stale
        if ann_min and len(self.items) >= ann_min:
            self.index = train_ivf_sq8(self.vectors, nprobe)
            with omp_threads(1):
                self.index.add(self.vectors)

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        if self.index is not None:
            state["index"] = faiss.serialize_index(self.index)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        if state.get("index") is not None:
            state["index"] = faiss.deserialize_index(np.asarray(state["index"]))
        self.__dict__.update(state)

    def with_rows(
        self, items: np.ndarray, vectors: np.ndarray, removed: np.ndarray | None = None
    ) -> ItemRetrieval:
        """This retrieval with ``items`` added or replaced (their new ``vectors``) and
        ``removed`` left out, the IVF index shared: the changed rows are searched exactly
        beside it until they are a quarter of it, then everything is indexed again."""
        items = np.asarray(items, np.int64)
        changed = np.union1d(items, removed if removed is not None else np.zeros(0, np.int64))
        if self.index is None or len(items) + len(self.shadowed) > len(self.items) // 4:
            old_items, old_vectors = self.current_rows()
            keep = ~np.isin(old_items, changed)
            return ItemRetrieval(
                np.concatenate([old_items[keep], items]),
                np.concatenate([old_vectors[keep], np.asarray(vectors, np.float32)]),
                self.ann_min,
                self.nprobe,
            )
        new = object.__new__(ItemRetrieval)  # not copy.copy: that would serialise the index
        new.__dict__.update(self.__dict__)
        if self.overlay is not None:
            keep = ~np.isin(self.overlay.items, changed)
            items = np.concatenate([self.overlay.items[keep], items])
            vectors = np.concatenate([self.overlay.vectors[keep], vectors])
        new.overlay = ItemRetrieval(items, vectors, ann_min=0)
        new.shadowed = np.union1d(self.shadowed, changed)
        return new

    def current_rows(self) -> tuple[np.ndarray, np.ndarray]:
        """(items, vectors) that this retrieval answers from, overlay included."""
        keep = ~np.isin(self.items, self.shadowed)
        items, vectors = self.items[keep], self.vectors[keep]
        if self.overlay is not None:
            items = np.concatenate([items, self.overlay.items])
            vectors = np.concatenate([vectors, self.overlay.vectors])
        return items, vectors

    def __len__(self) -> int:
        return len(self.items)

    @property
    def approximate(self) -> bool:
        return self.index is not None

    def search(
        self, queries: np.ndarray, k: int, allowed: np.ndarray | None = None
    ) -> list[Retrieved]:
        """Per query row: the ``k`` best items where ``allowed`` (a mask over item
        indices; None: all), best first, with their exact scores."""
        queries = np.ascontiguousarray(np.atleast_2d(queries), np.float32)
        if not len(queries) or not len(self.items) or k <= 0:
            return [_EMPTY] * len(queries)
        if self.index is None:
            return self._exact(queries, k, allowed, np.arange(len(self.items)))
        found = self._search_index(queries, k, allowed)
        if self.overlay is None:
            return found
        extra = self.overlay.search(queries, k, allowed)
        return [_merged(a, b, k) for a, b in zip(found, extra, strict=True)]

    def _search_index(
        self, queries: np.ndarray, k: int, allowed: np.ndarray | None
    ) -> list[Retrieved]:
        assert self.index is not None
        out: list[Retrieved] = [_EMPTY] * len(queries)
        pending = list(range(len(queries)))
        cap = min(_MAX_FETCH, len(self.items))
        fetch = min(2 * k + 16, cap)
        while pending:
            with omp_threads(1):
                _, found = self.index.search(queries[pending], fetch)
            short = []
            for q, rows in zip(pending, found, strict=True):
                rows = rows[rows >= 0]
                if len(self.shadowed):
                    rows = rows[~np.isin(self.items[rows], self.shadowed)]
                if allowed is not None:
                    rows = rows[allowed[self.items[rows]]]
                if len(rows) >= k:
                    out[q] = self._scored(queries[q], rows, k)
                elif fetch >= cap:
                    out[q] = self._fallback(queries[q], rows, k, allowed)
                else:
                    short.append(q)
            pending, fetch = short, min(fetch * 4, cap)
        return out

    def _scored(self, query: np.ndarray, rows: np.ndarray, k: int) -> Retrieved:
        scores = self.vectors[rows] @ query
        best = top_k(scores, k)
        return self.items[rows[best]], scores[best]

    def _fallback(
        self, query: np.ndarray, found: np.ndarray, k: int, allowed: np.ndarray | None
    ) -> Retrieved:
        """A query the index could not fill from the allowed items: scored exactly over
        them when they are not many (a narrow filter), else what the index found."""
        rows = np.arange(len(self.items))
        if allowed is not None:
            rows = rows[allowed[self.items]]
        if len(self.shadowed):
            rows = rows[~np.isin(self.items[rows], self.shadowed)]
        if len(rows) <= EXACT_ALLOWED_MAX:
            return self._exact(query[None, :], k, None, rows)[0]
        return self._scored(query, found, k)

    def _exact(
        self, queries: np.ndarray, k: int, allowed: np.ndarray | None, rows: np.ndarray
    ) -> list[Retrieved]:
        if len(rows) == len(self.items):  # every row: score them in place, mask after
            scores = self.vectors @ queries.T
            mask = allowed[self.items] if allowed is not None else None
        else:
            if allowed is not None:
                rows = rows[allowed[self.items[rows]]]
            scores, mask = self.vectors[rows] @ queries.T, None
        out = []
        for j in range(len(queries)):
            best = top_k(scores[:, j], k, mask)
            picked = best if len(rows) == len(self.items) else rows[best]
            out.append((self.items[picked], scores[best, j]))
        return out

    def nearest_all(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(scores, items), each ``len(queries) x k``, of the ``k`` nearest items of every
        query, for bulk work (no mask; faiss's threads; scores from the codes above
        ``ann_min``; -1 items where fewer exist)."""
        queries = np.ascontiguousarray(queries, np.float32)
        k = min(k, len(self.items))
        if self.index is None:
            scores, rows = faiss.knn(queries, self.vectors, k, faiss.METRIC_INNER_PRODUCT)
        else:
            scores, rows = self.index.search(queries, k)
        return scores, np.where(rows >= 0, self.items[np.maximum(rows, 0)], -1)


def _merged(a: Retrieved, b: Retrieved, k: int) -> Retrieved:
    """The ``k`` best of two results (an item in both: its score in ``b``)."""
    items = np.concatenate([a[0], b[0]])
    scores = np.concatenate([a[1], b[1]])
    _, first = np.unique(items[::-1], return_index=True)  # b's copy wins
    keep = len(items) - 1 - first
    items, scores = items[keep], scores[keep]
    best = top_k(scores, k)
    return items[best], scores[best]
