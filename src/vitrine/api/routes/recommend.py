"""Events, recommendations, strategies and their analytics under /v1."""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import (
    BaseModel,
    Discriminator,
    Field,
    FiniteFloat,
    RootModel,
    Tag,
    ValidationInfo,
    field_validator,
)
from starlette.concurrency import run_in_threadpool

from vitrine.accounts.keys import KeyInfo
from vitrine.api.auth import require
from vitrine.api.openapi import DateTimeParam, UTCDateTime
from vitrine.api.openapi import problems as documented
from vitrine.api.problems import Problem
from vitrine.api.schemas import Job, NotBoolean, job_body
from vitrine.cluster.job_queue import TRAIN_RECOMMENDATIONS
from vitrine.recommend.events import EventError
from vitrine.recommend.rules import RuleError
from vitrine.recommend.service import (
    NotReadyError,
    RecommendationService,
    UnknownItemError,
)
from vitrine.recommend.strategies import Strategy, StrategyError

router = APIRouter(tags=["recommendations"])
T = TypeVar("T")
MAX_BATCH = 10_000
# What the service's errors become (see problems()): unknown product, category or strategy,
# and models not trained yet.
SERVICE_PROBLEMS = documented(404, 503)
# What storefront keys may call besides keys of the ladder (see vitrine.api.auth).
STOREFRONT_READ = require("read", storefront=True)
STOREFRONT_WRITE = require("write", storefront=True)


class EventIn(BaseModel):
    model_config = {"extra": "forbid"}

    user_id: str = Field(min_length=1, max_length=128)
    product_id: str = Field(min_length=1, max_length=128)
    type: str = Field(min_length=1, max_length=32, description="view, click, add_to_cart, ...")
    timestamp: datetime | None = Field(default=None, description="default: now")
    event_id: str | None = Field(default=None, max_length=128, description="for idempotency")
    session_id: str | None = Field(default=None, max_length=128)
    recommendation_id: str | None = Field(default=None, max_length=64)
    strategy: str | None = Field(default=None, max_length=64)
    ad_id: str | None = Field(
        default=None, max_length=64, description="the visual search ad that led here"
    )
    price: Annotated[float, Field(ge=0, allow_inf_nan=False), NotBoolean] | None = None


class EventBatch(BaseModel):
    model_config = {"extra": "forbid"}

    events: list[EventIn] = Field(min_length=1, max_length=MAX_BATCH)


def _events_form(value: Any) -> str | None:
    """Which of the three body forms of POST /v1/events, by shape (validated as that one)."""
    if isinstance(value, list):
        return "list"
    if isinstance(value, dict):
        return "batch" if "events" in value else "event"
    if isinstance(value, EventBatch | EventIn):
        return "batch" if isinstance(value, EventBatch) else "event"
    return None


class EventsBody(
    RootModel[
        Annotated[
            Annotated[EventIn, Tag("event")]
            | Annotated[list[EventIn], Tag("list")]
            | Annotated[EventBatch, Tag("batch")],
            Discriminator(
                _events_form,
                custom_error_type="invalid_events",
                custom_error_message='expected an event, a list of events or {"events": [...]}',
            ),
        ]
    ]
):
    """One event, a list of events, or ``{"events": [...]}`` (the form is told by shape)."""

    def events(self) -> list[EventIn]:
        body = self.root
        if isinstance(body, EventBatch):
            return body.events
        return body if isinstance(body, list) else [body]


class EventsAccepted(BaseModel):
    accepted: int
    duplicates: int


class Recommended(BaseModel):
    product_id: str
    rank: int
    score: float
    source: str
    title: str | None = None
    explanation: dict[str, Any]


class Recommendations(BaseModel):
    recommendation_id: str
    strategy: str
    user_id: str | None = None
    items: list[Recommended]
    fallback_used: bool
    took_ms: float
    unknown_products: list[str] | None = None


class SessionRequest(BaseModel):
    model_config = {"extra": "forbid"}

    product_ids: list[str] = Field(min_length=1, max_length=500)
    k: Annotated[int, Field(ge=1, le=200), NotBoolean] = 12
    strategy: str | None = None
    filter: list[str] | None = None
    session_id: str | None = Field(default=None, max_length=128)


