"""Stage 1 of the hybrid: candidates from every source, each described by its features.

For a customer, :class:`CandidateSources` gathers candidates from each algorithm
(re-buy, ALS, co-occurrence, visual profile, visually similar to recent items, trending,
and new arrivals: products nobody interacted with yet that are nearest to the customer's
visual profile) and describes each (customer, candidate) pair with features (the sources'
scores, visual similarity to the profile and to each item of the history, popularity and
its trend, item age, the customer's affinity to the candidate's category and to each of
its facets such as colour or pattern, price band, customer activity). Stage 2, the
ranker, is :class:`vitrine.recommend.hybrid.Hybrid`.
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass
from typing import Any

import numpy as np

from vitrine.recommend.base import top_k
from vitrine.recommend.cf import ALS, Cooccurrence
from vitrine.recommend.data import Dataset, History
from vitrine.recommend.popularity import Popularity, Rebuy, decayed_counts
from vitrine.recommend.visual import VisualProfile, VisualSimilar

log = logging.getLogger(__name__)

DEFAULT_SOURCES: dict[str, int] = {
    "rebuy": 50,
    "als": 100,
    "cooccurrence": 50,
    "visual_profile": 100,
    "similar": 50,
    "popularity": 50,
    "new": 100,
    "new_trending": 50,
    "variants": 50,
    # best sellers / new look-alikes of best sellers in the customer's categories: off by
    # default (with 50 each the mean MAP@12 of three H&M splits fell from 0.0091 to 0.0082;
    # days since / count of the customer's events on the candidate as features, 0.0082 too;
    # on validation months: the customer's share of repeat purchases and of new products,
    # price z-score in the customer's band, popularity of the variant group, 0.0149 ->
    # 0.0148 at 16 windows and 0.0153 -> 0.0144 at 32)
    "category_trending": 0,
    "category_new": 0,
}
BASE_FEATURES = [
    "als",
    "cooccurrence",
    "profile",
    "similar",
    "rebuy",
    "pop_7",
    "pop_30",
    "pop_all",
    "pop_trend",
    "cold",
    "days_since_first",
    "days_since_last",
    "visual_max",
    "visual_mean",
    "category_affinity",
    "category_pop",
    "price_ratio",
    "user_events",
    "user_days_since_last",
    "user_items",
    "in_history",
    "als_rank",
    "profile_rank",
    "similar_rank",
    "visual_pop",
    "item_rebuy_rate",
    "variant",
]


@dataclass
class _ItemStats:
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

    def with_catalog(self, data: Dataset) -> _ItemStats:
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
        return _ItemStats(
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


def _item_stats(data: Dataset) -> _ItemStats:
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
    return _ItemStats(
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


def _variant_groups(data: Dataset) -> np.ndarray:
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
    """Per row of ``emb``: the likeness-weighted popularity of its nearest sold products."""
    out = np.zeros(len(emb))
    if not len(sold):
        return out
    k = min(neighbours, len(sold))
    for start in range(0, len(emb), 2048):
        sims = emb[start : start + 2048] @ sold.T
        top = np.argpartition(-sims, k - 1, axis=1)[:, :k]
        s = np.take_along_axis(sims, top, axis=1)
        out[start : start + 2048] = (np.maximum(s, 0) * pop[top]).sum(axis=1)
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


@dataclass
class UserScores:
    """One history's scores from every source at one moment, shared by candidate
    generation, features and explanations."""

    history: History
    now: float
    scores: dict[str, np.ndarray]
    profile_similarity: np.ndarray
    profile_items: list[int]
    category_share: np.ndarray  # per category


class CandidateSources:
    """The fitted stage-1 algorithms and per-item statistics of one snapshot of the log."""

    def __init__(
        self,
        data: Dataset,
        sources: dict[str, int],
        als_params: dict[str, Any],
        als: ALS | None = None,
    ):
        self.data = data
        self.sources = sources
        self.rebuy = Rebuy().fit(data)
        self.als = als or ALS(**als_params).fit(data)
        self.cooc = Cooccurrence().fit(data)
        self.profile = VisualProfile().fit(data)
        self.similar = VisualSimilar().fit(data)
        self.popularity = Popularity(half_life_days=7.0).fit(data)
        self.stats = _item_stats(data)
        self.cold = np.isnan(self.stats.first_day)
        self.variant_group = _variant_groups(data)
        self.facet_count = data.facet_codes.shape[1]
        self.unseen = np.zeros(data.n_catalog, bool)  # rows added after fitting

    def with_catalog(self, data: Dataset) -> CandidateSources:
        """These sources over a catalog extended after training (see
        ``Recommender.with_catalog``): the visual ones reach the new products, whose
        statistics say nobody bought them yet."""
        new = copy.copy(self)
        new.data = data
        for name in ("rebuy", "als", "cooc", "popularity", "profile", "similar"):
            setattr(new, name, getattr(self, name).with_catalog(data))
        new.stats = self.stats.with_catalog(data)
        new.cold = np.isnan(new.stats.first_day)
        new.variant_group = np.full(data.n_catalog, -1, np.int64)
        new.variant_group[: len(self.variant_group)] = self.variant_group
        new.unseen = np.arange(data.n_catalog) >= self.data.n_catalog
        return new

    def variant_scores(self, history: History, now: float) -> np.ndarray:
        """Other variants (same title: colours, prints) of the customer's items, weighted
        like re-buys: shoppers often come back for a product in another colour."""
        data = self.data
        groups = self.variant_group
        acc = np.zeros(data.n_catalog)
        for item, w in history.item_weights(now, 30.0).items():
            if item < data.n_catalog and w > 0 and groups[item] >= 0:
                acc[groups == groups[item]] += w
                acc[item] -= w  # the item itself is a re-buy, not a variant
        return np.where(acc > 1e-12, acc, -np.inf)

    @property
    def feature_names(self) -> list[str]:
        facets = self.data.facets
        return (
            BASE_FEATURES
            + [f"facet_{name}" for name in facets]
            + [f"facet_pop_{name}" for name in facets]
        )

    def user_scores(self, history: History, now: float) -> UserScores:
        """Every source's scores for this history, computed once per request."""
        centroids, mass, profile_items = self.profile.interests(history, now)
        profile, similarity = self.profile.scores_and_similarity(centroids, mass)
        return UserScores(
            history,
            now,
            {
                "rebuy": self.rebuy.scores(history, now),
                "als": self.als.scores(history, now),
                "cooccurrence": self.cooc.scores(history, now),
                "visual_profile": profile,
                "similar": self.similar.scores(history, now),
                "variants": self.variant_scores(history, now),
            },
            similarity,
            profile_items,
            self.category_share(history, now),
        )

    def category_share(self, history: History, now: float) -> np.ndarray:
        """The customer's recency-weighted share of interest per category."""
        data = self.data
        share = np.zeros(len(data.categories))
        weights = history.item_weights(now, 60.0)
        hist = np.array([i for i, w in weights.items() if w > 0 and i < data.n_catalog], np.int64)
        if len(hist) and len(share):
            codes = data.category[hist]
            hw = np.array([weights[i] for i in hist.tolist()])
            known = codes >= 0
            share = np.bincount(codes[known], hw[known], len(share)) / max(hw.sum(), 1e-12)
        return share

    def candidates(
        self, history: History, now: float, valid: np.ndarray, user: UserScores | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """(candidate items, features matrix) for one history."""
        data, st = self.data, self.stats
        user = user or self.user_scores(history, now)
        scores, profile_similarity = user.scores, user.profile_similarity
        chosen: list[np.ndarray] = []
        for name, n in self.sources.items():
            if n <= 0:
                continue
            if name == "popularity":
                s = self.popularity.scores(history, now)
            elif name == "new":
                s = np.where(self.cold, scores["visual_profile"], -np.inf)
            elif name == "new_trending":
                s = np.where(self.cold, self.stats.visual_pop, -np.inf)
            elif name in ("category_trending", "category_new"):
                # best sellers (new products: their look-alikes sell) of the customer's
                # categories, in proportion to the customer's interest in each
                cat = data.category
                share = np.where(cat >= 0, user.category_share[np.maximum(cat, 0)], 0.0)
                if name == "category_trending":
                    s = np.where(st.pop_7 > 0, share * st.pop_7, -np.inf)
                else:
                    s = np.where(self.cold, share * st.visual_pop, -np.inf)
                s[share <= 0] = -np.inf
            else:
                s = scores[name]
            chosen.append(top_k(s, n, valid))
        items = np.unique(np.concatenate(chosen)) if chosen else np.zeros(0, np.int64)
        if not len(items):
            return items, np.zeros((0, len(self.feature_names)), np.float32)
        f = np.full((len(items), len(self.feature_names)), np.nan, np.float32)

        def col(name: str, values: np.ndarray) -> None:
            f[:, BASE_FEATURES.index(name)] = values

        def finite(s: np.ndarray) -> np.ndarray:
            v = s[items]
            return np.where(np.isfinite(v), v, np.nan)

        # a product added after training has no factors: scored as one nobody bought
        col("als", np.where(self.unseen[items], 0.0, finite(scores["als"])))
        col("cooccurrence", np.nan_to_num(finite(scores["cooccurrence"]), nan=0.0))
        col("profile", finite(profile_similarity))
        col("similar", finite(scores["similar"]))
        col("rebuy", np.nan_to_num(finite(scores["rebuy"]), nan=0.0))
        col("pop_7", st.pop_7[items])
        col("pop_30", st.pop_30[items])
        col("pop_all", np.log1p(st.pop_all[items]))
        col("pop_trend", (st.pop_7[items] + 1.0) / (st.pop_30[items] / 4.0 + 1.0))
        col("cold", self.cold[items].astype(np.float32))
        col("days_since_first", now - st.first_day[items])
        col("days_since_last", now - st.last_day[items])
        col("category_pop", st.category_pop[items])
        col("visual_pop", st.visual_pop[items])
        col("variant", np.nan_to_num(finite(scores["variants"]), nan=0.0))
        col("item_rebuy_rate", st.rebuy_rate[items])
        offset = len(BASE_FEATURES) + self.facet_count
        for j, values in enumerate(st.facet_pop):
            f[:, offset + j] = values[items]
        col("price_ratio", np.full(len(items), np.nan))
        weights = history.item_weights(now, 60.0)
        hist = np.array([i for i, w in weights.items() if w > 0 and i < data.n_catalog], np.int64)
        hw = np.array([weights[i] for i in hist.tolist()])
        col("user_events", np.full(len(items), len(history), np.float32))
        col(
            "user_days_since_last",
            np.full(len(items), now - history.days.max() if len(history) else np.nan),
        )
        col("user_items", np.full(len(items), len(hist), np.float32))
        col("in_history", np.isin(items, history.items).astype(np.float32))
        for name, source in (
            ("als_rank", "als"),
            ("profile_rank", "profile"),
            ("similar_rank", "similar"),
        ):
            v = f[:, BASE_FEATURES.index(source)]
            v = np.where(np.isfinite(v), v, -np.inf)
            col(name, np.argsort(np.argsort(-v, kind="stable")) / len(items))
        if len(hist):
            total = hw.sum()
            with_photo = data.has_embedding[hist]
            if with_photo.any():
                sims = data.embeddings[items] @ data.embeddings[hist[with_photo]].T
                col("visual_max", sims.max(axis=1))
                w = hw[with_photo]
                col("visual_mean", sims @ w / w.sum())
            codes = data.category[hist]
            known = codes >= 0
            if known.any() and len(data.categories):
                share = np.bincount(codes[known], hw[known], len(data.categories)) / total
                cat = data.category[items]
                col("category_affinity", np.where(cat >= 0, share[np.maximum(cat, 0)], 0.0))
            for j in range(self.facet_count):
                codes = data.facet_codes[hist, j]
                known = codes >= 0
                n_values = len(data.facet_values[j])
                share = np.bincount(codes[known], hw[known], n_values) / total
                cand = data.facet_codes[items, j]
                f[:, len(BASE_FEATURES) + j] = np.where(cand >= 0, share[np.maximum(cand, 0)], 0)
            prices = st.price[hist]
            ok = np.isfinite(prices) & (prices > 0)
            if ok.any():
                user_price = float(np.average(prices[ok], weights=hw[ok]))
                col("price_ratio", np.log(st.price[items] / user_price))
        return items, f
