"""Collaborative filtering: implicit ALS on the weighted event matrix, and item-item
co-occurrence.

Both read a customer's *current* history at request time (ALS recomputes the customer's
factors from it with one least-squares solve), so a new event changes the next answer
without retraining.
"""

from __future__ import annotations

import warnings
from typing import Self

import numpy as np
import scipy.sparse as sp
import threadpoolctl
from implicit.cpu.als import AlternatingLeastSquares

from vitrine.recommend.base import Reason, Recommender
from vitrine.recommend.data import Dataset, History


def interaction_matrix(data: Dataset, half_life_days: float | None = None) -> sp.csr_matrix:
    """Users x items, summed positive event weights (optionally decayed from the log end)."""
    w = data.ev_weight.astype(np.float64)
    if half_life_days:
        w = w * np.power(0.5, (data.last_day - data.ev_day) / half_life_days)
    keep = w > 0
    m = sp.csr_matrix(
        (w[keep], (data.ev_user[keep], data.ev_item[keep])),
        shape=(data.n_users, data.n_items),
    )
    m.sum_duplicates()
    return m


def history_row(history: History, n_items: int, now: float, half_life: float) -> sp.csr_matrix:
    weights = {i: w for i, w in history.item_weights(now, half_life).items() if w > 0}
    if not weights:
        return sp.csr_matrix((1, n_items), dtype=np.float32)
    cols = np.fromiter(weights, np.int64)
    vals = np.fromiter(weights.values(), np.float64)
    return sp.csr_matrix((vals, (np.zeros(len(cols), np.int64), cols)), shape=(1, n_items))


