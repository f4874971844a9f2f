"""The one recommender interface, implicit-style: ``fit`` on a :class:`Dataset`, then
``recommend`` for a customer's or an anonymous session's :class:`History`,
``similar_items`` for a product, and ``explain`` why an item was recommended.

Scores are only comparable within one algorithm. Every algorithm recommends catalog items
only (indices below ``Dataset.n_catalog``); business rules are applied by the service.
"""

from __future__ import annotations

import copy
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any, Self

import numpy as np

from vitrine.recommend.data import Dataset, History

Reason = dict[str, Any]
Explainer = Callable[[int], Reason]


def top_k(scores: np.ndarray, k: int, valid: np.ndarray | None = None) -> np.ndarray:
    """Indices of the ``k`` largest finite scores (where ``valid``), best first."""
    mask = np.isfinite(scores)
    if valid is not None:
        mask &= valid
    rows = np.flatnonzero(mask)
    if len(rows) == 0 or k <= 0:
        return np.zeros(0, np.int64)
    part = rows[np.argpartition(-scores[rows], k - 1)[:k]] if len(rows) > k else rows
    return part[np.lexsort((part, -scores[part]))]


class Recommender(ABC):
    """Fit once on the log and catalog; answer for any history, including new events."""

    name: str = "recommender"

    def __init__(self) -> None:
        self.data: Dataset | None = None

    @property
    def dataset(self) -> Dataset:
        if self.data is None:
            raise RuntimeError(f"{self.name}: fit() first")
        return self.data

    @abstractmethod
    def fit(self, data: Dataset) -> Self: ...

    @abstractmethod
    def scores(self, history: History, now: float) -> np.ndarray:
        """A score for every catalog item (``-inf``: not a candidate)."""

    def recommend(
        self, history: History, k: int, now: float, valid: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """The best ``k`` catalog items for a history, as (item indices, scores)."""
        s = self.scores(history, now)
        best = top_k(s, k, valid)
        return best, s[best]

    def recommend_explained(
        self, history: History, k: int, now: float, valid: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray, Explainer]:
        """:meth:`recommend`, and a function explaining any of its items. Algorithms whose
        explanations need the scores of the whole history compute them once here."""
        items, scores = self.recommend(history, k, now, valid)
        return items, scores, lambda item: self.explain(history, item, now)

    def similar_items(
        self, item: int, k: int, now: float, valid: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Items for someone looking at ``item`` (by default: a one-item session)."""
        history = History(
            np.array([item], np.int32),
            np.array([now]),
            np.ones(1, np.float32),
            np.zeros(1, bool),
        )
        s = self.scores(history, now)
        if item < len(s):
            s[item] = -np.inf
        best = top_k(s, k, valid)
        return best, s[best]

    @abstractmethod
    def explain(self, history: History, item: int, now: float) -> Reason:
        """Why ``item`` suits this history: ``{"kind": ..., "text": ..., ...}``."""

    def with_catalog(self, data: Dataset) -> Recommender:
        """This fitted algorithm answering over ``data``: its training catalog extended by
        the products added, changed or deleted since (``recommend/live_catalog.py``). By
        default the products it never saw are not its candidates (:class:`SnapshotView`);
        algorithms that only read the catalog's arrays answer for them too."""
        return SnapshotView(self, data)

    def rebased(self, data: Dataset) -> Self:
        """A shallow copy that reads ``data`` (for algorithms whose only state is it)."""
        new = copy.copy(self)
        new.data = data
        return new

    # -- helpers for subclasses ---------------------------------------------------------

    def title(self, item: int) -> str:
        data = self.dataset
        title = data.titles[item] if item < data.n_catalog else None
        return f"{title} ({data.items[item]})" if title else data.items[item]

    def empty_scores(self) -> np.ndarray:
        return np.full(self.dataset.n_catalog, -np.inf, np.float64)


class SnapshotView(Recommender):
    """An algorithm fitted on the training snapshot, answering over an extended catalog.

    Item indices of the snapshot are kept in the extended catalog (new products come
    after them), so only the edges change: a history loses the items the algorithm never
    saw, scores are padded with ``-inf`` (not a candidate) for the new rows, and masks
    are cut to the snapshot's catalog.
    """

    def __init__(self, inner: Recommender, data: Dataset) -> None:
        super().__init__()
        self.inner = inner
        self.data = data
        self.name = inner.name
        self.known_catalog = inner.dataset.n_catalog
        self.known_items = inner.dataset.n_items

    def fit(self, data: Dataset) -> Self:
        raise RuntimeError(f"{self.name}: a view of a fitted model is not fitted again")

    def _known(self, history: History) -> History:
        keep = history.items < self.known_items
        if keep.all():
            return history
        return History(
            history.items[keep],
            history.days[keep],
            history.weights[keep],
            history.purchases[keep],
            history.user,
        )

    def _mask(self, valid: np.ndarray | None) -> np.ndarray | None:
        return None if valid is None else valid[: self.known_catalog]

    def scores(self, history: History, now: float) -> np.ndarray:
        out = self.empty_scores()
        out[: self.known_catalog] = self.inner.scores(self._known(history), now)
        return out

    def recommend(
        self, history: History, k: int, now: float, valid: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        return self.inner.recommend(self._known(history), k, now, self._mask(valid))

    def recommend_explained(
        self, history: History, k: int, now: float, valid: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray, Explainer]:
        return self.inner.recommend_explained(self._known(history), k, now, self._mask(valid))

    def similar_items(
        self, item: int, k: int, now: float, valid: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        if item >= self.known_items:
            return np.zeros(0, np.int64), np.zeros(0)
        return self.inner.similar_items(item, k, now, self._mask(valid))

    def explain(self, history: History, item: int, now: float) -> Reason:
        if item >= self.known_catalog:
            return {"kind": "new", "text": "new in the catalog"}
        return self.inner.explain(self._known(history), item, now)
