"""Classification in the running service: label on arrival, corrections, training, retraining.

Active models are cached and reloaded when the registry changes (checked at most every
``RELOAD_SECONDS``, so several processes converge quickly). Training runs one at a time;
the background retrainer starts a run when a field has collected enough corrections
or its schedule is due, and the run activates the new models only when they are not worse.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from vitrine.catalog.models import as_utc
from vitrine.catalog.store import HUMAN, MODEL, CatalogStore
from vitrine.classify.dataset import clean_value
from vitrine.classify.features import FeatureBlocks, blocks_from_analyses
from vitrine.classify.label_export import csv_chunks
from vitrine.classify.labels import color_tags
from vitrine.classify.predictor import FieldModel, FieldPredictions, Predictor
from vitrine.classify.registry import TAG_PREFIX, ModelRegistry
from vitrine.classify.trainer import TrainConfig, train_and_register
from vitrine.config import Settings
from vitrine.vision.analyzer import ImageAnalysis
from vitrine.webhooks.events import (
    MODEL_ACTIVATED,
    PRODUCT_CORRECTED,
    PRODUCT_LABELLED,
    Publish,
    classifiers_activated,
    labelled,
)
from vitrine.worker import BackgroundWorker

log = logging.getLogger(__name__)
RELOAD_SECONDS = 2.0


class UnknownProductError(KeyError):
    """Feedback for a product that does not exist."""


def train_config(settings: Settings, **overrides: Any) -> TrainConfig:
    """The training set-up from the settings, with ``overrides`` (None values ignored)."""
    s = settings
    values: dict[str, Any] = {
        "min_support": s.classify_min_support,
        "rare_policy": s.classify_rare_policy,
        "holdout": s.classify_holdout,
        "review_precision": s.classify_review_precision,
        "correction_weight": s.classify_correction_weight,
        "activation_tolerance": s.classify_activation_tolerance,
        "groups": [g for g in s.classify_feature_groups.split("+") if g] or None,
        "text": s.classify_text,
    }
    values.update({k: v for k, v in overrides.items() if v is not None})
    return TrainConfig(**values)


def label_rows(
    predictions: dict[str, FieldPredictions],
    ids: Sequence[str],
    wanted: dict[str, set[str]],
) -> list[dict[str, Any]]:
    """Model label rows of these predictions, for the fields ``wanted`` of each product."""
    rows = []
    for f, pred in predictions.items():
        for i, pid in enumerate(ids):
            if f in wanted.get(pid, ()):
                rows.append(
                    {
                        "product_id": pid,
                        "field": f,
                        "value": pred.label_value(i),
                        "source": MODEL,
                        "confidence": round(float(pred.confidence[i]), 4),
                        "model_version": pred.version,
                        "needs_review": bool(pred.needs_review[i]),
                    }
                )
    return rows


class ClassificationService:
    """The shop's classifiers in service: predictions, corrections, (re)training.

    ``embedding_version`` names the CNN whose stored embeddings the models read, or is a
    function that tells it (so that the CNN loads only when a model is used).
    """

    def __init__(
        self,
        settings: Settings,
        store: CatalogStore,
        registry: ModelRegistry,
        embedding_version: str | Callable[[], str],
        publish: Publish | None = None,
    ) -> None:
        self.settings = settings
        # Announces labels written, corrections and activations (webhooks).
        self._publish = publish
        self.store = store
        self._embedding_version = embedding_version
        self.registry = registry
        self._lock = threading.Lock()
        self._train_lock = threading.Lock()
        self._predictor: Predictor | None = None
        self._generation: tuple[Any, ...] | None = None
        self._checked = 0.0
        # Called with the fields whose active model changed (training, activation,
        # roll-back): the composition root queues the job that labels the catalog.
        self.on_activated: Callable[[list[str]], None] | None = None
        self._retrainer = BackgroundWorker(
            "vitrine-retrain",
            self._retrain_round,
            interval=settings.classify_retrain_check_seconds,
            wait_first=True,
            join_timeout=30,
        )

    @property
    def embedding_version(self) -> str:
        """The CNN version whose stored embeddings the models read (loads the model)."""
        version = self._embedding_version
        return version if isinstance(version, str) else version()

    # -- serving ----------------------------------------------------------------------

    def predictor(self) -> Predictor | None:
        """The active models (None when there are none), reloaded when they change."""
        now = time.monotonic()
        with self._lock:
            if now - self._checked < RELOAD_SECONDS and self._generation is not None:
                return self._predictor
            self._checked = now
            # The CNN in service is part of the key: a live switch changes which heads apply.
            generation = (*self.registry.generation(), self.embedding_version)
            if generation != self._generation:
                self._predictor = self._load()
                self._generation = generation
            return self._predictor

    def _load(self) -> Predictor | None:
        version = self.embedding_version
        models = []
        for row in self.registry.active():
            if row["embedding_version"] != version:
                log.warning(
                    "model %s was trained on embeddings %s, not %s: not used",
                    row["version"],
                    row["embedding_version"],
                    version,
                )
                continue
            head = self.registry.load_head(row)
            models.append(FieldModel.from_params(row["field"], head, row["params"], row["version"]))
        return Predictor(models) if models else None

    def predict(self, features: FeatureBlocks) -> list[dict[str, dict[str, Any]]]:
        """Per product: field -> prediction (value, confidence, needs_review, ...)."""
        predictor = self.predictor()
        if predictor is None or len(features) == 0:
            return [{} for _ in features.ids]
        by_field = predictor.predict(features)
        return [{f: p.row(i) for f, p in by_field.items()} for i in range(len(features))]

    def describe(self, analysis: ImageAnalysis, text: str | None = None) -> dict[str, Any]:
        """Categories and tags of one analysed photo (``/v1/analyze``, ``vitrine analyze``),
        read with the product's ``text`` (title, description) when given."""
        prediction = self.predict(blocks_from_analyses(["<photo>"], [analysis], [text]))[0]
        categories = {f: p for f, p in prediction.items() if not f.startswith(TAG_PREFIX)}
        tags: dict[str, Any] = {
            "colors": color_tags(analysis.prepared.features.summary()),
            "imagenet": [
                {"name": lb.name, "confidence": round(lb.confidence, 4)} for lb in analysis.labels
            ],
        }
        tags.update(
            {f[len(TAG_PREFIX) :]: p for f, p in prediction.items() if f.startswith(TAG_PREFIX)}
        )
        return {"categories": categories, "tags": tags}

    def label_products(self, features: FeatureBlocks) -> int:
        """Store model labels for freshly analysed products; returns how many were written."""
        predictor = self.predictor()
        if predictor is None or len(features) == 0:
            return 0
        wanted = {pid: set(predictor.fields) for pid in features.ids}
        rows = label_rows(predictor.predict(features), features.ids, wanted)
        self.store.upsert_labels(rows)
        if rows and self._publish is not None:  # one event per batch written
            self._publish(PRODUCT_LABELLED, labelled(rows))
        return len(rows)

    def label_analyses(
        self,
        ids: Sequence[str],
        analyses: Sequence[ImageAnalysis],
        texts: Sequence[str | None] | None = None,
    ) -> int:
        """Label freshly analysed products by their photo (and title and description)."""
        if self.predictor() is None or not ids:
            return 0
        return self.label_products(blocks_from_analyses(ids, analyses, texts))

    # -- corrections ------------------------------------------------------------------

    def feedback(self, product_id: str, field: str, value: Any) -> dict[str, Any]:
        """Record a person's correct value of a field; it wins at once and trains next."""
        field = (field or "").strip()
        if not field or len(field) > 128:
            raise ValueError("a label field is 1 to 128 characters")
        text = clean_value(value)
        if text is None or len(text) > 256:
            raise ValueError("a label value is 1 to 256 characters of text")
        if self.store.get_product(product_id) is None:
            raise UnknownProductError(product_id)
        correction = {"product_id": product_id, "field": field, "value": text, "source": HUMAN}
        self.store.upsert_labels([correction])
        if self._publish is not None:
            self._publish(PRODUCT_CORRECTED, correction)
        return correction

    def labels_csv(self, fields: Sequence[str] | None = None) -> Iterator[str]:
        """Every product's labels (value, source, confidence, review flag) as CSV text in
        chunks (the admin's download; `vitrine export-labels` writes the same)."""
        return csv_chunks(self.store, self.registry, fields)

    def corrections_since(self, field: str, since: datetime | None) -> int:
        rows = self.store.labels(fields=[field], source=HUMAN, since=since)
        return len(rows)

    # -- training ---------------------------------------------------------------------

    def train(
        self,
        fields: Sequence[str],
        *,
        trigger: str = "manual",
        activate: str = "if-better",
        **overrides: Any,
    ) -> list[dict[str, Any]]:
        with self._train_lock:
            rows = train_and_register(
                self.store,
                self.registry,
                fields,
                self.embedding_version,
                train_config(self.settings, **overrides),
                trigger=trigger,
                activate=activate,
            )
        self._checked = 0.0  # pick the new models up at once
        self._activated([r for r in rows if r.get("active")])
        return rows

    def activate(self, model_id: int) -> dict[str, Any]:
        """Make a version its field's active model (the catalog is labelled with it)."""
        row = self.registry.activate(model_id)
        self._checked = 0.0
        self._activated([row])
        return row

    def rollback(self, field: str) -> dict[str, Any]:
        """Re-activate the field's previously active version."""
        row = self.registry.rollback(field)
        self._checked = 0.0
        self._activated([row])
        return row

    def _activated(self, rows: list[dict[str, Any]]) -> None:
        if not rows:
            return
        if self.on_activated is not None:
            self.on_activated(sorted({r["field"] for r in rows}))
        if self._publish is not None:
            self._publish(MODEL_ACTIVATED, classifiers_activated(rows))

    def due_for_retraining(self, now: datetime | None = None) -> list[list[str]]:
        """Groups of fields to retrain together (a hierarchy's fields go together)."""
        s = self.settings
        now = now or datetime.now(UTC)
        active = [m for m in self.registry.active() if not m["field"].startswith(TAG_PREFIX)]
        due: set[str] = set()
        for model in active:
            # Since the field's last run, kept or not (a rejected run must not loop).
            trained_at = max(
                (as_utc(m["created_at"]) for m in self.registry.list(model["field"])),
                key=lambda t: t or datetime.min.replace(tzinfo=UTC),
            )
            corrections = self.corrections_since(model["field"], trained_at)
            by_count = 0 < s.classify_retrain_after <= corrections
            by_schedule = (
                s.classify_retrain_interval_hours > 0
                and trained_at is not None
                and now - trained_at >= timedelta(hours=s.classify_retrain_interval_hours)
            )
            if by_count or by_schedule:
                due.add(model["field"])
        groups: list[list[str]] = []
        for model in active:
            if model["field"] not in due or any(model["field"] in g for g in groups):
                continue
            hierarchy = (model["params"] or {}).get("hierarchy")
            members = hierarchy["fields"] if hierarchy else [model["field"]]
            groups.append([f for f in members if any(m["field"] == f for m in active)])
        return groups

    def retrain_due(self) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = []
        for fields in self.due_for_retraining():
            log.info("retraining %s in the background", ",".join(fields))
            rows += self.train(fields, trigger="auto")
        return rows

    def _retrain_round(self) -> None:
        self.retrain_due()

    def start(self) -> None:
        """Start the background retrainer (when retraining is configured)."""
        s = self.settings
        if s.classify_retrain_after <= 0 and s.classify_retrain_interval_hours <= 0:
            return
        self._retrainer.start()

    def stop(self) -> None:
        self._retrainer.stop()
