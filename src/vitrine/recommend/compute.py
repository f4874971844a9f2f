"""Computing one recommendation list, and answering it.

A strategy (a named configuration in the database, or an A/B test whose arms are
strategies) chooses the algorithm, its fallback chain and the business rules. A list is
the first algorithm's ranking, filled up by the fallbacks, reshaped by the rules over the
products that may be shown, each product explained. Every answer gets a recommendation
id of its own and is recorded as served (previews are not).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from datetime import datetime
from typing import Any

import numpy as np
from opentelemetry.trace import Span

from vitrine import tracing
from vitrine.config import Settings
from vitrine.recommend.base import Explainer, Reason
from vitrine.recommend.data import Dataset, History
from vitrine.recommend.lifecycle import ModelLifecycle
from vitrine.recommend.models import ModelSet
from vitrine.recommend.responses import RecommendationList, RecommendedItem, recommendation_id
from vitrine.recommend.rules import Rules, candidate_mask, reshape
from vitrine.recommend.served_log import ServedWriter
from vitrine.recommend.strategies import Strategy, StrategyError, StrategyStore

# The first algorithm's candidates instead of its recommendations: (algorithm, pool size,
# now, valid mask) -> (items, scores); and its explanation of one item.
Produce = Callable[[Any, int, float, np.ndarray], tuple[np.ndarray, np.ndarray]]
Explain = Callable[[Any, int, float], Reason]


class ListComputer:
    """Resolves strategies and computes and answers lists from the current model set."""

    def __init__(
        self, settings: Settings, strategies: StrategyStore, lifecycle: ModelLifecycle
    ) -> None:
        self.settings = settings
        self.strategies = strategies
        self.lifecycle = lifecycle
        self.catalog = lifecycle.catalog
        self.served: ServedWriter | None = None  # while the service runs

    def strategy(self, name: str | None, user_id: str | None = None) -> Strategy:
        """The named strategy (default: the configured one); an A/B test's arm for this
        customer (a random one without a customer); a paused A/B test's own configuration."""
        name = name or self.settings.recommend_default_strategy
        strategy = self.strategies.get(name)
        if strategy is None:
            known = ", ".join(s.name for s in self.strategies.list())
            raise StrategyError(f"unknown strategy {name!r}; known: {known}")
        seen = {name}
        while strategy.splits:
            variant = strategy.variant_for(user_id or uuid.uuid4().hex)
            if variant is None or variant in seen:
                raise StrategyError(f"strategy {name!r}: variants form a cycle")
            seen.add(variant)
            chosen = self.strategies.get(variant)
            if chosen is None:
                raise StrategyError(f"strategy {name!r}: variant {variant!r} does not exist")
            strategy = chosen
        return strategy

    @staticmethod
    def rules(
        strategy: Strategy, filters: Sequence[str] | None, overrides: Mapping[str, Any] | None
    ) -> Rules:
        """The strategy's rules with a request's filters and overrides."""
        extra = dict(overrides or {})
        if filters:
            extra["filters"] = [*extra.get("filters", []), *filters]
        return strategy.rules.merged(extra)

    def candidates(self, rules: Rules, data: Dataset, history: History) -> np.ndarray:
        """The catalog items a list may hold: the rules' mask, less the products deleted or
        made unavailable since the catalog generation ``data`` shows."""
        valid = candidate_mask(rules, data, history)
        unlisted = list(self.catalog.unlisted)
        if unlisted:
            rows = [data.item_index.get(p, data.n_catalog) for p in unlisted]
            valid[[r for r in rows if r < data.n_catalog]] = False
        return valid

    @staticmethod
    def now(models: ModelSet, history: History) -> float:
        """The day a list is computed for: the models' reference day, or just after the
        customer's latest event."""
        latest = float(history.days.max()) if len(history) else 0.0
        return max(models.reference_day, latest + 1e-6)

    def compute_items(
        self,
        strategy: Strategy,
        history: History,
        k: int,
        rules: Rules,
        produce: Produce | None,
        explain: Explain | None,
        models: ModelSet,
    ) -> tuple[list[RecommendedItem], bool]:
        """The explained list and whether a fallback algorithm filled part of it."""
        data = models.data
        now = self.now(models, history)
        valid = self.candidates(rules, data, history)
        pool = max(4 * k, 50)
        ranked: list[int] = []
        source: dict[int, str] = {}
        explainers: dict[str, Explainer] = {}
        for position, name in enumerate([strategy.model_key, *strategy.fallback]):
            algorithm = models.algorithms.get(name)
            if algorithm is None:
                continue
            if position == 0 and produce is not None:
                items, _ = produce(algorithm, pool, now, valid)
            else:
                items, _, explainers[name] = algorithm.recommend_explained(
                    history, pool, now, valid
                )
            for item in items.tolist():
                if item not in source:
                    source[item] = name
                    ranked.append(item)
            if len(ranked) >= pool:
                break
        final = reshape(rules, data, ranked, k)
        fallback_used = any(source[i] != strategy.model_key for i in final)
        out = []
        for rank, item in enumerate(final, start=1):
            name = source[item]
            algorithm = models.algorithms[name]
            if explain is not None and name == strategy.model_key:
                reason = explain(algorithm, item, now)
            elif name in explainers:
                reason = explainers[name](item)
            else:
                reason = algorithm.explain(history, item, now)
            out.append(
                RecommendedItem(
                    data.items[item],
                    rank,
                    float(len(final) - rank + 1) / len(final),
                    name,
                    data.titles[item],
                    reason,
                )
            )
        return out, fallback_used and bool(out)

    def respond(
        self,
        strategy: Strategy,
        context: str,
        out: list[RecommendedItem],
        fallback: bool,
        started: float,
        record: dict[str, Any] | None,
        serve: bool,
        items_json: str | None = None,
    ) -> RecommendationList:
        """A response with its own recommendation id, recorded as served."""
        result = RecommendationList(
            recommendation_id(),
            strategy.name,
            context,
            out,
            (time.perf_counter() - started) * 1000,
            fallback=fallback,
            items_json=items_json,
        )
        if self.served is not None and serve:  # previews do not count as served
            self.served.put(
                {
                    "id": result.id,
                    "strategy": strategy.name,
                    "context": context,
                    "items": [i.product_id for i in out],
                    "created_at": datetime.now().astimezone(),
                    **(record or {}),
                }
            )
        return result

    def compute_and_respond(
        self,
        strategy: Strategy,
        history: History,
        k: int,
        rules: Rules,
        context: str,
        produce: Produce | None,
        explain: Explain | None = None,
        models: ModelSet | None = None,
        record: dict[str, Any] | None = None,
        serve: bool = True,
    ) -> RecommendationList:
        """A list computed now (never kept), answered."""
        started = time.perf_counter()
        with list_span(context, k) as span:
            models = models or self.lifecycle.models
            items, fallback = self.compute_items(
                strategy, history, k, rules, produce, explain, models
            )
            result = self.respond(strategy, context, items, fallback, started, record, serve)
            return traced(span, result, cache_hit=False)


def list_span(context: str, k: int) -> AbstractContextManager[Span]:
    """The span of answering one list (a no-op while tracing is off)."""
    return tracing.span(
        "recommend", {"vitrine.recommend.context": context, "vitrine.recommend.k": k}
    )


def traced(span: Span, result: RecommendationList, cache_hit: bool) -> RecommendationList:
    """``result``, its strategy, length and origin noted on its :func:`list_span`."""
    if span.is_recording():
        span.set_attributes(
            {
                "vitrine.recommend.strategy": result.strategy,
                "vitrine.recommend.items": len(result.items),
                "vitrine.recommend.cache_hit": cache_hit,
            }
        )
    return result
