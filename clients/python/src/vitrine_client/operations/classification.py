"""Classification: model versions, corrections (feedback), training and labelling jobs,
the CNN's fine-tuned versions; and the background jobs behind all of them."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from vitrine_client.calls import Call, present
from vitrine_client.models import (
    CnnVersions,
    FeedbackSaved,
    Job,
    JobKind,
    JobList,
    ModelDetail,
    ModelList,
    ModelSummary,
)
from vitrine_client.operation import operation


class ClassificationOperations:
    """/v1/models, /v1/feedback, /v1/cnn and /v1/jobs."""

    @operation("GET", "/v1/models")
    def list_models(*, field: str | None = None, active: bool | None = None) -> Call[ModelList]:
        """Every trained model version with its headline metrics."""
        return Call(ModelList, query={"field": field, "active": active})

    @operation("GET", "/v1/models/{model_id}")
    def get_model(model_id: int) -> Call[ModelDetail]:
        """One model version with all its evaluation metrics and parameters."""
        return Call(ModelDetail, path={"model_id": model_id})

    @operation("POST", "/v1/models/{model_id}/activate")
    def activate_model(model_id: int) -> Call[ModelSummary]:
        """Make this version its field's active model (admin)."""
        return Call(ModelSummary, path={"model_id": model_id})

    @operation("POST", "/v1/models/rollback")
    def rollback_model(field: str) -> Call[ModelSummary]:
        """Re-activate the field's previously active version (admin)."""
        return Call(ModelSummary, query={"field": field})

    @operation("POST", "/v1/models/train")
    def train_classifier(
        fields: Sequence[str],
        *,
        activate: Literal["if-better", "always", "never"] | None = None,
        groups: str | None = None,
        min_support: int | None = None,
    ) -> Call[Job]:
        """Queue training one head per field (admin)."""
        body = present(
            fields=list(fields), activate=activate, groups=groups, min_support=min_support
        )
        return Call(Job, json=body)

    @operation("POST", "/v1/models/label-catalog")
    def label_catalog(
        *, fields: Sequence[str] | None = None, relabel: bool | None = None
    ) -> Call[Job]:
        """Queue labelling every product without a value of its own (admin)."""
        body = present(fields=list(fields) if fields is not None else None, relabel=relabel)
        return Call(Job, json=body)

    @operation("POST", "/v1/feedback")
    def send_feedback(product_id: str, field: str, value: str) -> Call[FeedbackSaved]:
        """Record the correct value of a product's label field; it wins at once."""
        body = {"product_id": product_id, "field": field, "value": value}
        return Call(FeedbackSaved, json=body)

    # -- the CNN -------------------------------------------------------------------------

    @operation("GET", "/v1/cnn")
    def list_cnn_versions() -> Call[CnnVersions]:
        """The CNN version in service and every fine-tuned version."""
        return Call(CnnVersions)

    @operation("POST", "/v1/cnn/finetune")
    def finetune_cnn(
        fields: Sequence[str],
        *,
        method: Literal["whole", "last-blocks"] | None = None,
        device: Literal["auto", "cpu", "cuda"] | None = None,
        input_size: int | None = None,
        epochs: int | None = None,
        budget_minutes: float | None = None,
        min_support: int | None = None,
    ) -> Call[Job]:
        """Queue fine-tuning the CNN on the labelled products' photos (admin)."""
        body = present(
            fields=list(fields),
            method=method,
            device=device,
            input_size=input_size,
            epochs=epochs,
            budget_minutes=budget_minutes,
            min_support=min_support,
        )
        return Call(Job, json=body)

    @operation("POST", "/v1/cnn/switch")
    def switch_cnn(version: str) -> Call[Job]:
        """Queue the live switch to a CNN version (admin)."""
        return Call(Job, json={"version": version})

    # -- jobs ----------------------------------------------------------------------------

    @operation("GET", "/v1/jobs")
    def list_jobs(*, kind: JobKind | None = None, limit: int | None = None) -> Call[JobList]:
        """The latest background jobs, newest first."""
        return Call(JobList, query={"kind": kind, "limit": limit})

    @operation("GET", "/v1/jobs/{job_id}")
    def get_job(job_id: int) -> Call[Job]:
        """One job: its stage, progress and result."""
        return Call(Job, path={"job_id": job_id})

    @operation("POST", "/v1/jobs/{job_id}/cancel")
    def cancel_job(job_id: int) -> Call[Job]:
        """Cancel a queued job, or ask a running one to stop (admin)."""
        return Call(Job, path={"job_id": job_id})
