"""The admin's interface to the recommendation service (``RecommendationAdmin``).

Strategies map one to one onto the engine's: the algorithm and its fallback chain, the
aspect weights (used by the visually-similar algorithm), and the rules the admin edits
(exclude purchased, available only, diversity); rules it does not show are kept as they
are. An A/B test is an engine strategy whose variants split customers between two
strategies; its results are the click-through of the two strategies' lists served since
the test began. Metrics are computed from the events, served lists and stored offline
evaluations.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from typing import Any

from vitrine.admin.ports import RecommendedItem, Strategy
from vitrine.catalog.models import utcnow
from vitrine.recommend import strategies as engine
from vitrine.recommend.service import NotReadyError, RecommendationService, UnknownItemError

Z95 = 1.959964
TOP = 10


def _midnight(day: datetime) -> datetime:
    return datetime.combine(day.date(), time.min, tzinfo=day.tzinfo)


def to_admin(s: engine.Strategy) -> Strategy:
    return Strategy(
        name=s.name,
        algorithm=s.algorithm,
        fallback=tuple(s.fallback),
        aspects=dict(s.weights),
        rules={
            "exclude_purchased": s.rules.exclude_purchased,
            "in_stock_only": s.rules.available_only,
            "diversity": s.rules.diversity,
        },
        description=s.description,
    )


def to_engine(s: Strategy, current: engine.Strategy | None) -> engine.Strategy:
    """The engine's strategy for an edited one; what the admin does not edit is kept."""
    config = current.to_json() if current is not None else {}
    rules = dict(config.get("rules") or {})
    rules.update(
        exclude_purchased=bool(s.rules.get("exclude_purchased", False)),
        available_only=bool(s.rules.get("in_stock_only", True)),
        diversity=float(s.rules.get("diversity", 0.0)),
    )
    same_algorithm = current is not None and current.algorithm == s.algorithm
    params = config.get("params") if same_algorithm else {}  # params belong to one algorithm
    config.update(
        algorithm=s.algorithm,
        params=params or {},
        weights={k: float(v) for k, v in s.aspects.items() if v},
        rules=rules,
        fallback=list(s.fallback),
    )
    description = current.description if current is not None else s.description
    return engine.Strategy.from_json(s.name, config, description)


def _items(result: Any) -> list[RecommendedItem]:
    return [
        RecommendedItem(i.product_id, i.score, str(i.explanation.get("text") or i.source))
        for i in result.items
    ]


def diff_interval(clicks_a: int, n_a: int, clicks_b: int, n_b: int) -> tuple[float, float, float]:
    """B's click-through minus A's, with a 95% normal-approximation interval."""
    p_a, p_b = clicks_a / n_a, clicks_b / n_b
    se = math.sqrt(p_a * (1 - p_a) / n_a + p_b * (1 - p_b) / n_b)
    diff = p_b - p_a
    return diff, diff - Z95 * se, diff + Z95 * se


