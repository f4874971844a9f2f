"""Offline evaluations of the recommendation algorithms on the shop's own event log,
stored for the admin UI (the measures themselves: :mod:`vitrine.recommend.evaluate`)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from vitrine.catalog.models import RecommendationEvaluation
from vitrine.catalog.store import CatalogStore
from vitrine.config import Settings
from vitrine.recommend.data import to_days
from vitrine.recommend.event_store import EventStore
from vitrine.recommend.loading import load_dataset


class EvaluationRuns:
    """Runs an offline evaluation and keeps its result; lists the stored runs."""

    def __init__(
        self,
        settings: Settings,
        engine: Any,
        store: CatalogStore,
        events: EventStore,
        weights: dict[str, float],
    ) -> None:
        self.settings = settings
        self.engine = engine
        self.store = store
        self.events = events
        self.weights = weights

    def evaluate(
        self,
        split: datetime,
        k: int = 12,
        algorithms: Sequence[str] | None = None,
        test_days: float | None = None,
        progress: Callable[[str], None] | None = None,
        whole_catalog: bool = False,
    ) -> dict[str, Any]:
        """Offline evaluation on the shop's own log; the result is stored for the admin UI."""
        from vitrine.recommend.evaluate import default_algorithms, evaluate

        data = load_dataset(
            self.store,
            self.events,
            self.weights,
            category_field=self.settings.recommend_category_field,
        )
        chosen = default_algorithms()
        if algorithms:
            unknown = sorted(set(algorithms) - set(chosen))
            if unknown:
                raise ValueError(f"unknown algorithms {unknown}; known: {', '.join(chosen)}")
            chosen = {n: f for n, f in chosen.items() if n in algorithms or n == "popularity_4w"}
        results, facts = evaluate(
            data, to_days(split), k, chosen, test_days, progress, whole_catalog
        )
        table = [r.to_json() for r in results]
        params = {"test_days": test_days, "whole_catalog": whole_catalog, **facts}
        with self.engine.begin() as conn:
            run_id = conn.execute(
                RecommendationEvaluation.__table__.insert().values(
                    split_date=split,
                    k=k,
                    params=params,
                    results=table,
                    created_at=datetime.now().astimezone(),
                )
            ).inserted_primary_key[0]
        return {
            "id": run_id,
            "split_date": split.isoformat(),
            "k": k,
            "params": params,
            "results": table,
            "_results": results,
        }

    def latest(self, limit: int = 20) -> list[dict[str, Any]]:
        """The latest stored evaluation runs, newest first."""
        table = RecommendationEvaluation.__table__
        with self.engine.connect() as conn:
            rows = conn.execute(table.select().order_by(table.c.id.desc()).limit(limit)).all()
        return [dict(r._mapping) for r in rows]
