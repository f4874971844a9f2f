"""Collaborative filtering from factors trained elsewhere: ``vitrine spark train-als``.

MLlib fits implicit ALS on an event log one process cannot hold; this recommender
loads only its item factors (Parquet ``item_factors``: ``id``, ``features``) and the
parameters it was trained with (``als_summary.json``), and maps the ids onto the
catalog. A customer's vector is never read from the stored user factors: it is solved
at request time from the customer's current history (the snapshot plus live events)
with MLlib's own user step,

    (YtY + sum_i alpha r_i y_i y_i^T + reg n_u I) x = sum_i (1 + alpha r_i) y_i,

which reproduces MLlib's user factors for the history it trained on (its last half
iteration is exactly this solve) and folds new events in without retraining.
Products the factors do not cover score nothing here (the strategy's fallback chain
fills the list); a customer none of whose products are covered gets no list either.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

import numpy as np

from vitrine.recommend.base import Reason
from vitrine.recommend.cf import ALS
from vitrine.recommend.data import Dataset, History

SUMMARY = "als_summary.json"


class AlsFactorsError(ValueError):
    """Factors that cannot be loaded; the message names the path and the problem."""


@dataclass
class _Factors:
    item_factors: np.ndarray  # one row per dataset item (zeros where not covered)


def read_item_factors(path: Path) -> tuple[list[str], np.ndarray]:
    """(product ids, factors) from ``PATH/item_factors`` (Spark's Parquet folder)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    location = path / "item_factors"
    if not location.exists():
        raise AlsFactorsError(f"{path}: no item_factors (the output of `vitrine spark train-als`)")
    try:
        table = pq.read_table(str(location), columns=["id", "features"])
    except (OSError, pa.ArrowException) as exc:
        message = f"{location}: not readable as (id, features) Parquet: {exc}"
        raise AlsFactorsError(message) from None
    ids = [str(x) for x in table.column("id").to_pylist()]
    flat = table.column("features").combine_chunks().flatten()
    values = np.asarray(flat.to_numpy(zero_copy_only=False), np.float32)
    if not ids or len(values) % len(ids):
        raise AlsFactorsError(f"{location}: no factors, or rows of different lengths")
    return ids, values.reshape(len(ids), -1)


class AlsFactors(ALS):
    """ALS recommendations from ``vitrine spark train-als`` output at ``path``."""

    name = "als_factors"

    def __init__(
        self,
        path: str | None = None,
        alpha: float | None = None,
        regularization: float | None = None,
    ) -> None:
        super().__init__()
        self.path = path
        self._alpha = alpha
        self._reg = regularization
        self.covered = np.zeros(0, bool)
        self.coverage: dict[str, int] = {}

    def fit(self, data: Dataset) -> Self:
        if not self.path:
            raise AlsFactorsError(
                "als_factors: no factors; set VITRINE_RECOMMEND_ALS_FACTORS or params.path"
            )
        path = Path(self.path)
        ids, factors = read_item_factors(path)
        params = {}
        if (path / SUMMARY).is_file():
            params = json.loads((path / SUMMARY).read_text()).get("params", {})
        alpha = self._alpha if self._alpha is not None else params.get("alpha")
        reg = self._reg if self._reg is not None else params.get("reg")
        if alpha is None or reg is None:
            raise AlsFactorsError(f"{path}: no {SUMMARY}; give alpha and regularization")
        self.alpha, self.regularization = float(alpha), float(reg)
        self.data = data
        # YtY over every trained item, as MLlib solved with it (not only the catalog's).
        wide = factors.astype(np.float64)
        self._yty = wide.T @ wide
        rows = np.array([data.item_index.get(i, -1) for i in ids], np.int64)
        known = rows >= 0
        aligned = np.zeros((data.n_items, factors.shape[1]), np.float32)
        aligned[rows[known]] = factors[known]
        self.covered = np.zeros(data.n_items, bool)
        self.covered[rows[known]] = True
        self.model = _Factors(aligned)  # type: ignore[assignment]
        self.factors = factors.shape[1]
        self.coverage = {
            "factors": len(ids),
            "catalog": data.n_catalog,
            "covered": int(self.covered[: data.n_catalog].sum()),
        }
        return self

    def user_vector(self, history: History, now: float) -> np.ndarray | None:
        """MLlib's user step on the current history (strength: summed event weights)."""
        if self.model is None or not len(history):
            return None
        items, inverse = np.unique(history.items.astype(np.int64), return_inverse=True)
        strength = np.bincount(inverse, history.weights.astype(np.float64))  # no decay
        keep = (strength > 0) & (items < len(self.covered))
        keep[keep] = self.covered[items[keep]]
        if not keep.any():
            return None
        items = items[keep]
        c1 = self.alpha * strength[keep]
        y = self.model.item_factors[items].astype(np.float64)
        a = self._yty + (y.T * c1) @ y + self.regularization * len(items) * np.eye(y.shape[1])
        return np.linalg.solve(a, y.T @ (1.0 + c1)).astype(np.float32)

    def retrievable_items(self, n_catalog: int) -> np.ndarray:
        return np.flatnonzero(self.covered[:n_catalog]).astype(np.int64)

    def scores_at(self, vec: np.ndarray, items: np.ndarray) -> np.ndarray:
        out = super().scores_at(vec, items)
        inside = items < len(self.covered)
        out[inside & ~self.covered[np.minimum(items, len(self.covered) - 1)]] = np.nan
        return out

    def scores(self, history: History, now: float) -> np.ndarray:
        s = super().scores(history, now)
        s[~self.covered[: len(s)]] = -np.inf
        return s

    def explain(self, history: History, item: int, now: float) -> Reason:
        covered = History(
            *(
                a[self.covered[history.items]]
                for a in (history.items, history.days, history.weights, history.purchases)
            )
        )
        return super().explain(covered, item, now)


def with_als_factors(
    algorithm: str, params: dict[str, Any], path: str
) -> tuple[str, dict[str, Any]]:
    """A model spec with the ``recommend_als_factors`` setting applied: "als" is served
    from the factors, and the hybrid takes them as its ALS source (explicit params win)."""
    if not path:
        return algorithm, params
    if algorithm == "als":
        return "als_factors", {"path": path}
    if algorithm == "als_factors":
        return algorithm, {"path": path, **params}
    if algorithm == "hybrid":
        return algorithm, {"als_factors": path, **params}
    return algorithm, params


def als_factors_stamp(path: str) -> str:
    """Changes when new factors are written there (part of the models' fingerprint)."""
    if not path:
        return ""
    summary = Path(path) / SUMMARY
    return f"|als:{path}:{summary.stat().st_mtime_ns if summary.is_file() else 0}"
