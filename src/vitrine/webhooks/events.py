"""The events a webhook may subscribe to, and the shape of each one's ``data``.

Every delivery's body is one JSON object::

    {"id": "<event id>", "type": "<kind>", "created_at": "<ISO 8601, UTC>", "data": {...}}

``id`` is the same in every subscription's copy of one event (a receiver that got it
before may drop it). ``data`` by kind:

``product.labelled``
    Models labelled products: one event per batch written (a product added, a batch of an
    import, a chunk of the job that labels the whole catalog), never one per product.
    ``{"product_ids": [...], "count": n, "labels": {product_id: {field: {"value",
    "confidence", "needs_review", "model_version"}}}, "job_id": int | null}`` (the
    labelling job's id; null for labels written on arrival)
``product.corrected``
    A person set a field's value (the API's feedback, the admin's review).
    ``{"product_id", "field", "value", "source": "human"}``
``import.finished``
    A bulk import job ended (done or failed), with its report.
    ``{"job_id": "<import job id>", "status": "done" | "failed", "total", "processed",
    "imported", "skipped", "rejected", "error"}``
``model.activated``
    A classifier version went into service (training, activation, roll-back), or the
    service switched to another CNN.
    ``{"kind": "classifier", "models": [{"id", "field", "version"}]}`` or
    ``{"kind": "cnn", "version", "previous"}``
``recommendations.retrained``
    The recommendation models were trained again (one event per training data).
    ``{"customers", "events", "products", "algorithms": [...], "train_seconds"}``
``ping``
    Sent on demand to one subscription, whatever it subscribes to.
    ``{"subscription_id", "message"}``
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Protocol

PRODUCT_LABELLED = "product.labelled"
PRODUCT_CORRECTED = "product.corrected"
IMPORT_FINISHED = "import.finished"
MODEL_ACTIVATED = "model.activated"
RECOMMENDATIONS_RETRAINED = "recommendations.retrained"
PING = "ping"

# What a subscription may name (a ping goes to any subscription).
EVENT_KINDS = (
    PRODUCT_LABELLED,
    PRODUCT_CORRECTED,
    IMPORT_FINISHED,
    MODEL_ACTIVATED,
    RECOMMENDATIONS_RETRAINED,
)


class Publish(Protocol):
    """What a service is given to announce an event (``WebhookService.publish``):
    returns how many deliveries were queued."""

    def __call__(self, kind: str, data: Mapping[str, Any], event_id: str | None = None) -> int: ...


def labelled(rows: Iterable[Mapping[str, Any]], job_id: int | None = None) -> dict[str, Any]:
    """``product.labelled`` data of model label rows (product_id, field, value, ...)."""
    labels: dict[str, dict[str, Any]] = {}
    for row in rows:
        labels.setdefault(str(row["product_id"]), {})[str(row["field"])] = {
            "value": row.get("value"),
            "confidence": row.get("confidence"),
            "needs_review": bool(row.get("needs_review")),
            "model_version": row.get("model_version"),
        }
    ids = sorted(labels)
    return {"product_ids": ids, "count": len(ids), "labels": labels, "job_id": job_id}


def classifiers_activated(rows: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """``model.activated`` data of classifier model rows (id, field, version)."""
    models = [{"id": r["id"], "field": r["field"], "version": r["version"]} for r in rows]
    return {"kind": "classifier", "models": models}
