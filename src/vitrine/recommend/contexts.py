"""Lists for a context other than a known customer: an anonymous session, a product
(visually similar, bought together), and what is trending.

These are computed on every request (nothing is kept) and recorded as served, except
previews of unsaved strategies.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from vitrine.recommend.base import Reason
from vitrine.recommend.compute import ListComputer
from vitrine.recommend.data import History
from vitrine.recommend.lifecycle import ModelLifecycle
from vitrine.recommend.models import ModelSet
from vitrine.recommend.responses import RecommendationList, UnknownItemError
from vitrine.recommend.strategies import Strategy
from vitrine.recommend.visual import VisualSimilar


class ContextLists:
    """Session, similar-product, complementary-product and trending lists."""

    def __init__(self, computer: ListComputer, lifecycle: ModelLifecycle) -> None:
        self.computer = computer
        self.lifecycle = lifecycle

    def session(
        self,
        product_ids: Sequence[str],
        k: int = 12,
        strategy: str | None = None,
        filters: Sequence[str] | None = None,
        session_id: str | None = None,
        preview: Strategy | None = None,
    ) -> RecommendationList:
        """Recommendations for an anonymous session that looked at these products."""
        computer = self.computer
        models = self.lifecycle.models
        chosen = preview or computer.strategy(strategy, session_id)
        history = models.data.history_of(product_ids, models.reference_day, 2.0)
        result = computer.compute_and_respond(
            chosen,
            history,
            k,
            computer.rules(chosen, filters, None),
            "session",
            None,
            models=models,
            record={"session_id": session_id},
            serve=preview is None,
        )
        result.extra["unknown_products"] = [
            p for p in product_ids if p not in models.data.item_index
        ]
        return result

    def _item(self, models: ModelSet, product_id: str) -> int:
        """The product's row, if it may be shown now; else UnknownItemError."""
        data = models.data
        item = data.item_index.get(product_id)
        if (
            item is None
            or item >= data.n_catalog
            or not data.listed[item]
            or self.lifecycle.catalog.deleted(product_id)
        ):
            raise UnknownItemError(product_id)
        return item

    def similar(
        self,
        product_id: str,
        k: int = 12,
        strategy: str | None = None,
        weights: Mapping[str, float] | None = None,
        filters: Sequence[str] | None = None,
        preview: Strategy | None = None,
    ) -> RecommendationList:
        """Visually similar products, by embedding or by a strategy's aspect weights."""
        computer = self.computer
        models = self.lifecycle.models
        item = self._item(models, product_id)
        chosen = preview or computer.strategy(strategy or "similar")
        if weights is not None:
            chosen = Strategy.from_json(chosen.name, {**chosen.to_json(), "weights": weights})
        if chosen.algorithm != "similar":
            config = {**chosen.to_json(), "algorithm": "similar", "params": {}}
            chosen = Strategy.from_json(chosen.name, config)
        history = models.data.history_of([product_id], models.reference_day)

        def produce(alg: Any, pool: int, now: float, valid: np.ndarray) -> Any:
            assert isinstance(alg, VisualSimilar)
            valid = valid.copy()
            valid[item] = False
            return alg.similar_items(item, pool, now, valid, weights=chosen.weights or None)

        def explain(alg: Any, other: int, now: float) -> Reason:
            from vitrine.recommend.visual import looks_like

            reason = looks_like(models.data, item, other, "viewed", alg.title(item))
            reason["text"] = reason["text"].replace(" you viewed", "")
            return reason

        rules = computer.rules(chosen, filters, None)
        return computer.compute_and_respond(
            chosen, history, k, rules, "product", produce, explain, models, serve=preview is None
        )

    def complementary(
        self,
        product_id: str,
        k: int = 12,
        filters: Sequence[str] | None = None,
        strategy: str | None = None,
        preview: Strategy | None = None,
    ) -> RecommendationList:
        """Products bought together with this one, across categories ("complete the look")."""
        computer = self.computer
        models = self.lifecycle.models
        item = self._item(models, product_id)
        chosen = preview or computer.strategy(strategy or "complementary")
        history = models.data.history_of([product_id], models.reference_day)
        code = int(models.data.category[item])
        overrides: dict[str, Any] = {}
        if code >= 0:  # complements are of other categories, whatever the fallback finds
            overrides["exclude_categories"] = [
                *chosen.rules.exclude_categories,
                models.data.categories[code],
            ]

        def produce(alg: Any, pool: int, now: float, valid: np.ndarray) -> Any:
            return alg.similar_items(item, pool, now, valid)

        rules = computer.rules(chosen, filters, overrides)
        return computer.compute_and_respond(
            chosen, history, k, rules, "product", produce, None, models, serve=preview is None
        )

    def trending(self, k: int = 12, category: str | None = None) -> RecommendationList:
        """The products trending now, overall or in one category."""
        computer = self.computer
        models = self.lifecycle.models
        chosen = computer.strategy("trending")
        if category is not None and category not in models.data.categories:
            raise UnknownItemError(f"category {category!r}")
        overrides = {"include_categories": [category]} if category else None
        return computer.compute_and_respond(
            chosen,
            History.empty(),
            k,
            computer.rules(chosen, None, overrides),
            "trending",
            None,
            models=models,
        )
