"""Serving trained heads: probabilities, joint hierarchy decoding, abstaining.

A ``FieldModel`` is a trained head with what serving needs (rare classes, threshold,
hierarchy); a ``Predictor`` runs a set of them on feature blocks and says, per field and
product, the value, its calibrated confidence, and whether a person should review it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from vitrine.classify.features import FeatureBlocks
from vitrine.classify.fusion import Head
from vitrine.classify.hierarchy import Hierarchy, decode

OTHER = "(other)"  # the class rare values are merged into


@dataclass
class FieldModel:
    """A trained head of one field and its serving parameters."""

    field: str
    head: Head
    threshold: float = 0.0
    rare: list[str] = field(default_factory=list)
    min_support: int = 0
    hierarchy: Hierarchy | None = None
    version: str | None = None

    def mapping(self) -> dict[str, str]:
        return {value: OTHER for value in self.rare}

    def params(self) -> dict[str, Any]:
        return {
            "threshold": self.threshold,
            "rare": self.rare,
            "min_support": self.min_support,
            "temperature": self.head.temperature,
            "hierarchy": self.hierarchy.to_json() if self.hierarchy else None,
        }

    @classmethod
    def from_params(
        cls, field_name: str, head: Head, params: dict[str, Any], version: str | None
    ) -> FieldModel:
        hierarchy = params.get("hierarchy")
        return cls(
            field_name,
            head,
            threshold=float(params.get("threshold", 0.0)),
            rare=list(params.get("rare", [])),
            min_support=int(params.get("min_support", 0)),
            hierarchy=Hierarchy.from_json(hierarchy) if hierarchy else None,
            version=version,
        )


@dataclass
class FieldPredictions:
    """One field's predictions for a batch of products (row-aligned arrays)."""

    field: str
    value: np.ndarray  # object: the class, or None when the product is of a rare class
    confidence: np.ndarray
    needs_review: np.ndarray  # bool
    reason: list[str | None]
    proba: np.ndarray  # the head's calibrated probabilities (rows x classes)
    classes: np.ndarray
    version: str | None

    def label_value(self, i: int) -> str:
        """What a stored label says for row ``i``: the class, or for a product of a rare
        class the most probable named one (stored as needing review), so that every
        product gets a value a person can confirm or correct; OTHER when no named class
        has any probability."""
        if self.value[i] is not None:
            return str(self.value[i])
        named = self.classes != OTHER
        if not named.any():
            return OTHER
        return str(self.classes[named][int(np.argmax(self.proba[i][named]))])

    def row(self, i: int, top: int = 3) -> dict[str, Any]:
        order = np.argsort(-self.proba[i])[:top]
        return {
            "value": self.value[i],
            "confidence": round(float(self.confidence[i]), 4),
            "needs_review": bool(self.needs_review[i]),
            "reason": self.reason[i],
            "model_version": self.version,
            "alternatives": [
                {"value": str(self.classes[j]), "probability": round(float(self.proba[i, j]), 4)}
                for j in order
            ],
        }


class Predictor:
    """Runs field models together so that nested fields agree."""

    def __init__(self, models: Sequence[FieldModel]) -> None:
        self.models = {m.field: m for m in models}

    @property
    def fields(self) -> list[str]:
        return sorted(self.models)

    @property
    def groups(self) -> set[str]:
        return {g for m in self.models.values() for g in m.head.groups}

    def _hierarchies(self) -> list[Hierarchy]:
        """Hierarchies whose every field has a model here; a field joins at most one."""
        seen: set[str] = set()
        out = []
        for m in self.models.values():
            h = m.hierarchy
            if h is None or not set(h.fields) <= set(self.models) or seen & set(h.fields):
                continue
            seen |= set(h.fields)
            out.append(h)
        return out

    def predict(self, features: FeatureBlocks) -> dict[str, FieldPredictions]:
        if len(features) == 0:
            return {}
        probas = {f: m.head.predict_proba(features) for f, m in self.models.items()}
        classes = {f: m.head.classes_ for f, m in self.models.items()}
        values: dict[str, np.ndarray] = {}
        confidence: dict[str, np.ndarray] = {}
        for h in self._hierarchies():
            mapping = {f: self.models[f].mapping() for f in h.fields}
            v, c = decode(h, {f: probas[f] for f in h.fields}, classes, mapping)
            values.update(v)
            confidence.update(c)
        for f in self.models:
            if f not in values:
                best = probas[f].argmax(axis=1)
                values[f] = classes[f][best]
                confidence[f] = probas[f][np.arange(len(best)), best]
        out = {}
        for f, m in self.models.items():
            value = values[f].astype(object)
            conf = confidence[f]
            rare = value == OTHER
            low = conf < m.threshold
            reason: list[str | None] = [
                f"a rare class (fewer than {m.min_support} training examples)"
                if r
                else f"confidence below the field's review threshold {m.threshold:.2f}"
                if lo
                else None
                for r, lo in zip(rare, low, strict=True)
            ]
            value[rare] = None
            out[f] = FieldPredictions(
                f, value, conf, rare | low, reason, probas[f], classes[f], m.version
            )
        return out
