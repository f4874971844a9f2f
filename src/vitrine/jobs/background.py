"""The kinds of background job and what each runs: label the catalog, train the shop's
classifiers, train the recommendation models, evaluate them offline, fine-tune the CNN,
switch the service to another CNN, and train the localiser of products in real photos.

Each handler takes the job's params and a :class:`~vitrine.cluster.job_queue.Progress`,
and returns the result that the job's row keeps (shown by the API, the admin UI and
``vitrine jobs``). Bad params raise :class:`~vitrine.cluster.job_queue.JobError` with a
message for the person who queued the job.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from vitrine.classify.catalog_labels import CatalogLabeller
from vitrine.classify.registry import model_summary
from vitrine.classify.trainer import TrainingError
from vitrine.cluster.job_queue import (
    EVALUATE_RECOMMENDATIONS,
    FINETUNE_CNN,
    LABEL_CATALOG,
    SWITCH_CNN,
    TRAIN_CLASSIFIER,
    TRAIN_LOCALIZER,
    TRAIN_RECOMMENDATIONS,
    Handler,
    JobError,
    Progress,
)
from vitrine.jobs.cnn_jobs import finetune_cnn, switch_cnn
from vitrine.jobs.localizer_jobs import train_localizer
from vitrine.runtime import Runtime


def _stored(summary: dict[str, Any]) -> dict[str, Any]:
    """A model summary as a job's JSON result keeps it (its times as ISO 8601 text)."""
    return {k: v.isoformat() if isinstance(v, datetime) else v for k, v in summary.items()}


def job_handlers(runtime: Runtime) -> dict[str, Handler]:
    """Every kind of job, run over this runtime's services."""

    def label_catalog(params: dict[str, Any], progress: Progress) -> dict[str, Any]:
        service = runtime.classification
        labeller = CatalogLabeller(
            runtime.store,
            service.predictor,
            lambda: service.embedding_version,
            runtime.webhooks.publish,
            progress.job_id,
        )
        return labeller.label(
            params.get("fields"),
            relabel=bool(params.get("relabel")),
            start=progress.start,
            advance=progress.advance,
        )

    def train_classifier(params: dict[str, Any], progress: Progress) -> dict[str, Any]:
        fields = [str(f) for f in params.get("fields") or []]
        if not fields:
            raise JobError("name at least one field to train")
        progress.start(f"training {', '.join(fields)}", len(fields))
        groups = params.get("groups")
        try:
            rows = runtime.classification.train(
                fields,
                activate=str(params.get("activate") or "if-better"),
                trigger=str(params.get("trigger") or "manual"),
                groups=groups.split("+") if isinstance(groups, str) and groups else None,
                min_support=params.get("min_support"),
            )
        except TrainingError as exc:
            raise JobError(str(exc)) from exc
        progress.advance(len(fields))
        return {"models": [_stored(model_summary(r)) for r in rows]}

    def train_recommendations(params: dict[str, Any], progress: Progress) -> dict[str, Any]:
        progress.start("training every strategy's models")
        models = runtime.recommendations.train_separately()
        return {
            "trained": models.train_seconds,
            "customers": models.data.n_users,
            "events": len(models.data.ev_day),
            "products": models.data.n_catalog,
        }

    def evaluate_recommendations(params: dict[str, Any], progress: Progress) -> dict[str, Any]:
        try:
            split = datetime.fromisoformat(str(params["split"]))
        except (KeyError, ValueError) as exc:
            raise JobError("split must be a date, e.g. 2020-06-01") from exc
        if split.tzinfo is None:
            split = split.replace(tzinfo=UTC)
        progress.start("evaluating")
        try:
            run = runtime.recommendations.evaluate(
                split,
                k=int(params.get("k") or 12),
                algorithms=params.get("algorithms") or None,
                test_days=params.get("test_days"),
                progress=lambda message: progress.start(message[:120]),
            )
        except ValueError as exc:
            raise JobError(str(exc)) from exc
        run.pop("_results", None)  # the Result objects (for the command line) are not JSON
        return run

    return {
        LABEL_CATALOG: label_catalog,
        TRAIN_CLASSIFIER: train_classifier,
        TRAIN_RECOMMENDATIONS: train_recommendations,
        EVALUATE_RECOMMENDATIONS: evaluate_recommendations,
        FINETUNE_CNN: lambda params, progress: finetune_cnn(runtime, params, progress),
        SWITCH_CNN: lambda params, progress: switch_cnn(runtime, params, progress),
        TRAIN_LOCALIZER: lambda params, progress: train_localizer(runtime, params, progress),
    }
