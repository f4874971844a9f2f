"""Per-item statistics of one snapshot of the log, as the hybrid's features read them.

:func:`item_stats` computes, per catalog item: decayed popularity (7 days, 30 days, all
time), first and last event day, price, its category's and facets' shares of recent
popularity, the likeness-weighted popularity of the recent best sellers it looks like
(``visual_pop``: what a new product has instead of sales), and its re-buy rate.
:func:`variant_groups` groups a product's variants (same title).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from vitrine.recommend.data import Dataset
from vitrine.recommend.popularity import decayed_counts
from vitrine.recommend.retrieval import ItemRetrieval


@dataclass
class ItemStats:
    pop_7: np.ndarray
    pop_30: np.ndarray
    pop_all: np.ndarray
    first_day: np.ndarray
    last_day: np.ndarray
    price: np.ndarray
    category_pop: np.ndarray
    visual_pop: np.ndarray
    rebuy_rate: np.ndarray
    facet_pop: list[np.ndarray]
    now: float
    category_share: np.ndarray  # per category: its share of recent popularity
    facet_share: list[np.ndarray]  # per facet, per value: its share of recent popularity
    sold_embeddings: np.ndarray  # the recently sold products' embeddings and popularity
    sold_pop: np.ndarray

    def with_catalog(self, data: Dataset) -> ItemStats:
        """The statistics over a catalog extended after training: the rows the log never
        saw (new products) have no popularity; a new product's likeness to recent best
        sellers comes from its photo, its category's and facets' shares from its
        attributes."""
        n0, n = len(self.pop_7), data.n_catalog
        new = np.arange(n0, n)

        def grown(values: np.ndarray, fill: float) -> np.ndarray:
            return np.concatenate([values, np.full(n - n0, fill)])

        price = grown(self.price, np.nan)
        price[new] = data.price[new]
        visual_pop = grown(self.visual_pop, 0.0)
        rows = new[data.has_embedding[new]]
        visual_pop[rows] = _look_alike_popularity(
            data.embeddings[rows], self.sold_embeddings, self.sold_pop
        )
        return ItemStats(
            grown(self.pop_7, 0.0),
            grown(self.pop_30, 0.0),
            grown(self.pop_all, 0.0),
            grown(self.first_day, np.nan),
            grown(self.last_day, np.nan),
            price,
            _shares(self.category_share, data.category, self.category_pop, new),
            visual_pop,
            grown(self.rebuy_rate, _rebuy_rate_of(0, 0)),
            [
                _shares(shares, data.facet_codes[:, j], values, new)
                for j, (shares, values) in enumerate(
                    zip(self.facet_share, self.facet_pop, strict=True)
                )
            ],
            self.now,
            self.category_share,
            self.facet_share,
            self.sold_embeddings,
            self.sold_pop,
        )


def _shares(
    per_value: np.ndarray, codes: np.ndarray, known: np.ndarray, new: np.ndarray
) -> np.ndarray:
    """Per item of an extended catalog: ``known`` for the snapshot's rows, the share of
    its value (``codes``, -1: none) for the ``new`` rows."""
    out = np.concatenate([known, np.zeros(len(codes) - len(known))])
    code = codes[new]
    out[new] = np.where(code >= 0, per_value[np.maximum(code, 0)] if len(per_value) else 0, 0)
    return out


def item_stats(data: Dataset) -> ItemStats:
    now = data.last_day + 1.0
    n = data.n_catalog
    pop_7 = decayed_counts(data, now, 7.0)[:n]
    pop_30 = decayed_counts(data, now, None, 30.0)[:n]
    pop_all = decayed_counts(data, now, None)[:n]
    first = data.first_event_days()
    last = np.full(data.n_items, np.nan)
    last[data.ev_item] = data.ev_day  # events are in time order: the last write is the latest
    price = data.price.astype(np.float64).copy()
    has_price = np.isfinite(data.ev_price)
    if has_price.any():
        sums = np.bincount(data.ev_item[has_price], data.ev_price[has_price], data.n_items)
        counts = np.bincount(data.ev_item[has_price], minlength=data.n_items)
        mean = np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)[:n]
        price = np.where(np.isfinite(price), price, mean)
    cat_pop = np.zeros(n)
    share = np.zeros(len(data.categories))
    if len(data.categories):
        known = data.category >= 0
        per_cat = np.bincount(data.category[known], pop_30[known], len(data.categories))
        share = per_cat / max(per_cat.sum(), 1e-9)
        cat_pop[known] = share[data.category[known]]
    facet_share, facet_pop = _facet_popularity(data, pop_30)
    sold = np.flatnonzero((pop_7 > 0) & data.has_embedding)
    return ItemStats(
        pop_7,
        pop_30,
        pop_all,
        first[:n],
        last[:n],
        price,
        cat_pop,
        _visual_popularity(data, pop_7),
        _rebuy_rate(data),
        facet_pop,
        now,
        share,
        facet_share,
        data.embeddings[sold],
        pop_7[sold],
    )


def variant_groups(data: Dataset) -> np.ndarray:
    """Per catalog item, a code shared by the variants of one product (same title)."""
    codes: dict[str, int] = {}
    out = np.full(data.n_catalog, -1, np.int64)
    for i, title in enumerate(data.titles):
        key = " ".join(title.lower().split()) if title else ""
        if key:
            out[i] = codes.setdefault(key, len(codes))
    counts = np.bincount(out[out >= 0], minlength=max(len(codes), 1))  # no titles: empty
    out[(out >= 0) & (counts[np.maximum(out, 0)] < 2)] = -1  # no other variant
    return out


def _visual_popularity(data: Dataset, pop: np.ndarray) -> np.ndarray:
    """Per item: the recent popularity of the products that look most like it, weighted by
    likeness. A new product that looks like this week's best sellers will likely sell."""
    sold = np.flatnonzero((pop > 0) & data.has_embedding)
    out = _look_alike_popularity(data.embeddings, data.embeddings[sold], pop[sold])
    out[~data.has_embedding] = 0.0
    return out


