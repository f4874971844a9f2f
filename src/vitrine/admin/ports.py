"""What the admin UI needs from the classification and recommendation services.

The pages are written against these small interfaces. Label corrections work today
through the catalog (a human label row); classification metrics and recommendations
are provided by their services when those are installed (``AdminBackends``), and the
pages say plainly when one is not.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from vitrine.classify.label_metrics import ClassMetrics, LabelStatistics
from vitrine.classify.service import ClassificationService, UnknownProductError


class LabelFeedback(Protocol):
    def correct(self, product_id: str, field: str, value: str, *, user: str) -> None:
        """Record that a person set ``field=value`` for a product (raises ValueError)."""


class ClassificationInsights(Protocol):
    def class_metrics(self) -> list[ClassMetrics]:
        """Per label field: the active model first, then the previous one."""


@dataclass
class LabelAgreementInsights:
    """Until the classifier reports held-out metrics: model labels against people's."""

    stats: LabelStatistics

    def class_metrics(self) -> list[ClassMetrics]:
        return self.stats.agreement()


@dataclass
class ClassifierFeedback:
    """Corrections through the classification service: a human label that wins at once
    and that the next retraining learns from."""

    classification: ClassificationService

    def correct(self, product_id: str, field: str, value: str, *, user: str) -> None:
        try:
            self.classification.feedback(product_id, field, value)
        except UnknownProductError as exc:
            raise ValueError(f"product {product_id!r} does not exist") from exc


@dataclass
class RegistryInsights:
    """Held-out metrics of the active classification models and of the one before each;
    the model-vs-people agreement while no model is trained."""

    classification: ClassificationService
    fallback: ClassificationInsights

    def class_metrics(self) -> list[ClassMetrics]:
        registry = self.classification.registry
        out: list[ClassMetrics] = []
        for active in registry.active():
            earlier = [m for m in registry.list(active["field"]) if m["id"] < active["id"]]
            for model in [active, *earlier[-1:]]:
                metrics = _class_metrics(model)
                if metrics is not None:
                    out.append(metrics)
        return out or self.fallback.class_metrics()


def _class_metrics(model: dict[str, Any]) -> ClassMetrics | None:
    metrics = model.get("metrics") or {}
    confusion = metrics.get("confusion") or {}
    per_class = metrics.get("per_class") or {}
    classes = list(confusion.get("labels") or [])
    if not classes:
        return None
    rows = [per_class.get(c, {}) for c in classes]
    return ClassMetrics(
        model_version=str(model["version"]),
        field=str(model["field"]),
        classes=classes,
        precision=[float(r.get("precision", 0.0)) for r in rows],
        recall=[float(r.get("recall", 0.0)) for r in rows],
        f1=[float(r.get("f1", 0.0)) for r in rows],
        support=[int(r.get("support", 0)) for r in rows],
        confusion=confusion.get("matrix") or [],
        evaluated_on=f"{metrics.get('rows', 0)} held-out products",
    )


@dataclass(frozen=True)
class RecommendedItem:
    product_id: str
    score: float
    explanation: str


@dataclass(frozen=True)
class PreviewResult:
    """An edited strategy's list next to the saved one's, and a note (e.g. not trained)."""

    draft: list[RecommendedItem]
    saved: list[RecommendedItem]
    note: str = ""


@dataclass(frozen=True)
class Strategy:
    """What the admin edits of a strategy. The engine does not blend algorithms: it runs one,
    and the fallback chain fills the list (in order) when it has too little to say."""

    name: str
    algorithm: str
    fallback: tuple[str, ...]
    aspects: dict[str, float]  # color / texture / shape / pattern / embedding -> weight
    rules: dict[str, Any] = field(default_factory=dict)  # exclude_purchased, in_stock_only, ...
    description: str = ""


class RecommendationAdmin(Protocol):
    """What #5's recommendation service offers the admin UI."""

    def strategies(self) -> list[Strategy]: ...

    def algorithms(self) -> list[str]:
        """The algorithms a strategy may run (and fall back to)."""
        ...

    def save_strategy(self, strategy: Strategy) -> None: ...

    def preview(
        self, strategy: Strategy, *, customer_id: str | None, product_id: str | None, k: int
    ) -> list[RecommendedItem]: ...

    def ab_tests(self) -> list[dict[str, Any]]:
        """Each: name, a, b, split, ctr_a, ctr_b, diff, ci_low, ci_high (95% CI of diff)."""
        ...

    def start_ab_test(self, name: str, a: str, b: str, split: float) -> None: ...

    # The strategy editor and A/B test controls work on the engine's configuration
    # ({"algorithm", "params", "weights", "rules", "fallback", "variants", "paused"});
    # errors are ValueError (bad input) or LookupError (no such strategy / test).

    def strategy_config(self, name: str) -> dict[str, Any] | None: ...

    def strategy_rows(self) -> list[dict[str, Any]]:
        """Each: name, description, algorithm, fallback, rules (summary), served, ctr
        (last 30 days), kept_because (why it may not be deleted, or "")."""
        ...

    def create_strategy(
        self, name: str, algorithm: str, fallback: list[str], copy_of: str | None = None
    ) -> None: ...

    def delete_strategy(self, name: str) -> None: ...

    def save_strategy_config(self, name: str, config: dict[str, Any], description: str) -> None: ...

    def preview_config(
        self,
        name: str,
        config: dict[str, Any],
        *,
        customer_id: str | None,
        product_id: str | None,
        k: int,
    ) -> PreviewResult: ...

    def recent_customers(self, limit: int = 20) -> list[str]: ...

    def pause_ab_test(self, name: str, paused: bool) -> None: ...

    def set_ab_split(self, name: str, split: float) -> None: ...

    def stop_ab_test(self, name: str) -> None: ...

    def declare_ab_winner(self, name: str, winner: str) -> None: ...

    def complementary(self, product_id: str, k: int) -> list[RecommendedItem]:
        """Products bought with this one, of other categories ("complete the look")."""
        ...

    def metrics(self, days: int) -> dict[str, Any]:
        """What the Overview and Analytics pages show, over the last ``days`` days:

        ``events_today`` (int), ``ctr`` and ``conversion`` (today, 0..1), ``models``
        ({name: active version}), ``ctr_chart`` and ``conversion_chart`` (chart specs:
        {"type", "labels": days, "datasets": [{"label": strategy, "data": [...]}]}),
        ``coverage`` (share of the catalog recommended, 0..1), ``top_recommended`` and
        ``top_purchased`` ([(product id, count)]), ``offline_metrics`` (metric names) and
        ``offline`` ({algorithm: {metric: value}}).
        """
        ...

    def offline_evaluation(self) -> tuple[dict[str, dict[str, float]], list[str]]:
        """The latest stored offline evaluation: ({algorithm: {metric: value}}, metrics)."""
        ...


@dataclass
class AdminBackends:
    labels: LabelFeedback
    classification: ClassificationInsights
    recommendations: RecommendationAdmin | None = None
