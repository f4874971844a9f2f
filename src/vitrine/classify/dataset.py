"""Label values to learn from: the shop's product attributes, overridden by human corrections.

Model labels are never learned from (a model must not teach itself). A correction (a
human label) replaces the attribute value and weighs more in training.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from vitrine.catalog.store import HUMAN, CatalogStore
from vitrine.classify.features import FeatureBlocks


@dataclass
class FieldLabels:
    """The known value of one field per product, and which of them are corrections."""

    field: str
    values: dict[str, str]
    corrected: set[str]


def clean_value(value: object) -> str | None:
    """A label value as text, or None when it is missing (empty, NaN-like, not scalar)."""
    if value is None or isinstance(value, dict | list):
        return None
    text = str(value).strip()
    return text if text and text.lower() not in {"nan", "none", "null"} else None


def read_field_labels(store: CatalogStore, fields: Sequence[str]) -> dict[str, FieldLabels]:
    """Every field's known values: attributes first, human labels win."""
    out = {f: FieldLabels(f, {}, set()) for f in fields}
    for pid, _title, attributes in store.iter_attributes():
        for f in fields:
            value = clean_value(attributes.get(f))
            if value is not None:
                out[f].values[pid] = value
    for row in store.labels(fields=fields, source=HUMAN):
        value = clean_value(row["value"])
        if value is not None:
            labels = out[row["field"]]
            labels.values[row["product_id"]] = value
            labels.corrected.add(row["product_id"])
    return out


@dataclass
class FieldExamples:
    """Features, labels and training weights of the products labelled for one field."""

    field: str
    features: FeatureBlocks
    y: np.ndarray  # object array of str
    weight: np.ndarray  # float
    corrected: np.ndarray  # bool

    def __len__(self) -> int:
        return len(self.y)


def assemble(
    features: FeatureBlocks, labels: FieldLabels, correction_weight: float = 1.0
) -> FieldExamples:
    """The rows of ``features`` that have a value for the field."""
    rows = [i for i, pid in enumerate(features.ids) if pid in labels.values]
    sub = features.take(rows)
    y = np.array([labels.values[pid] for pid in sub.ids], dtype=object)
    corrected = np.array([pid in labels.corrected for pid in sub.ids], dtype=bool)
    weight = np.where(corrected, correction_weight, 1.0).astype(np.float64)
    return FieldExamples(labels.field, sub, y, weight, corrected)
