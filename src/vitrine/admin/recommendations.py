"""The admin's interface to the recommendation service (``RecommendationAdmin``).

Strategies map one to one onto the engine's. The side-by-side preview and the customer
pages use :class:`~vitrine.admin.ports.Strategy` (algorithm, fallback chain, aspect
weights, three rules; rules it does not show are kept as they are); the strategy editor
works on the engine's whole configuration (every rule, the algorithm's parameters, see
:mod:`~vitrine.admin.strategy_form`). A/B tests (their life and reading) are
:class:`~vitrine.recommend.ab_tests.ABTests`'. Metrics are computed from the events,
served lists and stored offline evaluations.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from typing import Any

from vitrine.admin.ports import PreviewResult, RecommendedItem, Strategy
from vitrine.catalog.models import utcnow
from vitrine.recommend import strategies as engine
from vitrine.recommend.ab_tests import ABTests, newcombe
from vitrine.recommend.rules import Rules
from vitrine.recommend.service import NotReadyError, RecommendationService, UnknownItemError

TOP = 10
STATS_DAYS = 30  # the strategy list's served / CTR columns
# Strategies the service asks for by name: deleting one breaks that call.
SERVICE_USES = {
    "trending": "GET /v1/trending",
    "similar": "GET /v1/products/{id}/similar/weighted",
    "complementary": "GET /v1/products/{id}/complementary",
}


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


def rules_summary(rules: Rules) -> str:
    """The rules that are on, in a few words."""
    parts = []
    if rules.available_only:
        parts.append("in stock")
    if rules.exclude_purchased:
        parts.append("no re-buys")
    if rules.exclude_seen:
        parts.append("unseen only")
    if rules.include_categories:
        parts.append("only " + ", ".join(rules.include_categories))
    if rules.exclude_categories:
        parts.append("not " + ", ".join(rules.exclude_categories))
    parts += rules.filters
    if rules.price_min is not None or rules.price_max is not None:
        low = "" if rules.price_min is None else f"{rules.price_min:g}"
        high = "" if rules.price_max is None else f"{rules.price_max:g}"
        parts.append(f"price {low}–{high}")
    parts += [f"boost {k} ×{v:g}" for k, v in rules.boost.items()]
    parts += [f"bury {k} ÷{v:g}" for k, v in rules.bury.items()]
    if rules.max_per_category is not None:
        parts.append(f"≤{rules.max_per_category} per category")
    if rules.diversity:
        parts.append(f"diversity {rules.diversity:g}")
    return " · ".join(parts) or "none"


@dataclass
class ServiceRecommendations:
    """``RecommendationAdmin`` on top of :class:`RecommendationService`."""

    service: RecommendationService
    tests: ABTests = field(init=False)

    def __post_init__(self) -> None:
        self.tests = ABTests(self.service.strategies, lambda since: self._stats(since))

    def _stats(self, since: datetime | None) -> list[dict[str, Any]]:
        return self.service.strategy_stats(since=since)

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
        return self._preview(chosen, customer_id, product_id, k)

    def _preview(
        self, chosen: engine.Strategy, customer_id: str | None, product_id: str | None, k: int
    ) -> list[RecommendedItem]:
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

    def strategy_config(self, name: str) -> dict[str, Any] | None:
        found = self.service.strategies.get(name)
        if found is None:
            return None
        return {"name": found.name, "description": found.description, **found.to_json()}

    def strategy_rows(self) -> list[dict[str, Any]]:
        since = utcnow() - timedelta(days=STATS_DAYS)
        stats = {e["strategy"]: e for e in self.service.strategy_stats(since=since)}
        every = self.service.strategies.list()
        used: dict[str, list[str]] = {}
        for test in every:
            for arm in test.variants:
                used.setdefault(arm, []).append(test.name)
        rows = []
        for s in every:
            if s.variants:
                continue
            served = stats.get(s.name, {}).get("served", 0)
            rows.append(
                {
                    "name": s.name,
                    "description": s.description,
                    "algorithm": s.algorithm,
                    "fallback": s.fallback,
                    "rules": rules_summary(s.rules),
                    "served": served,
                    "ctr": stats.get(s.name, {}).get("ctr"),
                    "kept_because": self._kept_because(s.name, used.get(s.name, [])),
                }
            )
        return rows

    def _kept_because(self, name: str, tests: list[str]) -> str:
        """Why a strategy may not be deleted ("" when it may)."""
        if name == self.service.settings.recommend_default_strategy:
            return "the default strategy"
        if tests:
            return "used by A/B test " + ", ".join(tests)
        if name in SERVICE_USES:
            return f"used by {SERVICE_USES[name]}"
        return ""

    def create_strategy(
        self, name: str, algorithm: str, fallback: list[str], copy_of: str | None = None
    ) -> None:
        if self.service.strategies.get(name) is not None:
            raise ValueError(f"there is already a strategy or test named {name!r}")
        if copy_of is not None:
            source = self.service.strategies.get(copy_of)
            if source is None or source.variants:
                raise ValueError(f"{copy_of!r} is not a strategy")
            config = source.to_json()
            description = f"copy of {copy_of}" + (
                f": {source.description}" if source.description else ""
            )
        else:
            config = {"algorithm": algorithm, "fallback": fallback}
            description = ""
        self._put(engine.Strategy.from_json(name, config, description))

    def delete_strategy(self, name: str) -> None:
        found = self.service.strategies.get(name)
        if found is None or found.variants:
            raise LookupError(f"there is no strategy named {name!r}")
        reason = self._kept_because(name, self.tests.using(name))
        if reason:
            raise ValueError(f"{name!r} cannot be deleted: it is {reason}")
        self.service.strategies.delete(name)

    def save_strategy_config(self, name: str, config: dict[str, Any], description: str) -> None:
        current = self.service.strategies.get(name)
        if current is None:
            raise LookupError(f"there is no strategy named {name!r}")
        if current.variants:
            raise ValueError(f"{name!r} is an A/B test, not a strategy")
        self._put(engine.Strategy.from_json(name, config, description))

    def _put(self, strategy: engine.Strategy) -> None:
        self.service.strategies.put(strategy)
        models = self.service.models if self.service.ready else None
        if models is not None and strategy.model_key not in models.algorithms:
            self.service.request_retrain()  # a newly chosen algorithm is trained in background

    def preview_config(
        self,
        name: str,
        config: dict[str, Any],
        *,
        customer_id: str | None,
        product_id: str | None,
        k: int,
    ) -> PreviewResult:
        draft = engine.Strategy.from_json(name, config)
        saved = self.service.strategies.get(name)
        note = ""
        models = self.service.models if self.service.ready else None
        if models is not None and draft.model_key not in models.algorithms:
            note = (
                f"{draft.algorithm} with these parameters is not trained yet: the unsaved "
                "list comes from the fallback chain. Save to train it in the background."
            )
        return PreviewResult(
            draft=self._preview(draft, customer_id, product_id, k),
            saved=self._preview(saved, customer_id, product_id, k) if saved else [],
            note=note,
        )

    def recent_customers(self, limit: int = 20) -> list[str]:
        return self.service.events.recent_users(limit)

    def complementary(self, product_id: str, k: int) -> list[RecommendedItem]:
        """What the product page shows the admin: a preview, never recorded as served."""
        svc = self.service
        try:
            chosen = svc.strategy("complementary")
            return _items(svc.complementary(product_id, k, preview=chosen))
        except (UnknownItemError, NotReadyError, engine.StrategyError):
            return []

    # -- A/B tests -------------------------------------------------------------------------

    def start_ab_test(self, name: str, a: str, b: str, split: float) -> None:
        self.tests.start(name, a, b, split)

    def pause_ab_test(self, name: str, paused: bool) -> None:
        self.tests.set_paused(name, paused)

    def set_ab_split(self, name: str, split: float) -> None:
        self.tests.set_split(name, split)

    def stop_ab_test(self, name: str) -> None:
        self.tests.stop(name)

    def declare_ab_winner(self, name: str, winner: str) -> None:
        self._put(self.tests.declare_winner(name, winner))

    def ab_tests(self) -> list[dict[str, Any]]:
        out = []
        for t in self.tests.list():
            diff = newcombe(t.a.clicks, t.a.impressions, t.b.clicks, t.b.impressions)
            out.append(
                {
                    "name": t.name,
                    "a": t.a.strategy,
                    "b": t.b.strategy,
                    "split": t.split,
                    "paused": t.paused,
                    "parent_algorithm": t.parent_algorithm,
                    "started": t.started,
                    "arms": [t.a, t.b],
                    "served_a": t.a.impressions,
                    "served_b": t.b.impressions,
                    "ctr_a": t.a.ctr,
                    "ctr_b": t.b.ctr,
                    "diff": diff[0] if diff else None,  # B's CTR minus A's, 95 % CI
                    "ci_low": diff[1] if diff else None,
                    "ci_high": diff[2] if diff else None,
                    "verdict": t.verdict,
                }
            )
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

    def offline_evaluation(self) -> tuple[dict[str, dict[str, float]], list[str]]:
        """The latest stored offline evaluation: ({algorithm: {metric: value}}, metric names)."""
        return self._offline()

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
