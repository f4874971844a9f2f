"""The CNN's two background jobs: fine-tune it on the shop's photos, and switch the
running service to another version of it.

``finetune_cnn`` trains (:mod:`vitrine.jobs.finetune_catalog`), exports the network as a
new model version, re-embeds the catalog with it, builds its index beside the one in
service, and trains the classification heads on the new embeddings (inactive): the
service keeps serving the old version all along.

``switch_cnn`` puts a version in service in one step, without a restart:

1. every primary photo gets an embedding of that version (only those lacking one), and
   its vector index is built and saved beside the one in service;
2. each field with an active head gets a head trained on the new embeddings (the newest
   one already trained, else one trained now);
3. the switch itself, quick: the version is recorded in ``service_settings`` (which
   every process follows, and reads at start), the heads are activated, and this
   process swaps its CNN and its index at once (:meth:`Runtime.use_cnn`); the other
   processes swap within seconds;
4. photos added while 1-3 ran are embedded and indexed; the recommendation models are
   retrained on the new embeddings.

Switching back to the previous version is the same job with that version.
"""

from __future__ import annotations

import logging
from typing import Any

from vitrine.classify.finetune import FineTuneConfig, WholeNetConfig
from vitrine.classify.registry import model_summary
from vitrine.classify.trainer import TrainingError
from vitrine.cluster.job_queue import TRAIN_RECOMMENDATIONS, JobError, Progress
from vitrine.cluster.service_settings import CNN_VERSION
from vitrine.jobs.finetune_catalog import fine_tune_catalog, reembed_catalog
from vitrine.runtime import Runtime
from vitrine.webhooks.events import MODEL_ACTIVATED

log = logging.getLogger(__name__)


def finetune_config(params: dict[str, Any], runtime: Runtime) -> FineTuneConfig | WholeNetConfig:
    """The fine-tuning settings of a job's params (bad values raise ValueError)."""
    from vitrine.classify.finetune.network import check_trainable_blocks
    from vitrine.classify.finetune.whole import check_input_size
    from vitrine.classify.finetune.whole_training import resolve_device
    from vitrine.classify.service import train_config

    split = train_config(runtime.settings, min_support=params.get("min_support"))

    def given(name: str, default: Any) -> Any:
        value = params.get(name)
        return default if value is None else value

    budget = float(given("budget_minutes", 120.0)) * 60
    if budget <= 0:
        raise ValueError("budget_minutes must be positive")
    method = params.get("method") or "whole"
    common = {
        "budget_seconds": budget,
        "threads": runtime.settings.embedding_threads,
        "min_support": split.min_support,
        "holdout": split.holdout,
        "correction_weight": split.correction_weight,
    }
    if method == "whole":
        epochs = int(given("epochs", 4))
        if epochs < 1:
            raise ValueError("epochs must be at least 1")
        return WholeNetConfig(
            input_size=check_input_size(int(given("input_size", 128))),
            max_epochs=epochs,
            device=resolve_device(str(params.get("device") or "auto")),
            **common,
        )
    if method == "last-blocks":
        blocks = int(given("trainable_blocks", 2))
        return FineTuneConfig(trainable_blocks=check_trainable_blocks(blocks), **common)
    raise ValueError(f"method must be whole or last-blocks, not {method!r}")


