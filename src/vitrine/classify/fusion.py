"""Late fusion of the photo head and the text head, and loading a stored head of either
kind.

``FusedHead`` adds the text head's logits to the photo head's, ``a * photo + b * text``,
the two weights fit on calibration rows (which also calibrates the sum). A product without
text (a photo searched or analysed alone) gets the photo head alone, calibrated on its own.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import minimize
from scipy.special import log_softmax, softmax

from vitrine.classify.features import TEXT_GROUP, FeatureBlocks
from vitrine.classify.heads import LinearHead
from vitrine.classify.text import TextHead, has_text


class FusedHead:
    """The photo head plus the text head: ``a * photo + b * text`` logits where a product
    has text, the photo head's own calibrated logits where it has none."""

    def __init__(self, image: LinearHead, text: TextHead) -> None:
        if list(text.classes_) != list(image.classes_):
            raise ValueError("the photo and text heads must be trained on the same classes")
        self.image = image
        self.text = text
        self.weights = np.array([1.0 / image.temperature, 1.0])

    @property
    def groups(self) -> list[str]:
        return [*self.image.groups, TEXT_GROUP]

    @property
    def classes_(self) -> np.ndarray:
        return self.image.classes_

    @property
    def temperature(self) -> float:  # the weights calibrate the fused logits
        return 1.0

    def _parts(self, features: FeatureBlocks) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        photo = self.image.decision_function(features).astype(np.float64)
        texted = has_text(features)
        text = np.zeros_like(photo)
        if texted.any():
            texts = [str(t) for t in features.blocks[TEXT_GROUP][texted]]
            text[texted] = self.text.decision_function(texts)
        return photo, text, texted

    def decision_function(self, features: FeatureBlocks) -> np.ndarray:
        """Calibrated logits, one column per class."""
        photo, text, texted = self._parts(features)
        a, b = self.weights
        fused = a * photo + b * text
        fused[~texted] = photo[~texted] / self.image.temperature
        return fused

    def predict_proba(self, features: FeatureBlocks) -> np.ndarray:
        return softmax(self.decision_function(features), axis=1)

    def predict(self, features: FeatureBlocks) -> np.ndarray:
        return self.classes_[np.argmax(self.decision_function(features), axis=1)]

    def class_index(self, y: np.ndarray) -> np.ndarray:
        return self.image.class_index(y)

    def calibrate(self, features: FeatureBlocks, y: np.ndarray) -> np.ndarray:
        """Fit the photo head's temperature on every row, then the two fusion weights on
        the rows with text, both minimising the negative log-likelihood."""
        self.image.calibrate(features, y)
        photo, text, texted = self._parts(features)
        target = self.class_index(y)
        keep = texted & (target >= 0)
        self.weights = np.array([1.0 / self.image.temperature, 1.0])
        if keep.sum() < 2:
            return self.weights
        p, t, idx = photo[keep], text[keep], target[keep]

        def nll(w: np.ndarray) -> float:
            return float(-log_softmax(w[0] * p + w[1] * t, axis=1)[np.arange(len(idx)), idx].mean())

        result = minimize(nll, self.weights, method="L-BFGS-B", bounds=[(0.0, 20.0)] * 2)
        self.weights = np.asarray(result.x, dtype=np.float64)
        return self.weights

    def to_arrays(self) -> dict[str, np.ndarray]:
        arrays: dict[str, np.ndarray] = {"kind": np.array(["fused"]), "weights": self.weights}
        arrays.update(self.image.to_arrays())
        arrays.update({f"text:{k}": v for k, v in self.text.to_arrays().items()})
        return arrays

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> FusedHead:
        text = TextHead.from_arrays(
            {k[len("text:") :]: v for k, v in arrays.items() if k.startswith("text:")}
        )
        head = cls(LinearHead.from_arrays(arrays), text)
        head.weights = np.asarray(arrays["weights"], dtype=np.float64)
        return head


Head = LinearHead | FusedHead


def head_from_arrays(arrays: dict[str, np.ndarray]) -> Head:
    """A stored head of either kind."""
    if "kind" in arrays and str(arrays["kind"][0]) == "fused":
        return FusedHead.from_arrays(arrays)
    return LinearHead.from_arrays(arrays)
