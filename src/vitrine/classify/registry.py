"""The model registry: every trained head with its metrics, one active version per field.

Rows live in the ``classifier_models`` table; the weights are a small ``.npz`` of plain
arrays in the blob store (no pickle, so loading a model never runs code). The blob store
rather than a local folder: it is the storage every API process already shares, so on a
scaled-out deployment (S3) each process loads the same weights the trainer wrote.
"""

from __future__ import annotations

import io
import uuid
from typing import Any

import numpy as np
from sqlalchemy import Engine, case, func, insert, select, update

from vitrine.catalog.blobs import BlobStore
from vitrine.catalog.models import ClassifierModel, utcnow
from vitrine.classify.fusion import Head, head_from_arrays


class UnknownModelError(KeyError):
    """No model with this id (or no active model for this field)."""


TAG_PREFIX = "tag:"  # fields of tag models (pattern, ...) as opposed to the shop's own fields


TABLE = ClassifierModel.__table__


def _row(row: Any) -> dict[str, Any]:
    return dict(row._mapping)


# The columns a model summary shows, in this order (the API's ModelSummary has the same fields).
SUMMARY_FIELDS = (
    "id",
    "field",
    "kind",
    "version",
    "active",
    "algorithm",
    "feature_groups",
    "embedding_version",
    "train_size",
    "validation_size",
    "corrections_used",
    "trigger",
    "accuracy",
    "macro_f1",
    "review_threshold",
    "comparison",
    "created_at",
    "activated_at",
)


def model_summary(row: dict[str, Any]) -> dict[str, Any]:
    """A registry row's headline: its columns, held-out accuracy, macro F1, review threshold."""
    overall = (row.get("metrics") or {}).get("all") or {}
    return {
        **{k: row[k] for k in SUMMARY_FIELDS if k in row},
        "accuracy": overall.get("accuracy"),
        "macro_f1": (overall.get("macro") or {}).get("f1"),
        "review_threshold": (row.get("params") or {}).get("threshold"),
    }


class ModelRegistry:
    """Trained classifier versions: metrics in the database, heads in the blob store."""

    def __init__(self, engine: Engine, blobs: BlobStore) -> None:
        self.engine = engine
        self.blobs = blobs

    # -- writing ----------------------------------------------------------------------

    def register(self, head: Head, **row: Any) -> dict[str, Any]:
        """Store a trained head (inactive); ``row`` holds the table's descriptive columns."""
        buffer = io.BytesIO()
        np.savez_compressed(buffer, **head.to_arrays())
        key = f"classifiers/{uuid.uuid4().hex}.npz"
        self.blobs.put(key, buffer.getvalue(), "application/octet-stream")
        with self.engine.begin() as conn:
            count = conn.scalar(select(func.count()).where(ClassifierModel.field == row["field"]))
            values = {
                "version": f"{row['field']}-v{int(count or 0) + 1}",
                "artifact_key": key,
                "active": False,
                "created_at": utcnow(),
                "algorithm": row.pop("algorithm", "unknown"),
                **row,
            }
            model_id = conn.execute(insert(ClassifierModel).values(**values)).inserted_primary_key[
                0
            ]
        return self.get(int(model_id))

    def set_comparison(self, model_id: int, comparison: dict[str, Any]) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                update(ClassifierModel)
                .where(ClassifierModel.id == model_id)
                .values(comparison=comparison)
            )

    def activate(self, model_id: int) -> dict[str, Any]:
        """Make a model its field's active version (the previous one stays, inactive)."""
        with self.engine.begin() as conn:
            field = conn.scalar(select(ClassifierModel.field).where(ClassifierModel.id == model_id))
            if field is None:
                raise UnknownModelError(model_id)
            conn.execute(
                update(ClassifierModel)
                .where(ClassifierModel.field == field, ClassifierModel.id != model_id)
                .values(active=False)
            )
            conn.execute(
                update(ClassifierModel)
                .where(ClassifierModel.id == model_id)
                .values(active=True, activated_at=utcnow())
            )
        return self.get(model_id)

    def rollback(self, field: str) -> dict[str, Any]:
        """Re-activate the newest older version (by id) that had been active before."""
        current = self.active_for(field)
        if current is None:
            raise UnknownModelError(f"no active model for field {field!r}")
        with self.engine.connect() as conn:
            previous = conn.execute(
                select(ClassifierModel.id)
                .where(
                    ClassifierModel.field == field,
                    ClassifierModel.id < current["id"],
                    ClassifierModel.activated_at.is_not(None),
                )
                .order_by(ClassifierModel.id.desc())
                .limit(1)
            ).scalar()
        if previous is None:
            raise UnknownModelError(
                f"field {field!r} has no earlier active version to roll back to"
            )
        return self.activate(int(previous))

    # -- reading ----------------------------------------------------------------------

    def get(self, model_id: int) -> dict[str, Any]:
        with self.engine.connect() as conn:
            row = conn.execute(select(TABLE).where(ClassifierModel.id == model_id)).first()
            if row is None:
                raise UnknownModelError(model_id)
            return _row(row)

    def list(self, field: str | None = None) -> list[dict[str, Any]]:
        query = select(TABLE).order_by(ClassifierModel.field, ClassifierModel.id)
        if field is not None:
            query = query.where(ClassifierModel.field == field)
        with self.engine.connect() as conn:
            return [_row(m) for m in conn.execute(query)]

    def active(self) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            query = (
                select(ClassifierModel)
                .where(ClassifierModel.active)
                .order_by(ClassifierModel.field)
            )
            return [_row(m) for m in conn.execute(query)]

    def active_for(self, field: str) -> dict[str, Any] | None:
        return next((m for m in self.active() if m["field"] == field), None)

    def generation(self) -> tuple[Any, ...]:
        """Changes whenever a model is added, activated or deactivated (cache key)."""
        with self.engine.connect() as conn:
            return tuple(
                conn.execute(
                    select(
                        func.count(ClassifierModel.id),
                        func.max(ClassifierModel.id),
                        func.max(ClassifierModel.activated_at),
                        func.sum(case((ClassifierModel.active, ClassifierModel.id), else_=0)),
                    )
                ).one()
            )

    def load_head(self, model: dict[str, Any]) -> Head:
        with np.load(io.BytesIO(self.blobs.get(model["artifact_key"])), allow_pickle=False) as data:
            return head_from_arrays({k: data[k] for k in data.files})
