"""Events, recommendations (customer, session, complementary, similar, trending),
strategies, and the recommender's training, evaluation and analytics."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date, datetime

from vitrine_client.bodies import Event, StrategyConfig
from vitrine_client.calls import (
    NO_CONTENT,
    Call,
    Filters,
    Weights,
    filter_list,
    present,
    weights_text,
)
from vitrine_client.models import (
    EvaluationRun,
    EventsAccepted,
    Job,
    Recommendations,
    RecommendationStatus,
    Strategy,
    StrategyStats,
    TrainingRequested,
)
from vitrine_client.operation import operation


class RecommendationOperations:
    """/v1/events, recommendations, /v1/strategies and /v1/recommendations/*."""

    @operation("POST", "/v1/events")
    def send_events(events: Event | Sequence[Event]) -> Call[EventsAccepted]:
        """Record one event or many (up to 10,000); the customer's next recommendations
        take them into account at once."""
        batch = [events] if isinstance(events, Mapping) else list(events)
        return Call(EventsAccepted, json={"events": batch})

    @operation("GET", "/v1/users/{user_id}/recommendations")
    def recommend_user(
        user_id: str,
        *,
        k: int | None = None,
        strategy: str | None = None,
        filter: Filters | None = None,
    ) -> Call[Recommendations]:
        """Personalised recommendations, each explained; unknown customers get the
        strategy's fallbacks. Raises ``Unavailable`` while the models are first trained."""
        query = {"k": k, "strategy": strategy, "filter": filter_list(filter)}
        return Call(Recommendations, path={"user_id": user_id}, query=query)

    @operation("POST", "/v1/sessions/recommendations")
    def recommend_session(
        product_ids: Sequence[str],
        *,
        k: int | None = None,
        strategy: str | None = None,
        filter: Filters | None = None,
        session_id: str | None = None,
    ) -> Call[Recommendations]:
        """Recommendations for an anonymous session from the products it looked at."""
        body = present(
            product_ids=list(product_ids),
            k=k,
            strategy=strategy,
            filter=filter_list(filter),
            session_id=session_id,
        )
        return Call(Recommendations, json=body)

    @operation("GET", "/v1/products/{product_id}/complementary")
    def complementary_products(
        product_id: str,
        *,
        k: int | None = None,
        filter: Filters | None = None,
        strategy: str | None = None,
    ) -> Call[Recommendations]:
        """Products bought together with this one, from other categories."""
        query = {"k": k, "filter": filter_list(filter), "strategy": strategy}
        return Call(Recommendations, path={"product_id": product_id}, query=query)

    @operation("GET", "/v1/products/{product_id}/similar/weighted")
    def similar_products_weighted(
        product_id: str,
        *,
        k: int | None = None,
        filter: Filters | None = None,
        strategy: str | None = None,
        weights: Weights | None = None,
    ) -> Call[Recommendations]:
        """Visually similar products by a strategy's (or these) aspect weights, explained."""
        query = {
            "k": k,
            "filter": filter_list(filter),
            "strategy": strategy,
            "weights": weights_text(weights),
        }
        return Call(Recommendations, path={"product_id": product_id}, query=query)

    @operation("GET", "/v1/trending")
    def trending(*, k: int | None = None, category: str | None = None) -> Call[Recommendations]:
        """The products trending now, overall or in one category."""
        return Call(Recommendations, query={"k": k, "category": category})

    # -- strategies ----------------------------------------------------------------------

    @operation("GET", "/v1/strategies")
    def list_strategies() -> Call[list[Strategy]]:
        """Every recommendation strategy."""
        return Call(list[Strategy])

    @operation("GET", "/v1/strategies/{name}")
    def get_strategy(name: str) -> Call[Strategy]:
        """One strategy's configuration."""
        return Call(Strategy, path={"name": name})

    @operation("PUT", "/v1/strategies/{name}")
    def put_strategy(name: str, config: StrategyConfig) -> Call[Strategy]:
        """Create or replace a strategy (admin); algorithms it needs train in the
        background."""
        return Call(Strategy, path={"name": name}, json=dict(config))

    @operation("DELETE", "/v1/strategies/{name}")
    def delete_strategy(name: str) -> Call[None]:
        """Delete a strategy (admin); raises ``Conflict`` for the default strategy."""
        return Call(NO_CONTENT, path={"name": name})

    @operation("POST", "/v1/strategies/{name}/preview")
    def preview_strategy(
        name: str, config: StrategyConfig, *, user_id: str, k: int | None = None
    ) -> Call[Recommendations]:
        """What an unsaved strategy would recommend to a customer; nothing is recorded."""
        query = {"user_id": user_id, "k": k}
        return Call(Recommendations, path={"name": name}, query=query, json=dict(config))

    # -- training, evaluation, analytics -------------------------------------------------

    @operation("GET", "/v1/recommendations/status")
    def recommendation_status() -> Call[RecommendationStatus]:
        """Whether the models are loaded, when they were trained and what they hold."""
        return Call(RecommendationStatus)

    @operation("POST", "/v1/recommendations/train")
    def train_recommendations() -> Call[TrainingRequested]:
        """Retrain every model in a background job (admin); serving goes on meanwhile."""
        return Call(TrainingRequested)

    @operation("GET", "/v1/recommendations/stats")
    def recommendation_stats(
        *, since: datetime | None = None, until: datetime | None = None
    ) -> Call[list[StrategyStats]]:
        """Per strategy: lists served, attributed clicks and purchases (admin)."""
        return Call(list[StrategyStats], query={"since": since, "until": until})

    @operation("GET", "/v1/recommendations/evaluations")
    def list_evaluations(*, limit: int | None = None) -> Call[list[EvaluationRun]]:
        """The latest offline evaluation runs."""
        return Call(list[EvaluationRun], query={"limit": limit})

    @operation("POST", "/v1/recommendations/evaluations")
    def evaluate_recommendations(
        split: date,
        *,
        k: int | None = None,
        algorithms: Sequence[str] | None = None,
        test_days: float | None = None,
    ) -> Call[Job]:
        """Queue an offline evaluation on the shop's log split at ``split`` (admin)."""
        body = present(
            split=split,
            k=k,
            algorithms=list(algorithms) if algorithms is not None else None,
            test_days=test_days,
        )
        return Call(Job, json=body)
