"""The hybrid: candidates from every source, re-ranked by a learned LambdaRank model.

Stage 1 (:mod:`vitrine.recommend.candidates`) gathers candidates for a customer from
each algorithm and describes each (customer, candidate) pair with features. Stage 2,
here, orders them with a LightGBM LambdaRank model, and keeps one position in every
``NEW_EVERY`` for the new arrival that looks most like the customer's items.

Training uses a time split, as serving will: for each of ``windows`` label periods of
``label_days``, ending ``window_step`` days apart at the end of the log, the sources are
fitted on the events before the period and the purchases in it are the relevant items;
the candidates are the products on sale at the period's start. The sources are then
refitted on the whole log for serving.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any, Self

import numpy as np

from vitrine.recommend.als_factors import AlsFactors
from vitrine.recommend.base import Explainer, Reason, Recommender
from vitrine.recommend.candidates import (
    BASE_FEATURES,
    DEFAULT_SOURCES,
    CandidateSources,
    UserScores,
)
from vitrine.recommend.data import LAUNCH_LEAD_DAYS, Dataset, History

log = logging.getLogger(__name__)

# Training windows: 22 label periods of 28 days ending 14 days apart (about ten months
# of the log). On four validation months of the H&M sample (2019-12-08 .. 2020-03-31,
# before the benchmark's test months; bench/bench_hybrid_validation.py) MAP@12 rose with
# the span of log the ranker learns from: 16 windows 7 days apart 0.0146 (mean of ranker
# seeds 0-2), 22 windows 14 days apart 0.0163 (every seed above every 16-window seed);
# 44 windows 7 days apart 0.0162 (seed 0) at twice the training cost.
WINDOWS = 22
WINDOW_STEP = 14.0

# More of these can only make a candidate more (or, for ranks, less) likely: monotone
# constraints keep the ranker from learning noise on a small log (+25 % MAP@12 on the
# mean of three H&M time splits over an unconstrained model).
INCREASING = {
    "variant",
    "rebuy",
    "visual_max",
    "visual_mean",
    "profile",
    "similar",
    "als",
    "cooccurrence",
    "pop_7",
    "pop_30",
    "visual_pop",
    "category_affinity",
    "in_history",
}
DECREASING = {"als_rank", "profile_rank", "similar_rank"}

# One in every NEW_EVERY positions goes to the never-bought product that looks most like
# one of the customer's items, unless the ranker put one at least as alike in that
# stretch: the customer sees the new arrival closest to what they bought. Chosen when the
# ranker still put never-bought candidates far down (66th to 391st on four H&M validation
# months, before training windows saw only the products on sale then): the nearest
# look-alike then picked a bought new product for 4 customers of ~900, the ranker for 1,
# the visual profile for 2 (MAP@12 0.0170 -> 0.0172).
NEW_EVERY = 12


# Customers who bought in a training window whose candidates the ranker learns from, at
# most (a seeded sample of them; 0: all): training time and memory grow with the log no
# further than this. See `recommend_hybrid_customers_per_window` in config.py and the
# measurement in docs/recommendations.md.
CUSTOMERS_PER_WINDOW = 1_000


def _purchases(
    data: Dataset,
    start: float,
    end: float,
    limit: int = 0,
    rng: np.random.Generator | None = None,
) -> dict[int, np.ndarray]:
    """Catalog items each user purchased in [start, end); at most ``limit`` users (a
    sample drawn with ``rng``; 0: every one), in user order."""
    m = data.ev_purchase & (data.ev_day >= start) & (data.ev_day < end)
    m &= data.ev_item < data.n_catalog
    users, items = data.ev_user[m].astype(np.int64), data.ev_item[m].astype(np.int64)
    buyers = np.unique(users)
    if 0 < limit < len(buyers):
        rng = rng or np.random.default_rng(0)
        buyers = np.sort(rng.choice(buyers, limit, replace=False))
        keep = np.isin(users, buyers)
        users, items = users[keep], items[keep]
    order = np.lexsort((items, users))
    users, items = users[order], items[order]
    bounds = np.searchsorted(users, buyers, "left"), np.searchsorted(users, buyers, "right")
    return {
        u: np.unique(items[a:b])
        for u, a, b in zip(buyers.tolist(), bounds[0].tolist(), bounds[1].tolist(), strict=True)
    }


class Hybrid(Recommender):
    """Candidates from every source, ordered by a LambdaRank model trained on past windows."""

    name = "hybrid"

    def __init__(
        self,
        sources: dict[str, int] | None = None,
        label_days: float = 28.0,
        windows: int = WINDOWS,
        window_step: float = WINDOW_STEP,
        als_params: dict[str, Any] | None = None,
        ranker_params: dict[str, Any] | None = None,
        seed: int = 0,
        als_factors: str | None = None,
        new_every: int = NEW_EVERY,
        launch_lead_days: float = LAUNCH_LEAD_DAYS,
        customers_per_window: int = CUSTOMERS_PER_WINDOW,
    ) -> None:
        super().__init__()
        self.sources = dict(sources or DEFAULT_SOURCES)
        self.label_days = label_days
        self.windows = windows
        self.window_step = window_step
        self.als_params = dict(als_params or {})
        self.ranker_params = dict(ranker_params or {})
        self.seed = seed
        self.new_every = new_every  # 0: no reserved position for never-bought products
        self.launch_lead_days = launch_lead_days
        self.customers_per_window = customers_per_window  # 0: every customer who bought
        # Serve ALS from `vitrine spark train-als` factors; the ranker's time windows still
        # fit their own ALS on each window's past (the factors saw the label periods).
        self.als_factors = als_factors
        self.model: Any = None
        self.stage1: CandidateSources | None = None
        self.training_report: dict[str, Any] = {}

    def _training_rows(self, data: Dataset) -> tuple[list[np.ndarray], list[np.ndarray], list[int]]:
        features: list[np.ndarray] = []
        labels: list[np.ndarray] = []
        groups: list[int] = []
        end = data.last_day + 1.0
        # Each window's candidates are the products on sale at its start. Counted as on
        # sale all along, every product launched after a window was a never-bought
        # candidate nobody bought in it, and the ranker learnt that never-bought products
        # do not sell (it put real new arrivals 66th to 391st).
        launched = data.launch_days(self.launch_lead_days)
        for w in range(self.windows):
            stop = end - w * self.window_step
            start = stop - self.label_days
            past = data.before(start)
            if len(past.ev_day) == 0:
                break
            rng = np.random.default_rng([self.seed, w])
            bought = _purchases(data, start, stop, self.customers_per_window, rng)
            if not bought:
                continue
            stage1 = CandidateSources(past, self.sources, self.als_params)
            users = np.fromiter(bought, np.int64, len(bought))
            histories = past.histories_of(users)
            valid = past.available & (launched <= start)
            positives = 0
            for history, items in zip(histories, bought.values(), strict=True):
                items_c, f = stage1.candidates(history, start, valid)
                if not len(items_c):
                    continue
                y = np.isin(items_c, items).astype(np.int32)
                if not y.any():
                    continue  # no positive: the group teaches the ranker nothing
                features.append(f)
                labels.append(y)
                groups.append(len(y))
                positives += int(y.sum())
            log.info("hybrid window %d: %d users, %d positives", w, len(bought), positives)
        return features, labels, groups

    def ranker_params_for(self, feature_names: list[str]) -> dict[str, Any]:
        """The LightGBM LambdaRank parameters (monotone constraints by feature name)."""
        return {
            "objective": "lambdarank",
            "n_estimators": 200,
            "learning_rate": 0.03,
            "num_leaves": 7,
            "min_child_samples": 50,
            "subsample": 0.8,
            "subsample_freq": 1,
            "colsample_bytree": 0.7,
            "reg_lambda": 1.0,
            "monotone_constraints": [
                1 if n in INCREASING else -1 if n in DECREASING else 0 for n in feature_names
            ],
            "monotone_constraints_method": "advanced",
            "lambdarank_truncation_level": 20,
            "random_state": self.seed,
            "n_jobs": 1,
            "verbose": -1,
            **self.ranker_params,
        }

    def fit(self, data: Dataset) -> Self:
        import lightgbm as lgb

        self.data = data
        features, labels, groups = self._training_rows(data)
        als = AlsFactors(self.als_factors).fit(data) if self.als_factors else None
        self.stage1 = CandidateSources(data, self.sources, self.als_params, als)
        self.training_report = {"groups": len(groups), "rows": int(sum(groups))}
        if len(groups) < 5:
            log.warning(
                "hybrid: too few training groups (%d); ranking by ALS + profile", len(groups)
            )
            self.model = None
            return self
        model = lgb.LGBMRanker(**self.ranker_params_for(self.stage1.feature_names))
        model.fit(
            np.vstack(features),
            np.concatenate(labels),
            group=groups,
            feature_name=self.stage1.feature_names,
        )
        self.model = model
        gains = model.booster_.feature_importance("gain")
        self.training_report["importance"] = {
            n: round(float(g), 1)
            for n, g in sorted(
                zip(self.stage1.feature_names, gains, strict=True), key=lambda x: -x[1]
            )
        }
        return self

    def with_catalog(self, data: Dataset) -> Self:
        new = self.rebased(data)
        if self.stage1 is not None:
            new.stage1 = self.stage1.with_catalog(data)
        return new

    def rank(self, items: np.ndarray, f: np.ndarray) -> np.ndarray:
        if self.model is not None:
            return np.asarray(self.model.booster_.predict(f, num_threads=1), np.float64)
        # No model (too little history): ALS and profile, ranks summed.
        names = BASE_FEATURES
        s = np.zeros(len(items))
        for name in ("als", "profile", "rebuy"):
            v = f[:, names.index(name)]
            s += np.where(np.isfinite(v), v, 0.0)
        return s

    def recommend(
        self, history: History, k: int, now: float, valid: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        items, scores, _ = self.recommend_explained(history, k, now, valid)
        return items, scores

    def recommend_explained(
        self, history: History, k: int, now: float, valid: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray, Explainer]:
        assert self.stage1 is not None
        mask = self.dataset.recommendable if valid is None else valid
        user = self.stage1.user_scores(history, now)
        items, f = self.stage1.candidates(history, now, mask, user)
        if not len(items):
            return self.stage1.popularity.recommend_explained(history, k, now, mask)
        s = self.rank(items, f)
        order = self.with_new_products(np.lexsort((items, -s)), items, f, k)
        return items[order], s[order], lambda item: self._explain(user, item)

    def recommend_explained_many(
        self, requests: Sequence[tuple[History, float, np.ndarray | None]], k: int
    ) -> list[tuple[np.ndarray, np.ndarray, Explainer]]:
        """:meth:`recommend_explained` for many (history, now, valid) at once: the same
        lists, the ranker run once over all their candidates (a LightGBM call costs far
        more than its rows)."""
        assert self.stage1 is not None
        prepared = []
        for history, now, valid in requests:
            mask = self.dataset.recommendable if valid is None else valid
            user = self.stage1.user_scores(history, now)
            items, f = self.stage1.candidates(history, now, mask, user)
            prepared.append((history, now, mask, user, items, f))
        filled = [p for p in prepared if len(p[4])]
        scores = (
            self.rank(np.concatenate([p[4] for p in filled]), np.vstack([p[5] for p in filled]))
            if filled
            else np.zeros(0)
        )
        out: list[tuple[np.ndarray, np.ndarray, Explainer]] = []
        at = 0
        for history, now, mask, user, items, f in prepared:
            if not len(items):
                out.append(self.stage1.popularity.recommend_explained(history, k, now, mask))
                continue
            s, at = scores[at : at + len(items)], at + len(items)
            order = self.with_new_products(np.lexsort((items, -s)), items, f, k)
            out.append((items[order], s[order], self._explainer(user)))
        return out

    def _explainer(self, user: UserScores) -> Explainer:
        return lambda item: self._explain(user, item)

    def with_new_products(
        self, order: np.ndarray, items: np.ndarray, f: np.ndarray, k: int | None = None
    ) -> np.ndarray:
        """The first ``k`` of ``order`` (indices into ``items``, best first) with the last
        position of every ``new_every`` holding the never-bought candidate most like an item
        of the customer's history (``visual_max``), unless the ranker put one at least as
        alike in that stretch."""
        assert self.stage1 is not None
        k = len(order) if k is None else k
        every = self.new_every
        cold = self.stage1.cold[items]
        look = f[:, BASE_FEATURES.index("visual_max")]
        eligible = np.flatnonzero(cold & np.isfinite(look))
        if every <= 1 or not len(eligible) or len(order) < every or k < every:
            return order[:k]
        picks = eligible[np.lexsort((items[eligible], -look[eligible]))].tolist()
        used: set[int] = set()
        out: list[int] = []
        for index in order.tolist():
            if len(out) >= k:
                break
            if index in used:
                continue
            if len(out) % every == every - 1:
                pick = next((p for p in picks if p not in used), None)
                stretch = np.asarray(out[-(every - 1) :], np.int64)
                if pick is not None and not (cold[stretch] & (look[stretch] >= look[pick])).any():
                    out.append(pick)
                    used.add(pick)
            if index not in used:  # unless it was the pick itself
                out.append(index)
                used.add(index)
        return np.asarray(out[:k], np.int64)

    def scores(self, history: History, now: float) -> np.ndarray:
        assert self.stage1 is not None
        out = self.empty_scores()
        items, f = self.stage1.candidates(history, now, self.dataset.recommendable)
        if len(items):
            out[items] = self.rank(items, f)
        return out

    def explain(self, history: History, item: int, now: float) -> Reason:
        assert self.stage1 is not None
        return self._explain(self.stage1.user_scores(history, now), item)

    def _explain(self, user: UserScores, item: int) -> Reason:
        """The explanation of the source that speaks most for ``item``."""
        assert self.stage1 is not None
        s1, history, now = self.stage1, user.history, user.now
        if (history.items == item).any():
            return s1.rebuy.explain(history, item, now)
        at = np.array([item], np.int64)
        profile = s1.profile_similarity(user, at)[0]
        if s1.cold[item] and np.isfinite(profile):
            reason = s1.profile.explain_from(user.profile_items, history, item)
            return {**reason, "text": f"New: {reason['text']}"}
        cooc = s1.cooc_scores(user, at)[0]
        if cooc > 0.05:
            return s1.cooc.explain(history, item, now)
        if np.isfinite(profile) and profile > 0.8:
            return s1.profile.explain_from(user.profile_items, history, item)
        als = s1.als_scores(user, at)[0]
        if np.isfinite(als) and als > 0.1:
            return s1.als.explain(history, item, now)
        if np.isfinite(profile):
            return s1.profile.explain_from(user.profile_items, history, item)
        return s1.popularity.explain(history, item, now)