class StrategyIn(BaseModel):
    model_config = {"extra": "forbid"}

    description: str = ""
    algorithm: str = "hybrid"
    params: dict[str, Any] = Field(default_factory=dict)
    weights: dict[str, FiniteFloat] = Field(default_factory=dict)
    rules: dict[str, Any] = Field(default_factory=dict)
    fallback: list[str] = Field(default_factory=lambda: ["visual_profile", "trending"])
    variants: dict[str, FiniteFloat] = Field(default_factory=dict)
    paused: bool = Field(
        default=False, strict=True, description="an A/B test on hold: its own config serves"
    )

    @field_validator("params", "rules")
    @classmethod
    def _finite(cls, value: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        """No NaN or infinity anywhere inside (JSON has none: a stored one breaks reading)."""

        def walk(item: Any, path: str) -> None:
            if isinstance(item, float) and not math.isfinite(item):
                raise ValueError(f"{path} must be a finite number")
            if isinstance(item, dict):
                for key, inner in item.items():
                    walk(inner, f"{path}.{key}")
            elif isinstance(item, list):
                for n, inner in enumerate(item):
                    walk(inner, f"{path}[{n}]")

        walk(value, str(info.field_name))
        return value


class StrategyOut(StrategyIn):
    name: str


class RecommendationStatus(BaseModel):
    """The models' state; only ``ready`` and ``error`` before the first training."""

    model_config = {"extra": "allow"}

    ready: bool
    trained_at: UTCDateTime | None = None
    algorithms: dict[str, float] | None = Field(default=None, description="training seconds")
    products: int | None = None
    customers: int | None = None
    events: int | None = None
    events_skipped: int | None = Field(default=None, description="time out of range, unreadable")
    lists: dict[str, Any] | None = None
    error: str | None = None


class TrainingRequested(BaseModel):
    status: str
    job: Job = Field(description="the training job: follow it at its url")


class StrategyStats(BaseModel):
    strategy: str
    served: int
    clicked_lists: int
    converted_lists: int = Field(default=0, description="lists with an attributed purchase")
    events: dict[str, int] = Field(description="attributed events by type")
    ctr: float | None
    conversion: float | None


class EvaluationRun(BaseModel):
    model_config = {"extra": "allow"}

    id: int
    split_date: UTCDateTime
    k: int
    params: dict[str, Any]
    results: list[Any]
    created_at: UTCDateTime | None = None


async def service(request: Request) -> RecommendationService:
    # async: a plain function dependency would be run in the thread pool (a thread hop
    # and two GIL hand-overs per request, measured as a large share of a cached list's
    # time under load)
    return request.app.state.runtime.recommendations


Service = Annotated[RecommendationService, Depends(service)]
K = Annotated[int, Query(ge=1, le=200)]
Filters = Annotated[list[str] | None, Query(description="field=value; repeatable")]


async def call(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run a service call in the thread pool, its errors as problem documents."""
    with problems():
        return await run_in_threadpool(fn, *args, **kwargs)


@contextmanager
def problems() -> Iterator[None]:
    """The service's errors as problem documents."""
    try:
        yield
    except NotReadyError as exc:
        raise Problem(
            503, str(exc), "not-ready", headers={"Retry-After": "5"}, retry_after=5
        ) from exc
    except UnknownItemError as exc:
        what = str(exc.args[0]) if exc.args else "product"
        detail = (
            f"{what} is unknown"
            if what.startswith("category")
            else (f"product {what!r} is not in the catalog the recommender knows")
        )
        raise Problem(404, detail, "unknown-product") from exc
    except StrategyError as exc:
        status = 404 if str(exc).startswith("unknown strategy") else 422
        raise Problem(status, str(exc), "invalid-strategy") from exc
    except (EventError, RuleError) as exc:
        raise Problem(422, str(exc), "invalid-fields") from exc
    except ValueError as exc:  # attribute filters
        raise Problem(422, str(exc), "invalid-filter") from exc


def _strategy_out(s: Strategy) -> StrategyOut:
    return StrategyOut(name=s.name, description=s.description, **s.to_json())


@router.post(
    "/v1/events",
    response_model=EventsAccepted,
    responses=documented(503),
)
async def post_events(
    svc: Service,
    body: EventsBody,
    key: Annotated[KeyInfo, Depends(STOREFRONT_WRITE)],
) -> EventsAccepted:
    """One event, a list, or ``{"events": [...]}``; re-sent events are not counted twice.

    The customer's next recommendations take the event into account at once. A storefront
    key sends only the types of ``storefront_event_types`` (purchases come from the shop's
    server).
    """
    events = body.events()
    if len(events) > MAX_BATCH:
        raise Problem(413, f"at most {MAX_BATCH} events per request", "too-many-events")
    if key.storefront:
        allowed = {t.strip() for t in svc.settings.storefront_event_types.split(",")}
        refused = sorted({e.type for e in events} - allowed)
        if refused:
            raise Problem(
                403,
                f"a storefront key cannot send events of type {', '.join(refused)}",
                "event-type-not-allowed",
            )
    rows = [e.model_dump(exclude_none=True) for e in events]
    with problems():  # the schema checked each field's form; the service checks the rest
        added, duplicates = await svc.post_events(rows, form_checked=True)
    return EventsAccepted(accepted=len(added), duplicates=duplicates)


@router.get(
    "/v1/users/{user_id}/recommendations",
    response_model=Recommendations,
    response_model_exclude_none=True,
    responses=SERVICE_PROBLEMS,
    dependencies=[Depends(STOREFRONT_READ)],
)
async def user_recommendations(
    svc: Service,
    user_id: str,
    k: K = 12,
    strategy: str | None = None,
    filter: Filters = None,
) -> Response:
    """Personalised recommendations, each explained; unknown customers get the fallbacks."""
    computing = None
    with problems():  # a cached list is answered here: no computing, no thread hop
        result = svc.cached_user_list(user_id, k, strategy, filter)
        if result is None:
            computing = svc.user_list_being_computed(user_id, k, strategy, filter)
    if computing is not None:  # being computed (after an event): wait for it
        with contextlib.suppress(Exception):  # a failure shows when computed below
            await asyncio.wrap_future(computing)
        with problems():
            result = svc.cached_user_list(user_id, k, strategy, filter)
    if result is None:
        result = await call(svc.recommend_user, user_id, k, strategy, filter)
    # Serialised by the service (the items once per computed list): the hot path.
    return Response(result.to_body(), media_type="application/json")


@router.post(
    "/v1/sessions/recommendations",
    response_model=Recommendations,
    response_model_exclude_none=True,
    responses=SERVICE_PROBLEMS,
    dependencies=[Depends(STOREFRONT_READ)],
)
async def session_recommendations(svc: Service, body: SessionRequest) -> dict[str, Any]:
    """Recommendations for an anonymous session from the products it looked at."""
    result = await call(
        svc.recommend_session,
        body.product_ids,
        body.k,
        body.strategy,
        body.filter,
        body.session_id,
    )
    return result.to_json()


@router.get(
    "/v1/products/{product_id}/complementary",
    response_model=Recommendations,
    response_model_exclude_none=True,
    responses=SERVICE_PROBLEMS,
    dependencies=[Depends(STOREFRONT_READ)],
)
async def complementary(
    svc: Service,
    product_id: str,
    k: K = 12,
    filter: Filters = None,
    strategy: str | None = None,
) -> dict[str, Any]:
    """Products bought together with this one, from other categories."""
    result = await call(svc.complementary, product_id, k, filter, strategy)
    return result.to_json()


@router.get(
    "/v1/products/{product_id}/similar/weighted",
    response_model=Recommendations,
    response_model_exclude_none=True,
    responses=SERVICE_PROBLEMS,
    dependencies=[Depends(STOREFRONT_READ)],
)
async def similar_weighted(
    svc: Service,
    product_id: str,
    k: K = 12,
    filter: Filters = None,
    strategy: str | None = None,
    weights: Annotated[str | None, Query(description="embedding=2,color=1,shape=0.5")] = None,
) -> dict[str, Any]:
    """Visually similar products by a strategy's (or these) aspect weights, explained."""
    parsed = None
    if weights is not None:
        from vitrine.index.fusion import parse_weights

        try:
            parsed = parse_weights(weights)
        except ValueError as exc:
            raise Problem(422, str(exc), "invalid-weights") from exc
    result = await call(svc.similar, product_id, k, strategy, parsed, filter)
    return result.to_json()


@router.get(
    "/v1/trending",
    response_model=Recommendations,
    response_model_exclude_none=True,
    responses=SERVICE_PROBLEMS,
    dependencies=[Depends(STOREFRONT_READ)],
)
async def trending(svc: Service, k: K = 12, category: str | None = None) -> dict[str, Any]:
    """The products trending now, overall or in one category."""
    return (await call(svc.trending, k, category)).to_json()


# -- strategies ----------------------------------------------------------------------------


@router.get(
    "/v1/strategies", response_model=list[StrategyOut], dependencies=[Depends(require("read"))]
)
async def list_strategies(svc: Service) -> list[StrategyOut]:
    return [_strategy_out(s) for s in await call(svc.strategies.list)]


@router.get(
    "/v1/strategies/{name}", response_model=StrategyOut, dependencies=[Depends(require("read"))]
)
async def get_strategy(svc: Service, name: str) -> StrategyOut:
    found = await call(svc.strategies.get, name)
    if found is None:
        raise Problem(404, f"unknown strategy {name!r}", "unknown-strategy")
    return _strategy_out(found)


@router.put(
    "/v1/strategies/{name}", response_model=StrategyOut, dependencies=[Depends(require("admin"))]
)
async def put_strategy(svc: Service, name: str, body: StrategyIn) -> StrategyOut:
    """Create or replace a strategy (algorithms it needs are trained in the background)."""
    config = body.model_dump(exclude={"description"})
    strategy = await call(Strategy.from_json, name, config, body.description)
    await call(svc.strategies.put, strategy)
    if svc.ready and strategy.model_key not in svc.models.algorithms:
        svc.request_retrain()
    return _strategy_out(strategy)


@router.delete(
    "/v1/strategies/{name}",
    status_code=204,
    responses=documented(409),
    dependencies=[Depends(require("admin"))],
)
async def delete_strategy(svc: Service, name: str) -> Response:
    if name == svc.settings.recommend_default_strategy:
        raise Problem(409, f"strategy {name!r} is the default strategy", "default-strategy")
    if not await call(svc.strategies.delete, name):
        raise Problem(404, f"unknown strategy {name!r}", "unknown-strategy")
    return Response(status_code=204)


@router.post(
    "/v1/strategies/{name}/preview",
    response_model=Recommendations,
    response_model_exclude_none=True,
    responses={**SERVICE_PROBLEMS, **documented(409)},
    dependencies=[Depends(require("admin"))],
)
async def preview_strategy(
    svc: Service, name: str, body: StrategyIn, user_id: str, k: K = 12
) -> dict[str, Any]:
    """What an (unsaved) strategy would recommend to a customer; nothing is recorded."""
    strategy = await call(Strategy.from_json, name, body.model_dump(exclude={"description"}))
    with problems():  # not trained at all yet: 503
        trained = svc.models.algorithms
    if strategy.model_key not in trained:
        raise Problem(
            409,
            f"algorithm {strategy.algorithm!r} is not trained yet; save the strategy and retrain",
            "not-trained",
        )
    return (await call(svc.recommend_user, user_id, k, preview=strategy)).to_json()


# -- operations and analytics -----------------------------------------------------------------


@router.get(
    "/v1/recommendations/status",
    response_model=RecommendationStatus,
    response_model_exclude_unset=True,
    dependencies=[Depends(require("read"))],
)
async def status(svc: Service) -> dict[str, Any]:
    """Whether models are loaded, when they were trained, what they hold."""
    if not svc.ready:
        return {"ready": False, "error": svc.last_error}
    m = svc.models
    return {
        "ready": True,
        "trained_at": datetime.fromtimestamp(m.trained_at, UTC),
        "algorithms": m.train_seconds,
        "products": m.data.n_catalog,
        "customers": m.data.n_users,
        "events": len(m.data.ev_day),
        # stored events left out of training: a time out of range or unreadable
        "events_skipped": m.data.skipped_events,
        "lists": svc.list_stats(),
        "error": svc.last_error,
    }


@router.post(
    "/v1/recommendations/train",
    status_code=202,
    response_model=TrainingRequested,
    dependencies=[Depends(require("admin"))],
)
def train(request: Request) -> TrainingRequested:
    """Retrain every model in a background job; serving goes on with the current ones."""
    job = request.app.state.runtime.jobs.submit(TRAIN_RECOMMENDATIONS, {}, "api")
    return TrainingRequested(status="training requested", job=job_body(job))


@router.get(
    "/v1/recommendations/stats",
    response_model=list[StrategyStats],
    dependencies=[Depends(require("admin"))],
)
async def stats(
    svc: Service, since: DateTimeParam | None = None, until: DateTimeParam | None = None
) -> list[dict[str, Any]]:
    """Per strategy: lists served, attributed clicks and purchases, CTR and conversion."""
    return await call(svc.strategy_stats, since, until)


@router.get(
    "/v1/recommendations/evaluations",
    response_model=list[EvaluationRun],
    dependencies=[Depends(require("read"))],
)
async def evaluations(svc: Service, limit: K = 20) -> list[dict[str, Any]]:
    """The latest offline evaluation runs (``vitrine evaluate-recommendations``)."""
    return await call(svc.evaluations, limit)
