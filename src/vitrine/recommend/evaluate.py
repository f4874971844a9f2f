"""Offline evaluation with a time split: train before a date, test on purchases after it.

For every test customer (one with a purchase on or after the split) each algorithm,
fitted on the events before the split, recommends ``k`` products; a list shorter than
``k`` is filled up from the last-4-weeks popularity, as the serving fallback chain
does. Relevant items are everything the customer purchased in the test period,
including products missing from the catalog (which no algorithm can recommend): the
H&M competition's protocol. The catalog is the catalog as of the split
(``Dataset.launch_days``): a product launched after it can be neither recommended nor
hit, as it could not have been in a shop on that day.

Metrics: MAP@k (the competition metric: precision at each hit, over ``min(|bought|,
k)``), recall@k, NDCG@k, hit rate (customers with at least one hit), catalog coverage
(share of available catalog products recommended to anyone), cold-item recall (the
share of test purchases of products nobody interacted with before the split that were
recommended) and the cold share of all recommendations.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from vitrine.recommend.base import Recommender
from vitrine.recommend.cf import ALS, Cooccurrence
from vitrine.recommend.complementary import Complementary
from vitrine.recommend.data import LAUNCH_LEAD_DAYS, Dataset, History
from vitrine.recommend.hybrid import Hybrid
from vitrine.recommend.popularity import Popularity, Rebuy
from vitrine.recommend.visual import VisualProfile, VisualSimilar

BASELINE = "popularity_4w"


def default_algorithms() -> dict[str, Callable[[], Recommender]]:
    """Every algorithm under evaluation; the baseline first."""
    return {
        BASELINE: lambda: Popularity(half_life_days=None, window_days=28.0),
        "popularity_all": lambda: Popularity(half_life_days=None),
        "trending": lambda: Popularity(half_life_days=7.0),
        "rebuy": Rebuy,
        "als": ALS,
        "cooccurrence": Cooccurrence,
        "similar": VisualSimilar,
        "visual_profile": VisualProfile,
        "complementary": Complementary,
        "hybrid": Hybrid,
    }


def average_precision(recommended: Sequence[int], relevant: set[int], k: int) -> float:
    if not relevant:
        return 0.0
    hits, total = 0, 0.0
    for rank, item in enumerate(recommended[:k], start=1):
        if item in relevant:
            hits += 1
            total += hits / rank
    return total / min(len(relevant), k)


def ndcg(recommended: Sequence[int], relevant: set[int], k: int) -> float:
    dcg = sum(
        1.0 / math.log2(rank + 1)
        for rank, item in enumerate(recommended[:k], start=1)
        if item in relevant
    )
    ideal = sum(1.0 / math.log2(r + 1) for r in range(1, min(len(relevant), k) + 1))
    return dcg / ideal if ideal else 0.0


@dataclass
class TimeSplit:
    """The log before a split day (to train on) and the purchases after it (to find)."""

    train: Dataset
    test: dict[int, set[int]]  # user -> items purchased in the test period (all items)
    cold: np.ndarray  # per item: no event before the split
    split_day: float
    catalog: np.ndarray  # per catalog item: on sale at the split and available


def make_split(
    data: Dataset,
    split_day: float,
    test_days: float | None = None,
    lead_days: float | None = LAUNCH_LEAD_DAYS,
) -> TimeSplit:
    """``lead_days`` None: every product of the catalog now, launched or not at the split."""
    train = data.before(split_day)
    m = data.ev_purchase & (data.ev_day >= split_day)
    if test_days is not None:
        m &= data.ev_day < split_day + test_days
    test: dict[int, set[int]] = {}
    for u, i in zip(data.ev_user[m].tolist(), data.ev_item[m].tolist(), strict=True):
        test.setdefault(u, set()).add(i)
    seen = np.zeros(data.n_items, bool)
    seen[train.ev_item] = True
    catalog = train.available.copy()
    if lead_days is not None:
        catalog &= data.launch_days(lead_days) <= split_day
    return TimeSplit(train, test, ~seen, split_day, catalog)


@dataclass
class Result:
    """One algorithm's offline metrics on one time split."""

    name: str
    metrics: dict[str, float]
    fit_seconds: float
    recommend_ms: float
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "algorithm": self.name,
            **{k: round(v, 6) for k, v in self.metrics.items()},
            "fit_seconds": round(self.fit_seconds, 2),
            "recommend_ms": round(self.recommend_ms, 3),
            **self.extra,
        }


