"""How a product's aspects are weighed together: aspect weights, and the fusion of similarities.

Fusion
    Each aspect similarity ``s`` (cosine, in [-1, 1]) is calibrated as
    ``l = -log(1 + EPS - s)`` (``EPS = 0.01``): near-duplicates all score close to 1 on
    every aspect, and this stretches the top of the scale so that 0.999 vs 0.99 counts
    as much as 0.9 vs 0.8. The fused value is the weighted mean of ``l`` over the aspects a
    candidate has, mapped back to a similarity in [-1, 1] (``1 + EPS - exp(-mean)``), so
    that the returned score keeps the meaning of a cosine for ``min_score`` filters. With one
    aspect of weight 1 the order is that aspect's own. On the fashion-small query photos
    this calibration gave +1-1.5 points hit@1 on clean and +0.2-1.5 on perturbed ones over a
    raw weighted sum of cosines (each with its own best weights); z-scoring each aspect
    over the candidate list gave nothing over the raw sum.

Weights
    :data:`DEFAULT_WEIGHTS` were chosen by coordinate search on half of the fashion-small
    query photos (clean and cropped / rotated / darkened), checked on the other half; see
    ``bench/bench_photo_search.py``. They are a setting: :func:`parse_weights` reads
    ``"embedding=2,layout_aligned=2,color=0.75"``.

Query aspects
    A query aspect is a 1-D vector (compared with the stored vectors of the same kind by
    cosine), a 2-D array (several views of the query: the best view counts) or any object
    with a ``kind`` attribute (the stored kind it reads) and a ``similarity(rows)`` method
    returning one similarity per stored row, such as
    :class:`vitrine.vision.layout.AlignedLayoutQuery`.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping
from typing import Protocol, runtime_checkable

import numpy as np

__all__ = [
    "CALIBRATION_EPS",
    "DEFAULT_SCANS",
    "DEFAULT_WEIGHTS",
    "EMBEDDING",
    "QueryAspect",
    "format_weights",
    "fuse",
    "parse_weights",
]

EMBEDDING = "embedding"
CALIBRATION_EPS = 0.01

# Chosen by coordinate search on half of 4 x 600 fashion-small query photos (clean and
# perturbed), checked on the other half (bench/bench_photo_search.py, see the module
# docstring). Leaving one out costs, in hit@1 on the perturbed sets: layout_aligned 7-9
# points, color 8-10, embedding 2-3, texture 1-2, layout ~1.
DEFAULT_WEIGHTS: dict[str, float] = {
    EMBEDDING: 2.0,
    "layout_aligned": 1.5,  # colour layout under crop/rotation hypotheses (vision.layout)
    "color": 0.75,
    "texture": 0.5,
    "layout": 0.25,  # plain colour layout cosine
    "pattern": 0.0,  # no gain once colour and layout are in (still used by the scan)
    "shape": 0.0,  # silhouette: no gain, hurts on cropped photos
}

# Exact whole-catalogue scans, candidate sources beside the embedding's ANN search, each
# taking its own top N: the colour layout finds near-duplicates of the catalogue photo
# (recall@50 1.00 on clean fashion-small queries, the ANN 0.88), colour + pattern find
# cropped / rotated / darkened ones (0.96-0.98, the ANN 0.78-0.81). "layout_coarse" is
# the layout pooled to 5x5 (vision.layout.coarse_layout): the same candidates as the full
# layout at a quarter of the cost.
DEFAULT_SCANS: tuple[dict[str, float], ...] = (
    {"layout_coarse": 1.0},
    {"color": 1.0, "pattern": 1.0},
)


@runtime_checkable
class QueryAspect(Protocol):
    """A query-side aspect that scores stored rows of ``kind`` itself."""

    kind: str

    def similarity(self, rows: np.ndarray) -> np.ndarray: ...


# -- weights --------------------------------------------------------------------------


def parse_weights(text: str, known: Collection[str] | None = None) -> dict[str, float]:
    """Parse ``"embedding=2, color=0.5"`` into ``{"embedding": 2.0, "color": 0.5}``.

    Whitespace around names and values is ignored; an empty string gives ``{}``. Raises
    ValueError, naming the offending item, for an item without ``=``, an empty or
    repeated name, a value that is not a finite number >= 0, a name outside ``known``
    (when given), or weights that are all zero.
    """
    if not isinstance(text, str):
        raise TypeError(f"weights must be a string, not {type(text).__name__}")
    out: dict[str, float] = {}
    if not text.strip():
        return out
    for raw in text.split(","):
        item = raw.strip()
        if not item:
            raise ValueError(f"empty item in weights {text!r} (stray comma?)")
        name, sep, value = item.partition("=")
        name, value = name.strip(), value.strip()
        if not sep:
            raise ValueError(f"weight {item!r} is not of the form name=number")
        if not name:
            raise ValueError(f"weight {item!r} has no name")
        if name in out:
            raise ValueError(f"weight {name!r} is given twice")
        if known is not None and name not in known:
            raise ValueError(f"unknown weight {name!r}; known: {', '.join(sorted(known))}")
        try:
            weight = float(value)
        except ValueError:
            raise ValueError(f"weight {name!r} has value {value!r}, not a number") from None
        if not math.isfinite(weight) or weight < 0:
            raise ValueError(f"weight {name!r} must be a finite number >= 0, got {value!r}")
        out[name] = weight
    if not any(out.values()):
        raise ValueError(f"weights {text!r} are all zero")
    return out


def format_weights(weights: Mapping[str, float]) -> str:
    """The inverse of :func:`parse_weights`."""
    return ",".join(f"{k}={v:g}" for k, v in weights.items())


# -- fusion ---------------------------------------------------------------------------


def fuse(similarities: Mapping[str, np.ndarray], weights: Mapping[str, float]) -> np.ndarray:
    """Fused similarity of N candidates from per-aspect similarities (NaN = missing).

    Weighted mean of the calibrated similarities over the aspects each candidate has,
    mapped back to [-1, 1]; -inf where a candidate has none of the weighted aspects.
    """
    total: np.ndarray | None = None
    weight_sum: np.ndarray | None = None
    for name, sims in similarities.items():
        w = float(weights.get(name, 0.0))
        if w <= 0:
            continue
        s = np.asarray(sims, dtype=np.float64)
        present = ~np.isnan(s)
        cal = -np.log(1.0 + CALIBRATION_EPS - np.clip(np.where(present, s, 0.0), -1.0, 1.0))
        if total is None or weight_sum is None:
            total = np.zeros(s.shape, np.float64)
            weight_sum = np.zeros(s.shape, np.float64)
        total += np.where(present, w * cal, 0.0)
        weight_sum += np.where(present, w, 0.0)
    if total is None or weight_sum is None:
        raise ValueError("no aspect with a positive weight to fuse")
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = total / weight_sum
    score = np.clip(1.0 + CALIBRATION_EPS - np.exp(-mean), -1.0, 1.0)
    return np.where(weight_sum > 0, score, -np.inf)