def finetune_cnn(runtime: Runtime, params: dict[str, Any], progress: Progress) -> dict[str, Any]:
    """Fine-tune, export, re-embed and index, train heads (inactive); returns a summary."""
    fields = [str(f) for f in params.get("fields") or []]
    if not fields:
        raise JobError("name at least one field to fine-tune on")
    try:
        config = finetune_config(params, runtime)
    except ValueError as exc:
        raise JobError(str(exc)) from exc

    try:
        record = fine_tune_catalog(runtime, fields, config, _stage_reporter(progress))
        version = record["version"]
        reembedded = reembed_catalog(runtime, version, _stage_reporter(progress))
        progress.start("training heads on the new embeddings", len(fields))
        heads = runtime.classification_for(version).train(
            fields, activate="never", min_support=params.get("min_support")
        )
    except (TrainingError, ValueError) as exc:
        raise JobError(str(exc)) from exc
    return {
        "version": version,
        "method": record.get("method"),
        "input_size": record.get("input_size"),
        "device": record.get("device"),
        "train_seconds": record.get("train_seconds"),
        "stopped": record.get("stopped"),
        "products": record.get("products"),
        "evaluation_accuracy": record.get("metrics", {}).get("evaluation_accuracy"),
        "reembedded": reembedded.embedded,
        "unreadable_photos": len(reembedded.failed),
        "indexed": reembedded.indexed,
        "heads": [_head(r) for r in heads],
    }


def switch_cnn(runtime: Runtime, params: dict[str, Any], progress: Progress) -> dict[str, Any]:
    """Put the CNN ``params["version"]`` in service (see the module's steps)."""
    version = str(params.get("version") or "")
    previous = runtime.cnn_version
    try:
        runtime.check_cnn_version(version)
    except (ValueError, FileNotFoundError) as exc:
        raise JobError(str(exc)) from exc
    if version == previous:
        return {"version": version, "previous": previous, "changed": False}
    cnn = runtime.embedder_for(version)  # loaded once: re-embedding and the swap share it
    embedded = reembed_catalog(runtime, version, _stage_reporter(progress), cnn)
    progress.start("heads on the new embeddings")
    heads = _heads_for(runtime, version)
    progress.start("switching")
    runtime.service_settings.set(CNN_VERSION, version)
    classification = runtime.classification_for(None)
    for head in heads:
        classification.activate(head["id"])
    swap = runtime.use_cnn(version, cnn)
    late = reembed_catalog(runtime, version, embedder=cnn)  # what the old CNN embedded meanwhile
    if late.embedded and "search" in runtime.opened():
        runtime.search.reload(late.product_ids)
    runtime.jobs.submit(TRAIN_RECOMMENDATIONS, {"reason": f"CNN switched to {version}"})
    runtime.webhooks.publish(
        MODEL_ACTIVATED, {"kind": "cnn", "version": version, "previous": previous}
    )
    return {
        "version": version,
        "previous": previous,
        "changed": True,
        "reembedded": embedded.embedded + late.embedded,
        "unreadable_photos": len(embedded.failed),
        "indexed": embedded.indexed,
        "index": swap.get("index"),
        "heads": [_head(h) for h in heads],
    }


def _heads_for(runtime: Runtime, version: str) -> list[dict[str, Any]]:
    """For each field with an active head: the newest head trained on ``version``'s
    embeddings, trained now when there is none."""
    registry = runtime.classification.registry
    fields = sorted({m["field"] for m in registry.active()})
    newest: dict[str, dict[str, Any]] = {}
    for m in registry.list():  # by field, then id: the last one seen is the newest
        if m["field"] in fields and m["embedding_version"] == version:
            newest[m["field"]] = m
    missing = [f for f in fields if f not in newest]
    if missing:
        try:
            rows = runtime.classification_for(version).train(missing, activate="never")
        except TrainingError as exc:
            raise JobError(f"training heads on {version}: {exc}") from exc
        newest.update({r["field"]: r for r in rows})
    return [newest[f] for f in fields if f in newest]


def _head(row: dict[str, Any]) -> dict[str, Any]:
    summary = model_summary(row)
    keys = ("id", "field", "version", "active", "embedding_version", "accuracy")
    return {k: summary.get(k, row.get(k)) for k in keys}


def _stage_reporter(progress: Progress) -> Any:
    """(stage, done, total) callbacks as job progress."""
    state = {"stage": None, "done": 0}

    def report(stage: str, done: int, total: int) -> None:
        if stage != state["stage"]:
            progress.start(stage, total)
            state["stage"], state["done"] = stage, 0
        if done > state["done"]:
            progress.advance(done - state["done"])
            state["done"] = done

    return report