class ALS(Recommender):
    """implicit's ALS; confidence ``1 + alpha * log1p(weight)``."""

    name = "als"

    def __init__(
        self,
        factors: int = 64,
        regularization: float = 0.05,
        iterations: int = 15,
        alpha: float = 10.0,
        half_life_days: float | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.factors = factors
        self.regularization = regularization
        self.iterations = iterations
        self.alpha = alpha
        self.half_life_days = half_life_days
        self.seed = seed
        self.model: AlternatingLeastSquares | None = None
        self._yty = np.zeros((0, 0))

    def _confidence(self, m: sp.csr_matrix) -> sp.csr_matrix:
        m = m.copy().astype(np.float32)
        m.data = (self.alpha * np.log1p(m.data)).astype(np.float32)
        return m

    def fit(self, data: Dataset) -> Self:
        self.data = data
        return self.fit_matrix(interaction_matrix(data, self.half_life_days))

    def fit_matrix(self, weights: sp.csr_matrix) -> Self:
        """Fit on a users x items matrix of summed event weights."""
        matrix = self._confidence(weights)
        with threadpoolctl.threadpool_limits(1, "blas"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # BLAS is limited right here
            model = AlternatingLeastSquares(
                factors=self.factors,
                regularization=self.regularization,
                iterations=self.iterations,
                random_state=self.seed,
            )
            model.fit(matrix, show_progress=False)
        self.model = model
        factors = model.item_factors.astype(np.float64)
        self._yty = factors.T @ factors
        return self

    def user_vector(self, history: History, now: float) -> np.ndarray | None:
        """The customer's factors from their current history: the exact ALS user step,
        ``(YtY + Yu^T (Cu - I) Yu + reg I) x = Yu^T Cu 1``, one small solve."""
        if self.model is None or not len(history):
            return None
        factors = self.model.item_factors
        weights = {
            i: w
            for i, w in history.item_weights(now, 1e9).items()
            if w > 0 and i < factors.shape[0]
        }
        if not weights:
            return None
        items = np.fromiter(weights, np.int64)
        confidence = self.alpha * np.log1p(np.fromiter(weights.values(), np.float64))
        y = factors[items].astype(np.float64)
        a = self._yty + (y.T * confidence) @ y + self.regularization * np.eye(y.shape[1])
        b = y.T @ (1.0 + confidence)
        return np.linalg.solve(a, b).astype(np.float32)

    def scores(self, history: History, now: float) -> np.ndarray:
        s = self.empty_scores()
        vec = self.user_vector(history, now)
        if vec is not None:
            assert self.model is not None
            n = min(self.dataset.n_catalog, self.model.item_factors.shape[0])
            s[:n] = self.model.item_factors[:n] @ vec
        return s

    def retrievable_items(self, n_catalog: int) -> np.ndarray:
        """The catalog items this model has factors for."""
        assert self.model is not None
        return np.arange(min(n_catalog, self.model.item_factors.shape[0]), dtype=np.int64)

    def item_matrix(self, items: np.ndarray) -> np.ndarray:
        """The factors of ``items`` (a view when they are the first rows in order)."""
        assert self.model is not None
        factors = self.model.item_factors
        if len(items) and items[0] == 0 and items[-1] == len(items) - 1:
            return factors[: len(items)]
        return factors[items]

    def scores_at(self, vec: np.ndarray, items: np.ndarray) -> np.ndarray:
        """``scores`` at ``items`` only (nan: no factors)."""
        assert self.model is not None
        factors = self.model.item_factors
        out = np.full(len(items), np.nan)
        ok = items < factors.shape[0]
        out[ok] = factors[items[ok]] @ vec
        return out

    def item_scores(self, vec: np.ndarray, items: np.ndarray) -> np.ndarray:
        assert self.model is not None
        factors = self.model.item_factors
        ok = items < factors.shape[0]
        out = np.zeros(len(items), np.float32)
        out[ok] = factors[items[ok]] @ vec
        return out

    def explain(self, history: History, item: int, now: float) -> Reason:
        assert self.model is not None
        factors = self.model.item_factors
        base = {"kind": "collaborative", "text": "customers with similar taste bought it"}
        if item >= factors.shape[0] or not len(history):
            return base
        known = history.items[history.items < factors.shape[0]]
        if not len(known):
            return base
        target = factors[item] / (np.linalg.norm(factors[item]) + 1e-9)
        hist = factors[known]
        sims = hist @ target / (np.linalg.norm(hist, axis=1) + 1e-9)
        best = int(known[int(np.argmax(sims))])
        return {
            **base,
            "product_id": self.dataset.items[best],
            "text": f"customers who liked {self.title(best)} also liked it",
        }


def _strongest_per_row(m: sp.csr_matrix, keep: int) -> sp.csr_matrix:
    """``m`` with only the ``keep`` largest values of each row (0: all). A best seller
    co-occurs with much of the catalog; its weakest pairs change no list but would make
    every request that reads its row cost in proportion to the catalog."""
    lengths = np.diff(m.indptr)
    long_rows = np.flatnonzero(lengths > keep) if keep else np.zeros(0, np.int64)
    if not len(long_rows):
        return m
    drop = np.zeros(len(m.data), bool)
    for row in long_rows.tolist():
        a, b = m.indptr[row], m.indptr[row + 1]
        weakest = np.argpartition(-m.data[a:b], keep)[keep:]
        drop[a + weakest] = True
    m = m.copy()
    m.data[drop] = 0
    m.eliminate_zeros()
    return m


class Cooccurrence(Recommender):
    """Item-item co-occurrence in customers' histories, cosine-normalised; each item keeps
    its ``neighbours`` strongest pairs."""

    name = "cooccurrence"

    def __init__(
        self, half_life_days: float = 60.0, min_count: int = 1, neighbours: int = 500
    ) -> None:
        super().__init__()
        self.half_life_days = half_life_days
        self.min_count = min_count
        self.neighbours = neighbours
        self.matrix = sp.csr_matrix((0, 0))

    def fit(self, data: Dataset) -> Self:
        self.data = data
        x = interaction_matrix(data)
        x.data = np.ones_like(x.data)
        co = (x.T @ x).tocsr()
        co.setdiag(0)
        co.eliminate_zeros()
        if self.min_count > 1:
            co.data[co.data < self.min_count] = 0
            co.eliminate_zeros()
        counts = np.asarray(x.sum(axis=0)).ravel()
        norm = np.sqrt(np.maximum(counts, 1.0))
        co = sp.diags(1.0 / norm) @ co @ sp.diags(1.0 / norm)
        self.matrix = _strongest_per_row(co.tocsr(), self.neighbours)
        return self

    def _rows(self, items: list[int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The stored co-occurrence rows of ``items``: (row number, columns, values), read
        straight from the CSR arrays (a sparse row slice costs far more per request)."""
        m = self.matrix
        starts, stops = m.indptr[items], m.indptr[np.asarray(items) + 1]
        lengths = stops - starts
        if not lengths.sum():
            return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0)
        picks = np.concatenate([np.arange(a, b) for a, b in zip(starts, stops, strict=True)])
        rows = np.repeat(np.arange(len(items)), lengths)
        return rows, m.indices[picks], m.data[picks]

    def scores(self, history: History, now: float) -> np.ndarray:
        s = self.empty_scores()
        items, values = self.sparse_scores(history, now)
        s[items] = values
        return s

    def sparse_scores(self, history: History, now: float) -> tuple[np.ndarray, np.ndarray]:
        """(sorted catalog items, their positive scores): ``scores`` where it is finite,
        computed from the history's rows only."""
        weights = {i: w for i, w in history.item_weights(now, self.half_life_days).items() if w > 0}
        weights = {i: w for i, w in weights.items() if i < self.matrix.shape[0]}
        if not weights:
            return np.zeros(0, np.int64), np.zeros(0)
        rows, cols, values = self._rows(list(weights))
        w = np.fromiter(weights.values(), np.float64)
        items, inverse = np.unique(cols, return_inverse=True)
        total = np.bincount(inverse, values * w[rows], len(items))
        keep = (total > 0) & (items < self.dataset.n_catalog)
        return items[keep].astype(np.int64), total[keep]

    def explain(self, history: History, item: int, now: float) -> Reason:
        weights = history.item_weights(now, self.half_life_days)
        best, best_value = None, 0.0
        if item < self.matrix.shape[0]:
            _, cols, values = self._rows([item])  # symmetric: the item's row is its column
            strength = dict(zip(cols.tolist(), values.tolist(), strict=True))
            for h, w in weights.items():
                value = w * strength.get(h, 0.0)
                if value > best_value:
                    best, best_value = h, value
        if best is None:
            return {"kind": "bought_together", "text": "often bought together"}
        return {
            "kind": "bought_together",
            "product_id": self.dataset.items[best],
            "text": f"often bought with {self.title(best)}",
        }