@dataclass
class ServiceRecommendations:
    """``RecommendationAdmin`` on top of :class:`RecommendationService`."""

    service: RecommendationService

    # -- strategies ------------------------------------------------------------------------

    def algorithms(self) -> list[str]:
        return list(engine.ALGORITHMS)

    def strategies(self) -> list[Strategy]:
        return [to_admin(s) for s in self.service.strategies.list() if not s.variants]

    def save_strategy(self, strategy: Strategy) -> None:
        current = self.service.strategies.get(strategy.name)
        if current is not None and current.variants:
            raise ValueError(f"{strategy.name!r} is an A/B test, not a strategy")
        self.service.strategies.put(to_engine(strategy, current))
        models = self.service.models if self.service.ready else None
        if models is not None and not set(self.service.model_specs()) <= set(models.algorithms):
            self.service.request_retrain()  # a newly chosen algorithm is trained in background

    def preview(
        self, strategy: Strategy, *, customer_id: str | None, product_id: str | None, k: int
    ) -> list[RecommendedItem]:
        chosen = to_engine(strategy, self.service.strategies.get(strategy.name))
        svc = self.service
        try:
            if customer_id:
                return _items(svc.recommend_user(customer_id, k, preview=chosen))
            if product_id is None:
                raise ValueError("give a customer or a product")
            if chosen.algorithm == "similar":
                return _items(svc.similar(product_id, k, preview=chosen))
            if chosen.algorithm == "complementary":
                return _items(svc.complementary(product_id, k, preview=chosen))
            return _items(svc.recommend_session([product_id], k, preview=chosen))
        except UnknownItemError:
            raise ValueError(f"product {product_id!r} is not known to the models yet") from None
        except NotReadyError as exc:
            raise ValueError(str(exc)) from None

    def complementary(self, product_id: str, k: int) -> list[RecommendedItem]:
        try:
            return _items(self.service.complementary(product_id, k))
        except (UnknownItemError, NotReadyError):
            return []

    # -- A/B tests -------------------------------------------------------------------------

    def start_ab_test(self, name: str, a: str, b: str, split: float) -> None:
        if a == b:
            raise ValueError("an A/B test needs two different strategies")
        if not 0 < split < 1:
            raise ValueError("the share to B must be between 0 and 1")
        if self.service.strategies.get(name) is not None:
            raise ValueError(f"there is already a strategy or test named {name!r}")
        for arm in (a, b):
            found = self.service.strategies.get(arm)
            if found is None or found.variants:
                raise ValueError(f"{arm!r} is not a strategy")
        test = engine.Strategy.from_json(
            name, {"variants": {a: 1.0 - split, b: split}}, f"A/B test: {a} vs {b}"
        )
        self.service.strategies.put(test)

    def ab_tests(self) -> list[dict[str, Any]]:
        started = self.service.strategies.created_times()
        out = []
        for s in self.service.strategies.list():
            if len(s.variants) != 2:
                continue
            a, b = sorted(s.variants)
            named = s.description.removeprefix("A/B test: ").split(" vs ")
            if len(named) == 2 and set(named) == set(s.variants):
                a, b = named  # the order it was started with
            stats = {e["strategy"]: e for e in self.service.strategy_stats(since=started[s.name])}
            arm_a, arm_b = stats.get(a, {}), stats.get(b, {})
            n_a, n_b = arm_a.get("served", 0), arm_b.get("served", 0)
            c_a, c_b = arm_a.get("clicked_lists", 0), arm_b.get("clicked_lists", 0)
            row: dict[str, Any] = {
                "name": s.name,
                "a": a,
                "b": b,
                "split": s.variants[b] / sum(s.variants.values()),
                "served_a": n_a,
                "served_b": n_b,
                "ctr_a": c_a / n_a if n_a else None,
                "ctr_b": c_b / n_b if n_b else None,
                "diff": None,
                "ci_low": None,
                "ci_high": None,
            }
            if n_a and n_b:
                row["diff"], row["ci_low"], row["ci_high"] = diff_interval(c_a, n_a, c_b, n_b)
            out.append(row)
        return out

    # -- metrics ---------------------------------------------------------------------------

    def metrics(self, days: int) -> dict[str, Any]:
        svc = self.service
        today = _midnight(utcnow())
        first = today - timedelta(days=days - 1)
        day_starts = [first + timedelta(days=n) for n in range(days)]
        svc.strategy_stats()  # waits for the served lists just produced to be written
        per_day = [
            {e["strategy"]: e for e in svc.events.strategy_stats(d, d + timedelta(days=1))}
            for d in day_starts
        ]
        names = sorted({n for stats in per_day for n in stats})

        def chart(key: str) -> dict[str, Any]:
            return {
                "type": "line",
                "labels": [d.date().isoformat() for d in day_starts],
                "datasets": [
                    {"label": n, "data": [stats.get(n, {}).get(key) for stats in per_day]}
                    for n in names
                ],
            }

        served_today = sum(e["served"] for e in per_day[-1].values())
        clicked_today = sum(e["clicked_lists"] for e in per_day[-1].values())
        bought_today = sum(e["events"].get("purchase", 0) for e in per_day[-1].values())
        events_today = svc.events.count_since(today)
        recommended = svc.events.recommended_since(first)
        purchased = svc.events.top_products("purchase", first, TOP)
        catalog = svc.store.count_products()
        offline, metric_names = self._offline()
        models = svc.models if svc.ready else None
        return {
            "events_today": events_today,
            "ctr": clicked_today / served_today if served_today else None,
            "conversion": bought_today / served_today if served_today else None,
            "models": {
                "recommendation models": datetime.fromtimestamp(models.trained_at).strftime(
                    "trained %Y-%m-%d %H:%M"
                )
            }
            if models is not None
            else {},
            "ctr_chart": chart("ctr"),
            "conversion_chart": chart("conversion"),
            "coverage": len(recommended) / catalog if catalog else 0.0,
            "top_recommended": recommended.most_common(TOP),
            "top_purchased": purchased,
            "offline_metrics": metric_names,
            "offline": offline,
        }

    def _offline(self) -> tuple[dict[str, dict[str, float]], list[str]]:
        """The latest stored offline evaluation: {algorithm: {metric: value}}."""
        runs = self.service.evaluations(limit=1)
        if not runs:
            return {}, []
        offline: dict[str, dict[str, float]] = {}
        names: list[str] = []
        for row in runs[0]["results"]:
            values = {
                k: float(v)
                for k, v in row.items()
                if k != "algorithm" and isinstance(v, int | float) and not isinstance(v, bool)
            }
            offline[str(row["algorithm"])] = values
            names += [k for k in values if k not in names]
        return offline, names
