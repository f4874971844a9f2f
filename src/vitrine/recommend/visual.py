"""Visual recommenders: visually similar products, and each customer's visual profile.

:class:`VisualSimilar` ranks products by the cosine of their CNN embeddings, or, given
aspect weights (``{"embedding": 2, "color": 1, "shape": 0.5}``, as a strategy sets them),
re-ranks the embedding's nearest candidates by the weighted fusion of aspect
similarities of :class:`~vitrine.index.aspect_store.AspectStore`. For a customer it looks
like their most recent items.

:class:`VisualProfile` summarises a customer's taste in visual space: their items'
embeddings weighted by event type and recency, clustered into a few *interests*
(weighted spherical k-means, at most one per category they touched), so that a customer
who buys shoes and dresses is shown both. It is computed from the current history on
every request, so an event changes it at once. It is the only algorithm that reaches
products nobody bought yet, apart from the hybrid.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Self

import numpy as np

from vitrine.index import Hit
from vitrine.index.fusion import EMBEDDING
from vitrine.recommend.base import Explainer, Reason, Recommender, top_k
from vitrine.recommend.data import Dataset, History

ASPECT_NAMES = {"color": "color", "texture": "texture", "shape": "shape", "pattern": "pattern"}


def aspect_similarities(data: Dataset, a: int, b: int) -> dict[str, float]:
    """Embedding and per-aspect cosine of two catalog items (those both have)."""
    out: dict[str, float] = {}
    if data.has_embedding[a] and data.has_embedding[b]:
        out["look"] = float(data.embeddings[a] @ data.embeddings[b])
    query = data.aspects.get(data.items[a])
    if query:
        sims = data.aspects.similarities(query, [data.items[b]])
        for kind, values in sims.items():
            if kind in ASPECT_NAMES and np.isfinite(values[0]):
                out[ASPECT_NAMES[kind]] = float(values[0])
    return out


def looks_like(data: Dataset, source: int, item: int, verb: str, title: str) -> Reason:
    sims = aspect_similarities(data, source, item)
    shown = sorted(((k, v) for k, v in sims.items() if k != "look"), key=lambda kv: -kv[1])[:2]
    detail = ", ".join(f"{k} {v:.2f}" for k, v in shown)
    return {
        "kind": "looks_like",
        "product_id": data.items[source],
        "similarities": {k: round(v, 3) for k, v in sims.items()},
        "text": f"looks like {title} you {verb}" + (f": {detail}" if detail else ""),
    }


def _verb(history: History, item: int) -> str:
    mask = history.items == item
    if (history.purchases & mask).any():
        return "bought"
    return "looked at"


class VisualSimilar(Recommender):
    """Products that look like the customer's recent items (or like one product)."""

    name = "similar"

    def __init__(
        self,
        weights: Mapping[str, float] | None = None,
        recent: int = 10,
        half_life_days: float = 30.0,
        pool: int = 200,
    ) -> None:
        super().__init__()
        self.weights = dict(weights) if weights else None
        self.recent = recent
        self.half_life_days = half_life_days
        self.pool = pool

    def fit(self, data: Dataset) -> Self:
        self.data = data
        return self

    def with_catalog(self, data: Dataset) -> Self:
        return self.rebased(data)  # reads only the catalog's embeddings: new products too

    def embedding_scores(self, item: int) -> np.ndarray:
        data = self.dataset
        s = self.empty_scores()
        if item >= data.n_catalog or not data.has_embedding[item]:
            return s
        s[:] = data.embeddings @ data.embeddings[item]
        s[~data.has_embedding] = -np.inf
        return s

    def similar_items(
        self,
        item: int,
        k: int,
        now: float,
        valid: np.ndarray | None = None,
        weights: Mapping[str, float] | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        data = self.dataset
        s = self.embedding_scores(item)
        if item < len(s):
            s[item] = -np.inf
        weights = weights if weights is not None else self.weights
        if not weights or set(weights) == {EMBEDDING}:
            best = top_k(s, k, valid)
            return best, s[best]
        pool = top_k(s, max(self.pool, k), valid)
        hits = [Hit(data.items[i], float(s[i])) for i in pool]
        query = data.aspects.get(data.items[item])
        ranked = data.aspects.rerank(query, None, hits, weights, k)
        return (
            np.array([data.item_index[h.product_id] for h in ranked], np.int64),
            np.array([h.score for h in ranked]),
        )

    def recent_items(self, history: History, now: float) -> tuple[np.ndarray, np.ndarray]:
        """(the customer's most interesting recent items with a photo, the factor each
        one's likeness counts with: 1 for the strongest, down to 0.5)."""
        data = self.dataset
        weights = history.item_weights(now, self.half_life_days)
        recent = [
            i
            for i, w in sorted(weights.items(), key=lambda kv: -kv[1])
            if w > 0 and i < data.n_catalog and data.has_embedding[i]
        ][: self.recent]
        if not recent:
            return np.zeros(0, np.int64), np.zeros(0)
        top = max(weights[i] for i in recent)
        return np.array(recent, np.int64), np.array([0.5 + 0.5 * weights[i] / top for i in recent])

    def scores(self, history: History, now: float) -> np.ndarray:
        data = self.dataset
        s = self.empty_scores()
        recent, factor = self.recent_items(history, now)
        if not len(recent):
            return s
        sims = data.embeddings @ data.embeddings[recent].T  # catalog x recent
        best = (sims * factor[None, :]).max(axis=1)
        s[data.has_embedding] = best[data.has_embedding]
        return s

    def explain(self, history: History, item: int, now: float) -> Reason:
        data = self.dataset
        known = [i for i in set(history.items.tolist()) if i < data.n_catalog and i != item]
        known = [i for i in known if data.has_embedding[i]]
        if not known or not data.has_embedding[item]:
            return {"kind": "looks_like", "text": "looks like what you viewed"}
        sims = data.embeddings[known] @ data.embeddings[item]
        source = known[int(np.argmax(sims))]
        return looks_like(data, source, item, _verb(history, source), self.title(source))


def weighted_kmeans(
    x: np.ndarray, w: np.ndarray, k: int, iterations: int = 8
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Spherical k-means of unit rows ``x`` with weights ``w``: (centroids, weights, labels).

    Deterministic: seeded with the heaviest row, then farthest-point.
    """
    k = max(1, min(k, len(x)))
    centers = [int(np.argmax(w))]
    for _ in range(1, k):
        sim = (x @ x[centers].T).max(axis=1)
        centers.append(int(np.argmin(sim)))
    c = x[centers].copy()
    labels = np.zeros(len(x), np.int64)
    for _ in range(iterations):
        labels = np.argmax(x @ c.T, axis=1)
        for j in range(k):
            m = labels == j
            if m.any():
                v = (x[m] * w[m, None]).sum(axis=0)
                c[j] = v / (np.linalg.norm(v) + 1e-12)
    mass = np.bincount(labels, weights=w, minlength=k)
    return c, mass, labels


class VisualProfile(Recommender):
    """Products nearest to the mean look of everything a customer interacted with."""

    name = "visual_profile"

    def __init__(
        self, half_life_days: float = 30.0, max_interests: int = 3, max_items: int = 50
    ) -> None:
        super().__init__()
        self.half_life_days = half_life_days
        self.max_interests = max_interests
        self.max_items = max_items

    def fit(self, data: Dataset) -> Self:
        self.data = data
        return self

    def with_catalog(self, data: Dataset) -> Self:
        return self.rebased(data)  # reads only the catalog's embeddings: new products too

    def interests(self, history: History, now: float) -> tuple[np.ndarray, np.ndarray, list[int]]:
        """(centroids, weights, the items) of a history; empty when it has no photos."""
        data = self.dataset
        weights = history.item_weights(now, self.half_life_days)
        items = [
            i
            for i, w in sorted(weights.items(), key=lambda kv: -kv[1])
            if w > 0 and i < data.n_catalog and data.has_embedding[i]
        ][: self.max_items]
        if not items:
            return np.zeros((0, data.embeddings.shape[1]), np.float32), np.zeros(0), []
        x = data.embeddings[items]
        w = np.array([weights[i] for i in items])
        cats = {int(data.category[i]) for i in items}
        k = min(self.max_interests, max(1, len(cats)), len(items))
        centroids, mass, _ = weighted_kmeans(x, w, k)
        keep = mass > 0
        return centroids[keep], mass[keep] / mass[keep].sum(), items

    def scores(self, history: History, now: float) -> np.ndarray:
        centroids, mass, _ = self.interests(history, now)
        return self.scores_for(centroids, mass)

    def scores_for(self, centroids: np.ndarray, mass: np.ndarray) -> np.ndarray:
        """Interests interleaved in proportion to their weight: the item at rank ``r`` of
        an interest of share ``w`` scores ``w / (r + 1)``."""
        return self.scores_and_similarity(centroids, mass)[0]

    def scores_and_similarity(
        self, centroids: np.ndarray, mass: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """(the interleaved scores of ``scores_for``; per item its best cosine to one of
        the interests) from one product of the photos and the interests."""
        s, similarity = self.empty_scores(), self.empty_scores()
        if not len(centroids):
            return s, similarity
        photos, embeddings = self.dataset.photos
        sims = embeddings @ centroids.T.astype(np.float32)  # photos x interests
        similarity[photos] = sims.max(axis=1)
        order = np.argsort(-sims, axis=0, kind="stable")
        ranks = np.empty(sims.shape, np.float64)
        np.put_along_axis(ranks, order, np.arange(len(photos), dtype=np.float64)[:, None], 0)
        s[photos] = (mass[None, :] / (ranks + 1.0)).max(axis=1)
        return s, similarity

    def recommend_explained(
        self, history: History, k: int, now: float, valid: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray, Explainer]:
        centroids, mass, items = self.interests(history, now)
        s = self.scores_for(centroids, mass)
        best = top_k(s, k, valid)
        return best, s[best], lambda item: self.explain_from(items, history, item)

    def explain(self, history: History, item: int, now: float) -> Reason:
        return self.explain_from(self.interests(history, now)[2], history, item)

    def explain_from(self, profile_items: list[int], history: History, item: int) -> Reason:
        """Why ``item`` matches a profile made of ``profile_items``."""
        data = self.dataset
        items = [i for i in profile_items if i != item]
        if not items or not data.has_embedding[item]:
            return {"kind": "looks_like", "text": "matches your style"}
        source = items[int(np.argmax(data.embeddings[items] @ data.embeddings[item]))]
        return looks_like(data, source, item, _verb(history, source), self.title(source))
