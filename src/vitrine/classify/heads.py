"""One classification head per field: standardised feature groups -> multinomial logistic
regression, with a temperature that calibrates its confidence.

The head is an estimator in scikit-learn's style (``fit``, ``decision_function``,
``predict_proba``, ``predict``, ``classes_``). Every dimension of the chosen groups is
standardised; one L2 penalty (``C``) then treats all groups alike. A trained head is
plain arrays (``to_arrays``), stored without pickle.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.special import log_softmax, softmax
from sklearn.linear_model import LogisticRegression

from vitrine.classify.features import FeatureBlocks, check_groups

ALGORITHM = "standardized-groups+multinomial-logreg+temperature"


class LinearHead:
    """Multinomial logistic regression over chosen feature groups."""

    def __init__(self, groups: Sequence[str], *, C: float = 0.05, max_iter: int = 300) -> None:
        self.groups = check_groups(groups)
        self.C = C
        self.max_iter = max_iter
        self.temperature = 1.0

    # -- features ---------------------------------------------------------------------

    def _design(self, features: FeatureBlocks) -> np.ndarray:
        parts = []
        for group in self.groups:
            x = features.blocks[group].astype(np.float64, copy=False)
            mean, scale = self.mean_[group], self.scale_[group]
            parts.append((x - mean) / scale)
        return np.hstack(parts)

    # -- estimator API ----------------------------------------------------------------

    def fit(
        self, features: FeatureBlocks, y: np.ndarray, sample_weight: np.ndarray | None = None
    ) -> LinearHead:
        y = np.asarray(y)
        classes = np.unique(y)
        if len(classes) < 2:
            raise ValueError(f"a head needs at least 2 classes, got {list(classes)}")
        self.mean_: dict[str, np.ndarray] = {}
        self.scale_: dict[str, np.ndarray] = {}
        for group in self.groups:
            x = features.blocks[group].astype(np.float64, copy=False)
            std = x.std(axis=0)
            std[std < 1e-8] = 1.0
            self.mean_[group] = x.mean(axis=0)
            self.scale_[group] = std
        model = LogisticRegression(C=self.C, max_iter=self.max_iter, tol=1e-3)
        model.fit(self._design(features), y, sample_weight=sample_weight)
        self.classes_ = model.classes_.astype(object)
        coef, intercept = model.coef_, model.intercept_
        if len(self.classes_) == 2:  # binary: one row; make it a symmetric two-row softmax
            coef = np.vstack([-coef[0] / 2, coef[0] / 2])
            intercept = np.array([-intercept[0] / 2, intercept[0] / 2])
        self.coef_ = coef.astype(np.float32)
        self.intercept_ = intercept.astype(np.float32)
        self.temperature = 1.0
        return self

    def decision_function(self, features: FeatureBlocks) -> np.ndarray:
        """Uncalibrated logits, one column per class."""
        design = self._design(features).astype(np.float32)
        return design @ self.coef_.T + self.intercept_

    def predict_proba(self, features: FeatureBlocks) -> np.ndarray:
        return softmax(self.decision_function(features) / self.temperature, axis=1)

    def predict(self, features: FeatureBlocks) -> np.ndarray:
        return self.classes_[np.argmax(self.decision_function(features), axis=1)]

    def calibrate(self, features: FeatureBlocks, y: np.ndarray) -> float:
        """Fit the temperature on held-out rows whose labels are classes of the head."""
        self.temperature = fit_temperature(self.decision_function(features), self.class_index(y))
        return self.temperature

    def class_index(self, y: np.ndarray) -> np.ndarray:
        """Column of each label; -1 for a label the head does not know."""
        lookup = {c: i for i, c in enumerate(self.classes_)}
        return np.array([lookup.get(v, -1) for v in y], dtype=np.int64)

    # -- storage ----------------------------------------------------------------------

    def to_arrays(self) -> dict[str, np.ndarray]:
        arrays = {
            "groups": np.array(self.groups, dtype=np.str_),
            "classes": np.array([str(c) for c in self.classes_], dtype=np.str_),
            "coef": self.coef_,
            "intercept": self.intercept_,
            "temperature": np.array([self.temperature]),
            "C": np.array([self.C]),
        }
        for group in self.groups:
            arrays[f"mean:{group}"] = self.mean_[group]
            arrays[f"scale:{group}"] = self.scale_[group]
        return arrays

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> LinearHead:
        head = cls([str(g) for g in arrays["groups"]], C=float(arrays["C"][0]))
        head.classes_ = np.array([str(c) for c in arrays["classes"]], dtype=object)
        head.coef_ = np.asarray(arrays["coef"], dtype=np.float32)
        head.intercept_ = np.asarray(arrays["intercept"], dtype=np.float32)
        head.temperature = float(arrays["temperature"][0])
        head.mean_ = {g: np.asarray(arrays[f"mean:{g}"]) for g in head.groups}
        head.scale_ = {g: np.asarray(arrays[f"scale:{g}"]) for g in head.groups}
        return head


def fit_temperature(logits: np.ndarray, target: np.ndarray) -> float:
    """The temperature T minimising the negative log-likelihood of softmax(logits / T).

    Rows whose target is -1 (a class the head cannot predict) are ignored.
    """
    keep = target >= 0
    if keep.sum() < 2:
        return 1.0
    z, t = logits[keep].astype(np.float64), target[keep]

    def nll(log_t: float) -> float:
        return float(-log_softmax(z / np.exp(log_t), axis=1)[np.arange(len(t)), t].mean())

    result = minimize_scalar(nll, bounds=(np.log(0.05), np.log(20.0)), method="bounded")
    return float(np.exp(result.x))
