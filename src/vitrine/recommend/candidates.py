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
from vitrine.recommend.item_stats import item_stats, variant_groups
from vitrine.recommend.popularity import Popularity, Rebuy
from vitrine.recommend.retrieval import ItemRetrieval, Retrieved
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
class UserScores:
    """One history's signals at one moment, computed once per request from the items the
    history touches (never over the whole catalog) and shared by candidate generation,
    features and explanations."""

    history: History
    now: float
    centroids: np.ndarray  # the visual interests (unit rows) and their shares
    mass: np.ndarray
    profile_items: list[int]
    als_vector: np.ndarray | None
    rebuy: dict[int, float]  # catalog item -> recency-weighted interest
    cooc_items: np.ndarray  # sorted catalog items with a positive co-occurrence score
    cooc_scores: np.ndarray
    recent: np.ndarray  # the recent items "similar" looks like, and their factors
    recent_factor: np.ndarray
    category_share: np.ndarray  # per category


def photo_retrieval(data: Dataset) -> ItemRetrieval:
    """The retrieval over the catalog's photo embeddings, built once per catalog (the
    training windows' datasets share their catalog's, see ``Dataset.before``)."""
    cached = data.__dict__.get("photo_retrieval")
    if cached is None:
        rows, embeddings = data.photos
        cached = data.__dict__["photo_retrieval"] = ItemRetrieval(rows, embeddings)
    return cached


