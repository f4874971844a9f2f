"""A product's own words as a classification signal: a linear head on the TF-IDF of its
title and description, and its late fusion with the photo head.

Shops name their products ("Turtle Check Men Navy Blue Shirt"): where a product has a
title, it says much of what the photo shows, and says it about the shop's own taxonomy.
``TextHead`` is multinomial logistic regression on word 1-2 grams and character 2-4 grams
(robust to spelling and compound words); ``FusedHead`` adds its logits to the photo head's,
the two weights fit on calibration rows (which also calibrates the sum). A product without
text (a photo searched or analysed alone) gets the photo head alone, calibrated on its own.
Both heads are plain arrays when stored (vocabulary, idf, coefficients): no pickle.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.optimize import minimize
from scipy.sparse import csr_matrix, hstack
from scipy.special import log_softmax, softmax
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression

from vitrine.classify.features import TEXT_GROUP, FeatureBlocks
from vitrine.classify.heads import LinearHead

TEXT_ALGORITHM = "tfidf-words+chars+multinomial-logreg"
MIN_TEXT_SHARE = 0.5  # a field uses text only when most of its training products have some


def has_text(features: FeatureBlocks) -> np.ndarray:
    """Per row: whether the product has any text (False for all when there is no block)."""
    texts = features.blocks.get(TEXT_GROUP)
    if texts is None:
        return np.zeros(len(features), dtype=bool)
    return np.array([bool(t) for t in texts], dtype=bool)


def _vectorizers() -> tuple[TfidfVectorizer, TfidfVectorizer]:
    words = TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True, dtype=np.float32)
    chars = TfidfVectorizer(
        analyzer="char_wb",
        ngram_range=(2, 4),
        min_df=3,
        max_features=30000,
        sublinear_tf=True,
        dtype=np.float32,
    )
    return words, chars


class TextHead:
    """Multinomial logistic regression on the TF-IDF of a product's text."""

    def __init__(self, *, C: float = 10.0, max_iter: int = 200) -> None:
        self.C = C
        self.max_iter = max_iter

    def _design(self, texts: Sequence[str]) -> csr_matrix:
        return hstack([v.transform(texts) for v in self.vectorizers_]).tocsr()

    def fit(
        self, texts: Sequence[str], y: np.ndarray, sample_weight: np.ndarray | None = None
    ) -> TextHead:
        self.vectorizers_ = _vectorizers()
        for vectorizer in self.vectorizers_:
            vectorizer.fit(texts)
        model = LogisticRegression(C=self.C, max_iter=self.max_iter, tol=1e-3)
        model.fit(self._design(texts), np.asarray(y), sample_weight=sample_weight)
        self.classes_ = model.classes_.astype(object)
        coef, intercept = model.coef_, model.intercept_
        if len(self.classes_) == 2:
            coef = np.vstack([-coef[0] / 2, coef[0] / 2])
            intercept = np.array([-intercept[0] / 2, intercept[0] / 2])
        self.coef_ = coef.astype(np.float32)
        self.intercept_ = intercept.astype(np.float32)
        return self

    def decision_function(self, texts: Sequence[str]) -> np.ndarray:
        return np.asarray(self._design(texts) @ self.coef_.T) + self.intercept_

    def to_arrays(self) -> dict[str, np.ndarray]:
        arrays = {
            "classes": np.array([str(c) for c in self.classes_], dtype=np.str_),
            "coef": self.coef_,
            "intercept": self.intercept_,
            "C": np.array([self.C]),
        }
        for name, vectorizer in zip(("words", "chars"), self.vectorizers_, strict=True):
            terms = sorted(vectorizer.vocabulary_, key=vectorizer.vocabulary_.__getitem__)
            arrays[f"{name}:terms"] = np.array(terms, dtype=np.str_)
            arrays[f"{name}:idf"] = vectorizer.idf_.astype(np.float32)
        return arrays

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> TextHead:
        head = cls(C=float(arrays["C"][0]))
        head.classes_ = np.array([str(c) for c in arrays["classes"]], dtype=object)
        head.coef_ = np.asarray(arrays["coef"], dtype=np.float32)
        head.intercept_ = np.asarray(arrays["intercept"], dtype=np.float32)
        vectorizers = []
        for name, vectorizer in zip(("words", "chars"), _vectorizers(), strict=True):
            terms = [str(t) for t in arrays[f"{name}:terms"]]
            vectorizer.set_params(vocabulary={t: i for i, t in enumerate(terms)})
            vectorizer.idf_ = np.asarray(arrays[f"{name}:idf"], dtype=np.float64)
            vectorizers.append(vectorizer)
        head.vectorizers_ = tuple(vectorizers)
        return head


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
