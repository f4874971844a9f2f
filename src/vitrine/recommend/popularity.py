"""Popularity and trending (time-decayed, overall and per category), and re-buying.

:class:`Popularity` scores items by their event weights, each decayed with a half-life
from the end of the log (``half_life_days=None``: no decay) and optionally only within
the last ``window_days`` (``window_days=28, half_life_days=None`` is the classic
"last 4 weeks" baseline). :class:`Rebuy` recommends what the customer already interacted
with, most recent and strongest first.
"""

from __future__ import annotations

from typing import Self

import numpy as np

from vitrine.recommend.base import Reason, Recommender, top_k
from vitrine.recommend.data import Dataset, History


def decayed_counts(
    data: Dataset,
    now: float,
    half_life_days: float | None,
    window_days: float | None = None,
    purchases_only: bool = False,
) -> np.ndarray:
    """Per item (all items, catalog first): sum of positive event weights, decayed."""
    keep = (data.ev_day < now) & (data.ev_weight > 0)
    if window_days is not None:
        keep &= data.ev_day >= now - window_days
    if purchases_only:
        keep &= data.ev_purchase
    age = now - data.ev_day[keep]
    w = data.ev_weight[keep].astype(np.float64)
    if half_life_days:
        w = w * np.power(0.5, age / half_life_days)
    return np.bincount(data.ev_item[keep], weights=w, minlength=data.n_items)


class Popularity(Recommender):
    """The products bought (or viewed) most, recency-weighted."""

    name = "popularity"

    def __init__(self, half_life_days: float | None = 7.0, window_days: float | None = None):
        super().__init__()
        self.half_life_days = half_life_days
        self.window_days = window_days
        self.popularity = np.zeros(0)
        self.now = 0.0

    def fit(self, data: Dataset) -> Self:
        self.data = data
        self.now = data.last_day + 1.0
        counts = decayed_counts(data, self.now, self.half_life_days, self.window_days)
        self.popularity = counts[: data.n_catalog]
        return self

    def scores(self, history: History, now: float) -> np.ndarray:
        s = self.popularity.astype(np.float64).copy()
        s[s <= 0] = -np.inf
        return s

    def trending(self, k: int, category: str | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The most popular items, overall or in one category (unknown category: none)."""
        data = self.dataset
        valid = data.available.copy()
        if category is not None:
            code = data.categories.index(category) if category in data.categories else -2
            valid &= data.category == code
        s = self.scores(History.empty(), self.now)
        best = top_k(s, k, valid)
        return best, s[best]

    def explain(self, history: History, item: int, now: float) -> Reason:
        data = self.dataset
        code = int(data.category[item]) if item < data.n_catalog else -1
        if code >= 0:
            category = data.categories[code]
            return {"kind": "trending", "category": category, "text": f"trending in {category}"}
        return {"kind": "trending", "text": "trending now"}


class Rebuy(Recommender):
    """The customer's own items again (fashion shoppers re-buy basics in other sizes)."""

    name = "rebuy"

    def __init__(self, half_life_days: float = 30.0) -> None:
        super().__init__()
        self.half_life_days = half_life_days

    def fit(self, data: Dataset) -> Self:
        self.data = data
        return self

    def scores(self, history: History, now: float) -> np.ndarray:
        s = self.empty_scores()
        for item, w in history.item_weights(now, self.half_life_days).items():
            if item < len(s) and w > 0:
                s[item] = w
        return s

    def explain(self, history: History, item: int, now: float) -> Reason:
        bought = bool((history.purchases & (history.items == item)).any())
        verb = "bought" if bought else "looked at"
        return {"kind": "again", "text": f"you {verb} it before"}
