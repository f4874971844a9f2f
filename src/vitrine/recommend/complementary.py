"""Complementary products ("complete the look"): bought together, across categories.

Two products are complements when the same customers buy both within ``window_days``
and they are of different categories; the strength is the co-purchase count divided by
the square root of both products' purchase counts. A product with no co-purchases yet (a
new one) borrows the complements of the products that look most like it (visual
compatibility), still excluding its own category.
"""

from __future__ import annotations

from typing import Self

import numpy as np
import scipy.sparse as sp

from vitrine.recommend.base import Reason, Recommender, top_k
from vitrine.recommend.data import Dataset, History


class Complementary(Recommender):
    """Products bought together with a product, from other categories."""

    name = "complementary"

    def __init__(self, window_days: float = 14.0, neighbours: int = 20) -> None:
        super().__init__()
        self.window_days = window_days
        self.neighbours = neighbours
        self.matrix = sp.csr_matrix((0, 0))
        self.has_pairs = np.zeros(0, bool)

    def fit(self, data: Dataset) -> Self:
        self.data = data
        buy = data.ev_purchase & (data.ev_weight > 0)
        if not buy.any():  # shops that send no purchases: carts stand in
            buy = data.ev_weight > 0
        u, i, d = data.ev_user[buy], data.ev_item[buy], data.ev_day[buy]
        order = np.lexsort((d, u))
        u, i, d = u[order], i[order], d[order]
        rows: list[np.ndarray] = []
        cols: list[np.ndarray] = []
        # Pairs (a, b) of one customer's purchases within the window, by offset.
        for offset in range(1, 64):
            if offset >= len(u):
                break
            same = (u[offset:] == u[:-offset]) & (d[offset:] - d[:-offset] <= self.window_days)
            if not same.any():
                break
            a, b = i[:-offset][same], i[offset:][same]
            rows += [a, b]
            cols += [b, a]
        n = data.n_items
        if rows:
            r, c = np.concatenate(rows), np.concatenate(cols)
            m = sp.csr_matrix((np.ones(len(r)), (r, c)), shape=(n, n))
            m.sum_duplicates()
        else:
            m = sp.csr_matrix((n, n))
        cat = np.full(n, -1, np.int64)
        cat[: data.n_catalog] = data.category
        coo = m.tocoo()
        cross = (cat[coo.row] != cat[coo.col]) | (cat[coo.row] < 0)
        counts = np.bincount(i, minlength=n).astype(np.float64)
        norm = np.sqrt(np.maximum(counts, 1.0))
        values = coo.data[cross] / (norm[coo.row[cross]] * norm[coo.col[cross]])
        self.matrix = sp.csr_matrix((values, (coo.row[cross], coo.col[cross])), shape=(n, n))
        self.has_pairs = np.diff(self.matrix.indptr) > 0
        return self

    def with_catalog(self, data: Dataset) -> Self:
        """Over a catalog extended after training: products added since have no pairs, so
        they borrow their look-alikes' complements (the co-purchase matrix is kept)."""
        new = self.rebased(data)
        new.has_pairs = np.zeros(data.n_items, bool)
        new.has_pairs[: len(self.has_pairs)] = self.has_pairs
        return new

    def _padded(self, row: np.ndarray) -> np.ndarray:
        """A row of the co-purchase matrix over every item of the (extended) catalog."""
        n = self.dataset.n_items
        return row if len(row) == n else np.concatenate([row, np.zeros(n - len(row))])

    def _row(self, item: int) -> tuple[np.ndarray, int | None]:
        """Complement scores for one item (all items), and the look-alike it borrowed from."""
        data = self.dataset
        if self.has_pairs[item]:
            return self._padded(self.matrix[item].toarray().ravel()), None
        if item >= data.n_catalog or not data.has_embedding[item]:
            return np.zeros(data.n_items), None
        sims = data.embeddings @ data.embeddings[item]
        sims[item] = -np.inf
        valid = self.has_pairs[: data.n_catalog] & data.has_embedding
        neighbours = top_k(sims, self.neighbours, valid)
        if not len(neighbours):
            return np.zeros(data.n_items), None
        w = np.maximum(sims[neighbours], 0.0)
        row = np.asarray(self.matrix[neighbours].T @ w).ravel()
        return self._padded(row), int(neighbours[0])

    def similar_items(
        self, item: int, k: int, now: float, valid: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        data = self.dataset
        row, _ = self._row(item)
        s = row[: data.n_catalog].astype(np.float64)
        s[s <= 0] = -np.inf
        code = data.category[item] if item < data.n_catalog else -1
        if code >= 0:
            s[data.category == code] = -np.inf
        if item < data.n_catalog:
            s[item] = -np.inf
        best = top_k(s, k, valid)
        return best, s[best]

    def scores(self, history: History, now: float) -> np.ndarray:
        data = self.dataset
        s = np.zeros(data.n_catalog)
        weights = history.item_weights(now, self.window_days)
        for item, w in weights.items():
            if w > 0:
                s += w * self._row(item)[0][: data.n_catalog]
        out = self.empty_scores()
        out[s > 0] = s[s > 0]
        return out

    def explain(self, history: History, item: int, now: float) -> Reason:
        data = self.dataset
        weights = history.item_weights(now, self.window_days)
        best, best_value, borrowed = None, 0.0, None
        for h, w in weights.items():
            row, source = self._row(h)
            value = w * row[item]
            if value > best_value:
                best, best_value, borrowed = h, value, source
        if best is None:
            return {"kind": "complements", "text": "completes the look"}
        if borrowed is not None:
            return {
                "kind": "complements",
                "product_id": data.items[best],
                "via": data.items[borrowed],
                "text": f"bought with products that look like {self.title(best)}",
            }
        return {
            "kind": "complements",
            "product_id": data.items[best],
            "text": f"often bought with {self.title(best)}",
        }

    def explain_pair(self, item: int, complement: int) -> Reason:
        history = History(
            np.array([item], np.int32), np.zeros(1), np.ones(1, np.float32), np.zeros(1, bool)
        )
        return self.explain(history, complement, 0.0)
