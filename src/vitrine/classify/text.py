"""A product's own words as a classification signal: a linear head on the TF-IDF of its
title and description (fused with the photo head in ``classify/fusion.py``).

Shops name their products ("Turtle Check Men Navy Blue Shirt"): where a product has a
title, it says much of what the photo shows, and says it about the shop's own taxonomy.
``TextHead`` is multinomial logistic regression on word 1-2 grams and character 2-4 grams
(robust to spelling and compound words). Stored as plain arrays (vocabulary, idf,
coefficients): no pickle.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.sparse import csr_matrix, hstack
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression

from vitrine.classify.features import TEXT_GROUP, FeatureBlocks

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
