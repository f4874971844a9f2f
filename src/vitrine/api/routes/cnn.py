"""/v1/cnn: the CNN versions, fine-tuning the CNN on the shop's photos, and switching the
running service to another version."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, Field

from vitrine.accounts.keys import KeyInfo
from vitrine.api.auth import require
from vitrine.api.openapi import problems
from vitrine.api.problems import Problem
from vitrine.api.schemas import FieldName, Job, NotBoolean, job_body
from vitrine.classify.cnn_service import CnnService, UnknownCnnVersion

router = APIRouter(tags=["classification"])
Version = Annotated[str, Field(min_length=1, max_length=160, pattern=r"^[A-Za-z0-9._-]+$")]


class CnnVersion(BaseModel):
    """A fine-tuned CNN version with how it was trained and its held-out accuracy."""

    version: str
    base_version: str | None = None
    created_at: str | None = None
    method: str | None = None
    input_size: int | None = None
    device: str | None = None
    train_seconds: float | None = None
    stopped: str | None = None
    products: int | None = None
    fields: list[str]
    evaluation_accuracy: dict[str, float]
    in_service: bool


class CnnVersions(BaseModel):
    """The version in service and the fine-tuned versions, newest first."""

    in_service: str
    versions: list[CnnVersion]


class FineTuneCnn(BaseModel):
    """Fine-tune the CNN on every labelled product's photo, all fields at once."""

    fields: list[FieldName] = Field(min_length=1, max_length=16)
    method: Literal["whole", "last-blocks"] = "whole"
    device: Literal["auto", "cpu", "cuda"] = "auto"
    input_size: Annotated[
        int,
        Field(
            ge=56,
            le=224,
            description="the network's input side (the prepared 224x224 photo is area-resized)",
        ),
        NotBoolean,
    ] = 128
    epochs: Annotated[int, Field(ge=1, le=50), NotBoolean] = 4
    budget_minutes: Annotated[float, Field(gt=0, le=7 * 24 * 60), NotBoolean] = 120.0
    min_support: Annotated[int, Field(ge=1, le=100_000), NotBoolean] | None = None


class SwitchCnn(BaseModel):
    """Put a CNN version in service, live."""

    version: Version


def _cnn(request: Request) -> CnnService:
    return request.app.state.runtime.cnn


def _by(key: KeyInfo) -> str:
    return f"api key {key.name}"[:64]


@router.get("/v1/cnn", response_model=CnnVersions, dependencies=[Depends(require("read"))])
def list_cnn_versions(request: Request) -> CnnVersions:
    """The CNN version in service and every fine-tuned version."""
    return CnnVersions(**_cnn(request).versions())


@router.post("/v1/cnn/finetune", status_code=202, response_model=Job)
def finetune_cnn(
    request: Request, body: FineTuneCnn, key: Annotated[KeyInfo, Depends(require("admin"))]
) -> Job:
    """Queue fine-tuning: the new version is exported, the catalog re-embedded and indexed
    with it and heads trained on it, all beside the version in service (nothing changes
    for shoppers until a switch)."""
    return job_body(_cnn(request).finetune(body.model_dump(exclude_none=True), _by(key)))


@router.post("/v1/cnn/switch", status_code=202, response_model=Job, responses=problems(404))
def switch_cnn(
    request: Request, body: SwitchCnn, key: Annotated[KeyInfo, Depends(require("admin"))]
) -> Job:
    """Queue the live switch to a CNN version: re-embed what lacks that version, build its
    index beside the one in service, then swap the CNN, the index and the heads at once in
    every process, without a restart."""
    try:
        return job_body(_cnn(request).switch(body.version, _by(key)))
    except UnknownCnnVersion as exc:
        raise Problem(404, str(exc), "unknown-cnn-version") from exc