class CandidateSources:
    """The fitted stage-1 algorithms and per-item statistics of one snapshot of the log.

    Every source answers through top-k retrieval (:class:`ItemRetrieval`) or from the
    items the history touches, and features are computed for the candidates only, so a
    request's cost does not grow linearly with the catalog once it is large.
    """

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
        self.stats = item_stats(data)
        self.cold = np.isnan(self.stats.first_day)
        self.variant_group = variant_groups(data)
        self.facet_count = data.facet_codes.shape[1]
        self.unseen = np.zeros(data.n_catalog, bool)  # rows added after fitting
        self.photos = photo_retrieval(data)
        self.als_retrieval = self._als_retrieval()
        self.popular_order = _ranking(self.popularity.popularity)
        cold = np.flatnonzero(self.cold & data.has_embedding)
        self.cold_photos = ItemRetrieval(cold, data.embeddings[cold])  # never bought
        self._catalog_changed()

    def _als_retrieval(self) -> ItemRetrieval:
        items = self.als.retrievable_items(self.data.n_catalog)
        return ItemRetrieval(items, self.als.item_matrix(items))

    def _catalog_changed(self) -> None:
        """What depends on which products are new: their ranking by look-alike sales and
        the variants' member lists."""
        st = self.stats
        self.new_trending_order = _ranking(np.where(self.cold, st.visual_pop, 0.0))
        grouped = np.flatnonzero(self.variant_group >= 0)
        order = grouped[np.argsort(self.variant_group[grouped], kind="stable")]
        self.variant_members = order
        self.variant_starts = np.searchsorted(
            self.variant_group[order], np.arange(int(self.variant_group.max(initial=-1)) + 2)
        )

    def with_catalog(self, data: Dataset) -> CandidateSources:
        """These sources over a catalog extended after training (see
        ``Recommender.with_catalog``): the visual ones reach the new products, whose
        statistics say nobody bought them yet."""
        new = copy.copy(self)
        new.data = data
        # re-buy, ALS and co-occurrence read only the snapshot's rows (a new product has
        # no events): they stay as fitted, and their scores are looked up per item
        for name in ("popularity", "profile", "similar"):
            setattr(new, name, getattr(self, name).with_catalog(data))
        new.stats = self.stats.with_catalog(data)
        new.cold = np.isnan(new.stats.first_day)
        new.variant_group = np.full(data.n_catalog, -1, np.int64)
        new.variant_group[: len(self.variant_group)] = self.variant_group
        new.unseen = np.arange(data.n_catalog) >= self.data.n_catalog
        changed = self._changed_photos(data)
        if len(changed):
            present = changed[data.has_embedding[changed]]
            gone = changed[~data.has_embedding[changed]]
            new.photos = self.photos.with_rows(present, data.embeddings[present], gone)
            cold = present[new.cold[present]]
            new.cold_photos = self.cold_photos.with_rows(
                cold, data.embeddings[cold], np.setdiff1d(changed, cold)
            )
        data.__dict__["photo_retrieval"] = new.photos
        new._catalog_changed()
        return new

    def _changed_photos(self, data: Dataset) -> np.ndarray:
        """The rows of ``data`` whose photo came, changed or went since the snapshot."""
        old, n0 = self.data, self.data.n_catalog
        had = np.zeros(data.n_catalog, bool)
        had[:n0] = old.has_embedding
        before = np.zeros_like(data.embeddings)
        before[:n0] = old.embeddings
        return np.flatnonzero((had != data.has_embedding) | (before != data.embeddings).any(1))

    @property
    def feature_names(self) -> list[str]:
        facets = self.data.facets
        return (
            BASE_FEATURES
            + [f"facet_{name}" for name in facets]
            + [f"facet_pop_{name}" for name in facets]
        )

    # -- one history's signals ------------------------------------------------------------

    def user_scores(self, history: History, now: float) -> UserScores:
        """Every source's signals for this history, computed once per request."""
        n = self.data.n_catalog
        centroids, mass, profile_items = self.profile.interests(history, now)
        cooc_items, cooc_scores = self.cooc.sparse_scores(history, now)
        recent, factor = self.similar.recent_items(history, now)
        return UserScores(
            history,
            now,
            centroids,
            mass,
            profile_items,
            self.als.user_vector(history, now),
            {i: w for i, w in history.item_weights(now, 30.0).items() if w > 0 and i < n},
            cooc_items,
            cooc_scores,
            recent,
            factor,
            self.category_share(history, now),
        )

    def profile_similarity(self, user: UserScores, items: np.ndarray) -> np.ndarray:
        """Per item: its best cosine to one of the customer's interests (nan: no photo)."""
        out = np.full(len(items), np.nan)
        has = self.data.has_embedding[items]
        if len(user.centroids) and has.any():
            sims = self.data.embeddings[items[has]] @ user.centroids.T.astype(np.float32)
            out[has] = sims.max(axis=1)
        return out

    def similar_scores(self, user: UserScores, items: np.ndarray) -> np.ndarray:
        """Per item: its likeness to the customer's recent items, the more recent the
        stronger (nan: no photo, or no recent item with one)."""
        out = np.full(len(items), np.nan)
        has = self.data.has_embedding[items]
        if len(user.recent) and has.any():
            emb = self.data.embeddings
            sims = emb[items[has]] @ emb[user.recent].T
            out[has] = (sims * user.recent_factor[None, :]).max(axis=1)
        return out

    def als_scores(self, user: UserScores, items: np.ndarray) -> np.ndarray:
        """Per item: the ALS score (nan: no factors for the customer or the item)."""
        out = np.full(len(items), np.nan)
        if user.als_vector is not None:
            ok = ~self.unseen[items]
            out[ok] = self.als.scores_at(user.als_vector, items[ok])
        return out

    def cooc_scores(self, user: UserScores, items: np.ndarray) -> np.ndarray:
        """Per item: the co-occurrence score with the history (0: none)."""
        return _lookup(user.cooc_items, user.cooc_scores, items, 0.0)

    def rebuy_scores(self, user: UserScores, items: np.ndarray) -> np.ndarray:
        return np.array([user.rebuy.get(i, 0.0) for i in items.tolist()])

    def variant_scores(self, user: UserScores, items: np.ndarray) -> np.ndarray:
        """Per item: the interest in the other variants (same title: colours, prints) of
        it the customer has, weighted like re-buys (0: none)."""
        per_group: dict[int, float] = {}
        for item, w in user.rebuy.items():
            group = int(self.variant_group[item])
            if group >= 0:
                per_group[group] = per_group.get(group, 0.0) + w
        if not per_group:
            return np.zeros(len(items))
        groups = self.variant_group[items]
        out = np.array([per_group.get(g, 0.0) for g in groups.tolist()])
        out -= np.where(groups >= 0, self.rebuy_scores(user, items), 0.0)  # a re-buy
        return np.where(out > 1e-12, out, 0.0)

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

    # -- candidates --------------------------------------------------------------------

    def source_candidates(
        self, name: str, n: int, user: UserScores, valid: np.ndarray
    ) -> np.ndarray:
        """The ``n`` best items of one source for this customer, where ``valid``."""
        if name == "rebuy" or name == "cooccurrence" or name == "variants":
            if name == "rebuy":
                items = np.fromiter(user.rebuy, np.int64, len(user.rebuy))
                scores = np.fromiter(user.rebuy.values(), np.float64, len(user.rebuy))
            elif name == "cooccurrence":
                items, scores = user.cooc_items, user.cooc_scores
            else:
                items = self._variants_of(user)
                scores = self.variant_scores(user, items)
            keep = valid[items] & (scores > 0)
            items, scores = items[keep], scores[keep]
            return items[top_k(scores, n)]
        if name == "als":
            if user.als_vector is None:
                return np.zeros(0, np.int64)
            return self.als_retrieval.search(user.als_vector, n, valid)[0][0]
        if name == "visual_profile":
            return _interleaved(self.photos.search(user.centroids, n, valid), user.mass, n)
        if name == "new":
            return _interleaved(self.cold_photos.search(user.centroids, n, valid), user.mass, n)
        if name == "similar":
            if not len(user.recent):
                return np.zeros(0, np.int64)
            found = self.photos.search(self.data.embeddings[user.recent], n, valid)
            items = np.concatenate([f[0] for f in found])
            scores = np.concatenate(
                [f[1] * factor for f, factor in zip(found, user.recent_factor, strict=True)]
            )
            return _best_per_item(items, scores, n)
        if name == "popularity":
            return _first_valid(self.popular_order, n, valid)
        if name == "new_trending":
            return _first_valid(self.new_trending_order, n, valid)
        if name in ("category_trending", "category_new"):
            return top_k(self._category_scores(name, user), n, valid)
        raise ValueError(f"unknown candidate source {name!r}")

    def _variants_of(self, user: UserScores) -> np.ndarray:
        groups = {int(self.variant_group[i]) for i in user.rebuy} - {-1}
        if not groups:
            return np.zeros(0, np.int64)
        starts = self.variant_starts
        return np.concatenate(
            [self.variant_members[starts[g] : starts[g + 1]] for g in sorted(groups)]
        )

    def _category_scores(self, name: str, user: UserScores) -> np.ndarray:
        """Best sellers (new products: their look-alikes sell) of the customer's
        categories, in proportion to the customer's interest in each (whole catalog)."""
        cat, st = self.data.category, self.stats
        share = np.where(cat >= 0, user.category_share[np.maximum(cat, 0)], 0.0)
        if name == "category_trending":
            s = np.where(st.pop_7 > 0, share * st.pop_7, -np.inf)
        else:
            s = np.where(self.cold, share * st.visual_pop, -np.inf)
        s[share <= 0] = -np.inf
        return s

    def candidates(
        self, history: History, now: float, valid: np.ndarray, user: UserScores | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """(candidate items, features matrix) for one history."""
        data, st = self.data, self.stats
        user = user or self.user_scores(history, now)
        chosen = [
            self.source_candidates(name, n, user, valid)
            for name, n in self.sources.items()
            if n > 0
        ]
        items = np.unique(np.concatenate(chosen)) if chosen else np.zeros(0, np.int64)
        if not len(items):
            return items, np.zeros((0, len(self.feature_names)), np.float32)
        f = np.full((len(items), len(self.feature_names)), np.nan, np.float32)

        def col(name: str, values: np.ndarray) -> None:
            f[:, BASE_FEATURES.index(name)] = values

        # a product added after training has no factors: scored as one nobody bought
        col("als", np.where(self.unseen[items], 0.0, self.als_scores(user, items)))
        col("cooccurrence", self.cooc_scores(user, items))
        col("profile", self.profile_similarity(user, items))
        col("similar", self.similar_scores(user, items))
        col("rebuy", self.rebuy_scores(user, items))
        col("pop_7", st.pop_7[items])
        col("pop_30", st.pop_30[items])
        col("pop_all", np.log1p(st.pop_all[items]))
        col("pop_trend", (st.pop_7[items] + 1.0) / (st.pop_30[items] / 4.0 + 1.0))
        col("cold", self.cold[items].astype(np.float32))
        col("days_since_first", now - st.first_day[items])
        col("days_since_last", now - st.last_day[items])
        col("category_pop", st.category_pop[items])
        col("visual_pop", st.visual_pop[items])
        col("variant", self.variant_scores(user, items))
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


def _lookup(keys: np.ndarray, values: np.ndarray, items: np.ndarray, missing: float) -> np.ndarray:
    """``values`` at ``items`` by the sorted ``keys`` (``missing`` where absent)."""
    if not len(keys):
        return np.full(len(items), missing)
    at = np.minimum(np.searchsorted(keys, items), len(keys) - 1)
    return np.where(keys[at] == items, values[at], missing)


def _ranking(scores: np.ndarray) -> np.ndarray:
    """The items with a positive score, best first (ties: lower index first)."""
    items = np.flatnonzero(scores > 0)
    return items[np.lexsort((items, -scores[items]))]


def _first_valid(order: np.ndarray, n: int, valid: np.ndarray) -> np.ndarray:
    """The first ``n`` items of ``order`` where ``valid``, reading it in growing chunks."""
    out: list[np.ndarray] = []
    found, start, chunk = 0, 0, max(4 * n, 256)
    while found < n and start < len(order):
        part = order[start : start + chunk]
        part = part[valid[part]]
        out.append(part)
        found += len(part)
        start, chunk = start + chunk, chunk * 4
    return np.concatenate(out)[:n] if out else np.zeros(0, np.int64)


def _best_per_item(items: np.ndarray, scores: np.ndarray, n: int) -> np.ndarray:
    """The ``n`` best items by their best score among repeated entries."""
    if not len(items):
        return np.zeros(0, np.int64)
    order = np.lexsort((-scores, items))
    items, scores = items[order], scores[order]
    first = np.r_[True, items[1:] != items[:-1]]
    items, scores = items[first], scores[first]
    return items[top_k(scores, n)]


def _interleaved(found: list[Retrieved], mass: np.ndarray, n: int) -> np.ndarray:
    """Interests' results interleaved in proportion to their weight: the item at rank
    ``r`` of an interest of share ``w`` scores ``w / (r + 1)``."""
    if not found:
        return np.zeros(0, np.int64)
    items = np.concatenate([f[0] for f in found])
    scores = np.concatenate(
        [w / (np.arange(len(f[0])) + 1.0) for f, w in zip(found, mass, strict=True)]
    )
    return _best_per_item(items, scores, n)
