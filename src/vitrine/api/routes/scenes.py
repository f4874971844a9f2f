"""/v1/search/scene (the products in a real photo, each with its matches) and
/v1/localizer (the trained localiser behind it, and the job that trains one)."""

from __future__ import annotations

import json
import time
from typing import Annotated, Any

from fastapi import APIRouter, Depends, File, Form, Request, Response, UploadFile
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from vitrine.accounts.keys import KeyInfo
from vitrine.api.auth import require
from vitrine.api.openapi import UPLOAD_IMAGE_TYPES, UPLOAD_PROBLEMS, form_parts, problems
from vitrine.api.problems import Problem, image_problem
from vitrine.api.routes.products import read_uploads
from vitrine.api.schemas import Job, NotBoolean, job_body
from vitrine.cluster.job_queue import TRAIN_LOCALIZER
from vitrine.index.scene_search import LocalizerNotTrained, scene_json
from vitrine.vision.decode import ImageDecodeError

router = APIRouter(tags=["search"])


class SceneMatch(BaseModel):
    id: str
    score: float
    title: str | None = None
    attributes: dict[str, Any] = {}


class SceneObjectOut(BaseModel):
    """A product found in the photo: its box ``[x0, y0, x1, y1]`` in the photo's pixels,
    the localiser's score (0..1), the shop classifier's category (null without one) and
    its catalog matches, best first."""

    box: list[int] = Field(min_length=4, max_length=4)
    score: float
    category: str | None
    results: list[SceneMatch]


class SceneResults(BaseModel):
    objects: list[SceneObjectOut]
    took_ms: float


class LocalizerStatus(BaseModel):
    """The localiser in use (null: none trained yet) with its held-out evaluation."""

    trained: bool
    version: str | None = None
    trained_at: str | None = None
    catalog_products: int | None = None
    cutouts: int | None = None
    scenes: int | None = None
    train_seconds: float | None = None
    evaluation: dict[str, float] = {}


class TrainLocalizer(BaseModel):
    """How many catalog photos to cut products out of, and how many scenes to compose."""

    products: Annotated[int, Field(ge=20, le=100_000), NotBoolean] = 1500
    scenes: Annotated[int, Field(ge=50, le=20_000), NotBoolean] = 600


@router.post(
    "/v1/search/scene",
    response_model=SceneResults,
    responses={**problems(409), **UPLOAD_PROBLEMS},
    openapi_extra=form_parts(image=UPLOAD_IMAGE_TYPES),
    dependencies=[Depends(require("read", storefront=True))],
)
async def search_scene(
    request: Request,
    image: Annotated[UploadFile, File(description="A real photo: a snapshot, a post.")],
    k: Annotated[int, Form(ge=1, le=100)] = 10,
    filter: Annotated[list[str] | None, Form(description="field=value; repeatable")] = None,
) -> Response:
    """The products in a photo, best first, each with its box and its top-k catalog
    matches. No product found is an empty list; 409 until a localiser is trained."""
    started = time.perf_counter()
    vitrine = request.app.state.runtime
    upload = (await read_uploads(request, [image]))[0]
    try:
        objects = await run_in_threadpool(
            vitrine.scene_search, upload.data, upload.filename or "photo", k, filter
        )
    except ImageDecodeError as exc:
        raise image_problem(exc) from exc
    except LocalizerNotTrained as exc:
        raise Problem(409, str(exc), "localizer-not-trained") from exc
    except ValueError as exc:
        raise Problem(422, str(exc), "invalid-filter") from exc
    request.app.state.metrics.images.inc()
    took = round((time.perf_counter() - started) * 1000, 2)
    body = {"objects": scene_json(objects, vitrine.search.describe), "took_ms": took}
    return Response(json.dumps(body, separators=(",", ":")), media_type="application/json")


@router.get(
    "/v1/localizer", response_model=LocalizerStatus, dependencies=[Depends(require("read"))]
)
def localizer_status(request: Request) -> LocalizerStatus:
    """The localiser that finds products in real photos, and how well it did on held-out
    products composed on held-out backgrounds."""
    record = request.app.state.runtime.finder.record()
    return LocalizerStatus(trained=record is not None, **(record or {}))


@router.post("/v1/localizer/train", status_code=202, response_model=Job)
def train_localizer(
    request: Request,
    key: Annotated[KeyInfo, Depends(require("admin"))],
    body: TrainLocalizer | None = None,
) -> Job:
    """Queue the training of a localiser on scenes composed of the catalog's own photos."""
    params = (body or TrainLocalizer()).model_dump()
    jobs = request.app.state.runtime.jobs
    return job_body(jobs.submit(TRAIN_LOCALIZER, params, f"api key {key.name}"[:64]))
