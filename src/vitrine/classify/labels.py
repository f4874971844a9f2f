"""What a product's label fields and tags say, with human labels winning over models.

For each field the value comes from, in order: a human correction (a ``human`` label),
the shop's own attribute, the model's prediction. Tags (fields prefixed ``tag:``) come
from tag models; named colours and ImageNet labels come from the stored photo features.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from vitrine.catalog.store import HUMAN, MODEL
from vitrine.classify.dataset import clean_value
from vitrine.classify.predictor import OTHER
from vitrine.classify.registry import TAG_PREFIX


def _model_entry(row: Mapping[str, Any]) -> dict[str, Any]:
    value = None if row["value"] == OTHER else row["value"]
    return {
        "value": value,
        "source": MODEL,
        "confidence": None if row["confidence"] is None else round(float(row["confidence"]), 4),
        "model_version": row["model_version"],
        "needs_review": bool(row["needs_review"]),
    }


def resolve_categories(
    attributes: Mapping[str, Any],
    label_rows: Iterable[Mapping[str, Any]],
    fields: Iterable[str] = (),
) -> dict[str, dict[str, Any]]:
    """Field -> the winning value with its source, confidence and the model's opinion;
    every field with a label, and each of ``fields`` the shop's attributes fill."""
    by_field: dict[str, dict[str, Mapping[str, Any]]] = {f: {} for f in fields}
    for row in label_rows:
        if not row["field"].startswith(TAG_PREFIX):
            by_field.setdefault(row["field"], {})[row["source"]] = row
    out: dict[str, dict[str, Any]] = {}
    for field, rows in sorted(by_field.items()):
        predicted = _model_entry(rows[MODEL]) if MODEL in rows else None
        shop_value = clean_value(attributes.get(field))
        if HUMAN in rows or shop_value is not None:
            value = rows[HUMAN]["value"] if HUMAN in rows else shop_value
            out[field] = {
                "value": value,
                "source": HUMAN,
                "confidence": None,
                "model_version": None,
                "needs_review": False,
                "corrected": HUMAN in rows,
                "predicted": predicted,
            }
        elif predicted is not None:
            out[field] = {**predicted, "corrected": False, "predicted": None}
    return out


def model_tags(label_rows: Iterable[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """Tag name -> the tag model's value (a human correction of a tag wins too)."""
    by_tag: dict[str, dict[str, Mapping[str, Any]]] = {}
    for row in label_rows:
        if row["field"].startswith(TAG_PREFIX):
            by_tag.setdefault(row["field"][len(TAG_PREFIX) :], {})[row["source"]] = row
    out = {}
    for tag, rows in sorted(by_tag.items()):
        if HUMAN in rows:
            out[tag] = {"value": rows[HUMAN]["value"], "source": HUMAN, "confidence": None}
        else:
            out[tag] = {k: v for k, v in _model_entry(rows[MODEL]).items()}
    return out


def color_tags(summary: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """Primary and secondary named colours with the share of every named colour."""
    color = (summary or {}).get("color")
    if not color:
        return None
    shares: dict[str, float] = {}
    for c in color.get("colors", []):  # several clusters may carry one name
        shares[c["name"]] = shares.get(c["name"], 0.0) + float(c["share"])
    return {
        "primary": color.get("primary"),
        "secondary": color.get("secondary"),
        "shares": [
            {"name": name, "share": round(share, 4)}
            for name, share in sorted(shares.items(), key=lambda kv: -kv[1])
        ],
    }


def product_tags(
    features: Iterable[Mapping[str, Any]], label_rows: Iterable[Mapping[str, Any]]
) -> dict[str, Any]:
    """All tags of a stored product: colours and ImageNet labels of its primary photo's
    features, and the tag models' values."""
    summary: Mapping[str, Any] | None = None
    imagenet: list[dict[str, Any]] = []
    for feature in features:
        data = feature.get("data") or {}
        if feature["kind"] == "summary":
            summary = data
        elif feature["kind"] == "embedding":
            imagenet = list(data.get("labels", []))
    return {"colors": color_tags(summary), "imagenet": imagenet, **model_tags(label_rows)}
