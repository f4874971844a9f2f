"""/v1/models (the classification model registry) and /v1/feedback (corrections)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request
from starlette.concurrency import run_in_threadpool

from vitrine.api.auth import require
from vitrine.api.openapi import problems
from vitrine.api.problems import Problem
from vitrine.api.schemas import Feedback, FeedbackOut, ModelDetail, ModelList, ModelSummary
from vitrine.classify.labels import resolve_categories
from vitrine.classify.registry import UnknownModelError
from vitrine.classify.registry import model_summary as summary
from vitrine.classify.service import ClassificationService, UnknownProductError

router = APIRouter(tags=["classification"])
# A database id: bounded so that an id beyond int64 is a 422, not an overflow in the driver.
ModelId = Annotated[int, Path(ge=1, le=2**63 - 1, description="The model version's id.")]


def _service(request: Request) -> ClassificationService:
    return request.app.state.runtime.classification


@router.get("/v1/models", response_model=ModelList, dependencies=[Depends(require("read"))])
def list_models(
    request: Request,
    field: Annotated[str | None, Query(description="Only this field's versions.")] = None,
    active: Annotated[bool | None, Query(description="Only active (or inactive) ones.")] = None,
) -> ModelList:
    """Every trained model version with its headline metrics."""
    rows = _service(request).registry.list(field)
    if active is not None:
        rows = [r for r in rows if r["active"] == active]
    return ModelList(models=[ModelSummary(**summary(r)) for r in rows])


def _get(request: Request, model_id: int) -> dict[str, Any]:
    try:
        return _service(request).registry.get(model_id)
    except UnknownModelError as exc:
        raise Problem(404, f"model {model_id} does not exist", "unknown-model") from exc


@router.get(
    "/v1/models/{model_id:int}", response_model=ModelDetail, dependencies=[Depends(require("read"))]
)
def get_model(request: Request, model_id: ModelId) -> ModelDetail:
    """One model version: all of its evaluation metrics and parameters."""
    row = _get(request, model_id)
    return ModelDetail(**summary(row), metrics=row["metrics"], params=row["params"])


@router.post(
    "/v1/models/{model_id:int}/activate",
    response_model=ModelSummary,
    dependencies=[Depends(require("admin"))],
)
def activate_model(request: Request, model_id: ModelId) -> ModelSummary:
    """Make this version its field's active model; a job then labels the catalog with it."""
    _get(request, model_id)
    return ModelSummary(**summary(_service(request).activate(model_id)))


@router.post(
    "/v1/models/rollback",
    response_model=ModelSummary,
    responses=problems(404),
    dependencies=[Depends(require("admin"))],
)
def rollback_model(
    request: Request, field: Annotated[str, Query(min_length=1, description="The label field.")]
) -> ModelSummary:
    """Re-activate the field's previously active version (the catalog is labelled again)."""
    try:
        return ModelSummary(**summary(_service(request).rollback(field)))
    except UnknownModelError as exc:
        raise Problem(404, str(exc.args[0]), "no-model-to-roll-back-to") from exc


@router.post(
    "/v1/feedback",
    response_model=FeedbackOut,
    status_code=201,
    responses=problems(404),
    dependencies=[Depends(require("write"))],
)
async def feedback(request: Request, body: Feedback) -> FeedbackOut:
    """Record the correct value of a product's field; it wins at once and trains the next
    model (automatically after enough corrections, when configured)."""
    service = _service(request)
    try:
        saved = await run_in_threadpool(service.feedback, body.product_id, body.field, body.value)
    except UnknownProductError as exc:
        raise Problem(
            404, f"product {body.product_id!r} does not exist", "unknown-product"
        ) from exc
    except ValueError as exc:
        raise Problem(422, str(exc), "invalid-fields") from exc
    product = request.app.state.runtime.store.get_product(body.product_id) or {}
    categories = resolve_categories(product.get("attributes") or {}, product.get("label_rows", []))
    return FeedbackOut(**saved, categories=categories)