def evaluate_algorithm(
    name: str, model: Recommender, split: TimeSplit, k: int, filler: np.ndarray
) -> Result:
    train = split.train
    started = time.perf_counter()
    model.fit(train)
    fit_seconds = time.perf_counter() - started
    histories = train.histories()
    now = split.split_day
    valid = split.catalog
    aps, recalls, ndcgs, hits = [], [], [], []
    recommended_items: set[int] = set()
    cold_relevant = cold_hits = cold_recommended = total_recommended = 0
    started = time.perf_counter()
    for user, relevant in split.test.items():
        history = histories[user] if user < len(histories) else History.empty()
        items, _ = model.recommend(history, k, now, valid)
        recs = [int(i) for i in items[:k]]
        if len(recs) < k:
            taken = set(recs)
            recs += [int(i) for i in filler if int(i) not in taken][: k - len(recs)]
        aps.append(average_precision(recs, relevant, k))
        recalls.append(len(relevant & set(recs)) / len(relevant))
        ndcgs.append(ndcg(recs, relevant, k))
        hits.append(float(bool(relevant & set(recs))))
        recommended_items.update(recs)
        cold_rel = {
            i for i in relevant if i < train.n_catalog and split.cold[i] and split.catalog[i]
        }
        cold_relevant += len(cold_rel)
        cold_hits += len(cold_rel & set(recs))
        cold_recommended += sum(bool(split.cold[i]) for i in recs)
        total_recommended += len(recs)
    per_user_ms = (time.perf_counter() - started) * 1000 / max(len(split.test), 1)
    metrics = {
        f"map@{k}": float(np.mean(aps)) if aps else 0.0,
        f"recall@{k}": float(np.mean(recalls)) if recalls else 0.0,
        f"ndcg@{k}": float(np.mean(ndcgs)) if ndcgs else 0.0,
        "hit_rate": float(np.mean(hits)) if hits else 0.0,
        "coverage": len(recommended_items) / max(int(valid.sum()), 1),
        "cold_recall": cold_hits / cold_relevant if cold_relevant else 0.0,
        "cold_share": cold_recommended / max(total_recommended, 1),
    }
    extra = {}
    if isinstance(model, Hybrid):
        extra["training"] = model.training_report
    return Result(name, metrics, fit_seconds, per_user_ms, extra)


def evaluate(
    data: Dataset,
    split_day: float,
    k: int = 12,
    algorithms: Mapping[str, Callable[[], Recommender]] | None = None,
    test_days: float | None = None,
    progress: Callable[[str], None] | None = None,
    whole_catalog: bool = False,
) -> tuple[list[Result], dict[str, Any]]:
    """Every algorithm on one time split; also returns facts about the split.
    ``whole_catalog``: the catalog of now, not the catalog as of the split."""
    split = make_split(data, split_day, test_days, None if whole_catalog else LAUNCH_LEAD_DAYS)
    if not split.test:
        raise ValueError("no purchases on or after the split date: nothing to test")
    if len(split.train.ev_day) == 0:
        raise ValueError("no events before the split date: nothing to train on")
    baseline = Popularity(half_life_days=None, window_days=28.0).fit(split.train)
    filler, _ = baseline.recommend(History.empty(), 200, split_day, split.catalog)
    results = []
    for name, factory in (algorithms or default_algorithms()).items():
        if progress:
            progress(name)
        results.append(evaluate_algorithm(name, factory(), split, k, filler))
    relevant = [i for items in split.test.values() for i in items]
    facts = {
        "train_events": len(split.train.ev_day),
        "test_users": len(split.test),
        "test_purchases": len(relevant),
        "test_in_catalog": sum(i < data.n_catalog for i in relevant),
        "test_cold_in_catalog": sum(bool(split.cold[i]) and i < data.n_catalog for i in relevant),
        "test_on_sale_at_split": sum(
            i < data.n_catalog and bool(split.catalog[i]) for i in relevant
        ),
        "catalog": data.n_catalog,
        "catalog_at_split": int(split.catalog.sum()),
    }
    return results, facts


def format_table(results: Sequence[Result], k: int) -> str:
    """A plain-text table, each algorithm's MAP beside the baseline's."""
    base = next((r for r in results if r.name == BASELINE), None)
    cols = [
        f"map@{k}",
        f"recall@{k}",
        f"ndcg@{k}",
        "hit_rate",
        "coverage",
        "cold_recall",
        "cold_share",
    ]
    head = f"{'algorithm':<16}" + "".join(f"{c:>12}" for c in cols) + f"{'vs base':>9}{'fit s':>8}"
    lines = [head, "-" * len(head)]
    for r in results:
        ratio = ""
        if base is not None and base.metrics[f"map@{k}"] > 0:
            ratio = f"{r.metrics[f'map@{k}'] / base.metrics[f'map@{k}']:.2f}x"
        lines.append(
            f"{r.name:<16}"
            + "".join(f"{r.metrics[c]:>12.4f}" for c in cols)
            + f"{ratio:>9}{r.fit_seconds:>8.1f}"
        )
    return "\n".join(lines)