def _look_alike_popularity(
    emb: np.ndarray, sold: np.ndarray, pop: np.ndarray, neighbours: int = 20
) -> np.ndarray:
    """Per row of ``emb``: the likeness-weighted popularity of its nearest sold products
    (found by :class:`ItemRetrieval`: exactly, or through an IVF index when many sold)."""
    out = np.zeros(len(emb))
    if not len(sold) or not len(emb):
        return out
    nearest = ItemRetrieval(np.arange(len(sold)), sold)
    for start in range(0, len(emb), 65_536):
        s, top = nearest.nearest_all(emb[start : start + 65_536], neighbours)
        found = top >= 0
        weights = np.where(found, np.maximum(s, 0), 0.0) * pop[np.maximum(top, 0)]
        out[start : start + 65_536] = weights.sum(axis=1)
    return out


def _rebuy_rate(data: Dataset) -> np.ndarray:
    """Per item: the share of its buyers who bought it again (basics are re-bought)."""
    n = data.n_catalog
    keep = data.ev_purchase & (data.ev_item < n)
    if not keep.any():
        return np.zeros(n)
    pairs = data.ev_user[keep].astype(np.int64) * n + data.ev_item[keep]
    unique, counts = np.unique(pairs, return_counts=True)
    items = unique % n
    buyers = np.bincount(items, minlength=n)
    repeat = np.bincount(items, weights=(counts > 1).astype(float), minlength=n)
    return _rebuy_rate_of(repeat, buyers)


def _rebuy_rate_of(repeat: Any, buyers: Any) -> Any:
    return (repeat + 0.1) / (buyers + 1.0)  # smoothed: an item nobody bought has 0.1


def _facet_popularity(data: Dataset, pop: np.ndarray) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Per facet: each value's share of recent popularity, and each item's (its value's)."""
    shares, out = [], []
    total = max(float(pop.sum()), 1e-9)
    for j in range(data.facet_codes.shape[1]):
        codes = data.facet_codes[:, j]
        known = codes >= 0
        per_value = np.bincount(codes[known], pop[known], len(data.facet_values[j])) / total
        values = np.zeros(data.n_catalog)
        values[known] = per_value[codes[known]]
        shares.append(per_value)
        out.append(values)
    return shares, out
