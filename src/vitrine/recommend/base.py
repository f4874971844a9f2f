"""The one recommender interface, implicit-style: ``fit`` on a :class:`Dataset`, then
``recommend`` for a customer's or an anonymous session's :class:`History`,
``similar_items`` for a product, and ``explain`` why an item was recommended.

Scores are only comparable within one algorithm. Every algorithm recommends catalog items
only (indices below ``Dataset.n_catalog``); business rules are applied by the service.
"""

from __future__ import annotations

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
            np.array([item], np.int32), np.array([now]), np.ones(1, np.float32),
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

    # -- helpers for subclasses ---------------------------------------------------------

    def title(self, item: int) -> str:
        data = self.dataset
        title = data.titles[item] if item < data.n_catalog else None
        return f"{title} ({data.items[item]})" if title else data.items[item]

    def empty_scores(self) -> np.ndarray:
        return np.full(self.dataset.n_catalog, -np.inf, np.float64)
