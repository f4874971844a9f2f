"""/v1/jobs: background jobs with their stage and progress; queueing the jobs that train
classifiers, label the catalog and evaluate recommendations."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Path, Query, Request
from pydantic import BaseModel, Field

from vitrine.accounts.keys import KeyInfo
from vitrine.api.auth import require
from vitrine.api.openapi import DateParam, problems
from vitrine.api.problems import Problem
from vitrine.api.schemas import FieldName, Job, JobKind, JobList, NotBoolean, job_body
from vitrine.cluster.job_queue import (
    EVALUATE_RECOMMENDATIONS,
    TRAIN_CLASSIFIER,
    JobQueue,
)

router = APIRouter(tags=["jobs"])
JobId = Annotated[int, Path(ge=1, le=2**63 - 1, description="The job's id.")]


class TrainClassifier(BaseModel):
    """Train one head per field on the stored features (a hierarchy's fields together)."""

    fields: list[FieldName] = Field(min_length=1, max_length=32)
    activate: Literal["if-better", "always", "never"] = "if-better"
    groups: str | None = Field(
        default=None, max_length=200, description="feature groups, e.g. embedding+color"
    )
    min_support: Annotated[int, Field(ge=1, le=100_000), NotBoolean] | None = None


class LabelCatalog(BaseModel):
    """Label every product without a value of its own with the active models."""

    fields: list[FieldName] | None = Field(default=None, max_length=64)
    relabel: bool = Field(
        default=False,
        strict=True,
        description="label again what the active version labelled already",
    )


class EvaluateRecommendations(BaseModel):
    """Offline evaluation on the shop's own log, split in time."""

    split: DateParam = Field(description="the first day of the test period")
    k: Annotated[int, Field(ge=1, le=100), NotBoolean] = 12
    algorithms: list[Annotated[str, Field(min_length=1, max_length=64)]] | None = Field(
        default=None, max_length=20
    )
    test_days: Annotated[float, Field(gt=0, le=3650), NotBoolean] | None = None


def jobs(request: Request) -> JobQueue:
    return request.app.state.runtime.jobs


Jobs = Annotated[JobQueue, Depends(jobs)]


def _by(key: KeyInfo) -> str:
    return f"api key {key.name}"[:64]


@router.get("/v1/jobs", response_model=JobList, dependencies=[Depends(require("read"))])
def list_jobs(
    queue: Jobs,
    kind: Annotated[JobKind | None, Query(description="Only this kind.")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> JobList:
    """The latest jobs, newest first."""
    return JobList(jobs=[job_body(j) for j in queue.latest(limit, (kind,) if kind else ())])


@router.get(
    "/v1/jobs/{job_id}",
    response_model=Job,
    responses=problems(404),
    dependencies=[Depends(require("read"))],
)
def get_job(queue: Jobs, job_id: JobId) -> Job:
    """One job: its stage, progress and result."""
    row = queue.get(job_id)
    if row is None:
        raise Problem(404, f"job {job_id} does not exist", "unknown-job")
    return job_body(row)


@router.post(
    "/v1/jobs/{job_id}/cancel",
    response_model=Job,
    responses=problems(404),
    dependencies=[Depends(require("admin"))],
)
def cancel_job(queue: Jobs, job_id: JobId) -> Job:
    """Cancel a queued job at once, or ask a running one to stop at its next step."""
    if queue.cancel(job_id) is None:
        raise Problem(404, f"job {job_id} does not exist", "unknown-job")
    row = queue.get(job_id)
    assert row is not None
    return job_body(row)


@router.post("/v1/models/train", status_code=202, response_model=Job, tags=["classification"])
def train_classifier(
    queue: Jobs, body: TrainClassifier, key: Annotated[KeyInfo, Depends(require("admin"))]
) -> Job:
    """Queue a training run; an activated model then labels the catalog (another job)."""
    params = body.model_dump(exclude_none=True)
    return job_body(queue.submit(TRAIN_CLASSIFIER, params, _by(key)))


@router.post(
    "/v1/models/label-catalog", status_code=202, response_model=Job, tags=["classification"]
)
def label_catalog(
    request: Request, body: LabelCatalog, key: Annotated[KeyInfo, Depends(require("admin"))]
) -> Job:
    """Queue the job that labels every product the shop left without a value."""
    runtime = request.app.state.runtime
    return job_body(runtime.label_catalog(body.fields, body.relabel))


@router.post(
    "/v1/recommendations/evaluations",
    status_code=202,
    response_model=Job,
    tags=["recommendations"],
)
def evaluate_recommendations(
    queue: Jobs,
    body: EvaluateRecommendations,
    key: Annotated[KeyInfo, Depends(require("admin"))],
) -> Job:
    """Queue an offline evaluation of every algorithm (or the named ones); the stored
    result shows in ``GET /v1/recommendations/evaluations`` and the admin UI."""
    params = body.model_dump(mode="json", exclude_none=True)
    return job_body(queue.submit(EVALUATE_RECOMMENDATIONS, params, _by(key)))
