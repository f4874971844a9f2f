"""Label statistics: value counts, model confidences, and model-vs-human agreement per class.

Until a classifier reports its own held-out metrics, the only ground truth is what
people set: for every product where a person reviewed a field that a model labelled,
the model's value is compared with the person's. Those products are the ones people
chose to look at (often because the model was wrong), so the figures say how the
model does on reviewed products, not on the whole catalog.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.metrics import confusion_matrix, precision_recall_fscore_support
from sqlalchemy import Engine, and_, func, select
from sqlalchemy.orm import aliased

from vitrine.catalog.models import Feature, Label, Product


@dataclass(frozen=True)
class ClassMetrics:
    """Per-class quality of one model: precision / recall / F1 and a confusion matrix."""

    model_version: str
    field: str
    classes: list[str]
    precision: list[float]
    recall: list[float]
    f1: list[float]
    support: list[int]
    confusion: list[list[int]]  # rows: true class, columns: predicted class
    evaluated_on: str  # what the figures were measured on, in words


class LabelStatistics:
    """Counts and agreement of the labels table, for the admin UI's analytics."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def label_counts(self, field: str, limit: int = 30) -> list[tuple[str, int]]:
        """Products per value of a label field (a human label wins over the model's)."""
        human = aliased(Label)
        overridden = (
            select(human.id)
            .where(
                human.product_id == Label.product_id,
                human.field == Label.field,
                human.source == "human",
            )
            .exists()
        )
        query = (
            select(Label.value, func.count())
            .where(Label.field == field, (Label.source == "human") | ~overridden)
            .group_by(Label.value)
            .order_by(func.count().desc())
            .limit(limit)
        )
        with self.engine.connect() as conn:
            return [(v, int(c)) for v, c in conn.execute(query)]

    def attribute_counts(self, field: str, limit: int = 30) -> list[tuple[str, int]]:
        """Products per value of one of the shop's own fields."""
        value = Product.attributes[field].as_string()
        query = (
            select(value, func.count())
            .where(value.is_not(None))
            .group_by(value)
            .order_by(func.count().desc())
            .limit(limit)
        )
        with self.engine.connect() as conn:
            return [(v, int(c)) for v, c in conn.execute(query)]

    def model_confidences(self, limit: int = 20_000) -> tuple[str, list[float]]:
        """Confidences of the classifier's labels or, when there are none yet, of the
        CNN's top ImageNet class; says which."""
        with self.engine.connect() as conn:
            values = conn.scalars(
                select(Label.confidence)
                .where(Label.source == "model", Label.confidence.is_not(None))
                .limit(limit)
            ).all()
            if values:
                return "classifier labels", [float(v) for v in values]
            rows = conn.scalars(
                select(Feature.data).where(Feature.kind == "embedding").limit(limit)
            ).all()
        top = [
            float(data["labels"][0]["confidence"]) for data in rows if data and data.get("labels")
        ]
        return "top ImageNet class of the CNN", top

    def agreement(self) -> list[ClassMetrics]:
        """Model labels against human labels of the same product and field, per model."""
        human = aliased(Label)
        query = (
            select(Label.field, Label.model_version, Label.value, human.value)
            .join(
                human,
                and_(
                    human.product_id == Label.product_id,
                    human.field == Label.field,
                    human.source == "human",
                ),
            )
            .where(Label.source == "model")
        )
        groups: dict[tuple[str, str], tuple[list[str], list[str]]] = {}
        with self.engine.connect() as conn:
            for field, version, predicted, truth in conn.execute(query):
                pair = groups.setdefault((field, version or "unknown"), ([], []))
                pair[0].append(truth)
                pair[1].append(predicted)
        out = []
        for (field, version), (truth, predicted) in sorted(groups.items()):
            classes = sorted(set(truth) | set(predicted))
            p, r, f, s = precision_recall_fscore_support(
                truth, predicted, labels=classes, zero_division=0
            )
            cm = confusion_matrix(truth, predicted, labels=classes)
            out.append(
                ClassMetrics(
                    model_version=version,
                    field=field,
                    classes=classes,
                    precision=[round(float(x), 4) for x in p],
                    recall=[round(float(x), 4) for x in r],
                    f1=[round(float(x), 4) for x in f],
                    support=[int(x) for x in s],
                    confusion=np.asarray(cm).astype(int).tolist(),
                    evaluated_on=f"{len(truth)} products whose {field!r} a person reviewed",
                )
            )
        return out


def histogram(values: list[float], bins: int = 10) -> tuple[list[str], list[int]]:
    """Counts of values in [0, 1] in ``bins`` equal bins, with their labels."""
    counts, edges = np.histogram(np.clip(values, 0, 1), bins=bins, range=(0.0, 1.0))
    labels = [f"{edges[i]:.1f}–{edges[i + 1]:.1f}" for i in range(bins)]
    return labels, [int(c) for c in counts]
