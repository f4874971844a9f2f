"""The query side of search by photo: a shopper's photo made comparable with catalogue photos.

A shopper's photo differs from the catalogue photo of the same product in ways that have
nothing to do with the product: exposure, framing, and sometimes the aspect ratio (apps and
upload widgets squash photos to squares). :func:`canonical_view` undoes the two that can be
undone without knowing the match: it normalises exposure (white point to 255) and resizes
the photo to the catalogue's *typical* aspect ratio when its own differs by more than 5 %.
The typical aspect is learned from the catalogue's stored image sizes
(:class:`TypicalAspect`), never assumed.

:func:`describe_query` runs the whole query-side pipeline: decode, canonical view, the
hand-crafted features and the CNN embedding of that view (one CNN pass, as for a catalogue
photo), the colour layout, and the crop/rotation-aligned layout query
(:class:`vitrine.vision.layout.AlignedLayoutQuery`). Its ``aspects`` feed
:meth:`vitrine.index.aspect_store.AspectStore.rerank`, its ``scan_aspects``
:meth:`~vitrine.index.aspect_store.AspectStore.scan`. With ``extra_view=True`` a photo whose
aspect differs from the catalogue's is also described as it is (a second CNN pass), and
each aspect takes the better of the two views: safer for genuinely square photos, at about
25 ms more CPU per such query.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

from vitrine.vision.analyzer import WORKING_SIDE, ImageAnalysis, PreparedImage
from vitrine.vision.analyzer import content_hash as _content_hash
from vitrine.vision.decode import DecodeLimits, decode_image
from vitrine.vision.features import extract_features
from vitrine.vision.layout import (
    COARSE_KIND,
    LAYOUT_KIND,
    AlignedLayoutQuery,
    coarse_layout,
    layout_vector,
    normalise_exposure,
)
from vitrine.vision.model_input import prepare_image

# Aspect ratios closer than this (|log ratio|) count as the same.
ASPECT_TOLERANCE = 0.05
ALIGNED_LAYOUT = "layout_aligned"


class TypicalAspect:
    """Running median of the catalogue's image aspect ratios (width / height).

    A histogram of log-aspects in 1 % bins over 1:8 .. 8:1; thread-safe. ``value`` is None
    until an image was added.
    """

    _BINS = 420  # log(64) / 0.01 + a margin
    _STEP = 0.01
    _LOW = -math.log(8.0)

    def __init__(self) -> None:
        self._counts = np.zeros(self._BINS, np.int64)
        self._lock = threading.Lock()

    def _bin(self, width: int, height: int) -> int | None:
        if width <= 0 or height <= 0:
            return None
        b = int((math.log(width / height) - self._LOW) / self._STEP)
        return min(max(b, 0), self._BINS - 1)

    def add(self, width: int, height: int, count: int = 1) -> None:
        b = self._bin(width, height)
        if b is not None:
            with self._lock:
                self._counts[b] += count

    def remove(self, width: int, height: int, count: int = 1) -> None:
        b = self._bin(width, height)
        if b is not None:
            with self._lock:
                self._counts[b] = max(0, self._counts[b] - count)

    def add_many(self, sizes: np.ndarray) -> None:
        """``sizes``: N x 2 array of (width, height)."""
        sizes = np.asarray(sizes, dtype=np.float64).reshape(-1, 2)
        sizes = sizes[(sizes > 0).all(axis=1)]
        if len(sizes) == 0:
            return
        bins = ((np.log(sizes[:, 0] / sizes[:, 1]) - self._LOW) / self._STEP).astype(np.int64)
        with self._lock:
            np.add.at(self._counts, np.clip(bins, 0, self._BINS - 1), 1)

    @property
    def value(self) -> float | None:
        with self._lock:
            total = int(self._counts.sum())
            if total == 0:
                return None
            b = int(np.searchsorted(np.cumsum(self._counts), (total + 1) / 2))
        return math.exp(self._LOW + (b + 0.5) * self._STEP)


def to_aspect(rgb: np.ndarray, aspect: float) -> np.ndarray:
    """``rgb`` resized to width/height = ``aspect``, keeping its pixel count."""
    h, w = rgb.shape[:2]
    area = float(h * w)
    nh = max(1, round(math.sqrt(area / aspect)))
    nw = max(1, round(nh * aspect))
    if (nw, nh) == (w, h):
        return rgb
    interp = cv2.INTER_AREA if nw * nh <= area else cv2.INTER_LINEAR
    return cv2.resize(rgb, (nw, nh), interpolation=interp)


def differs(aspect: float, other: float | None) -> bool:
    return other is not None and abs(math.log(aspect / other)) > ASPECT_TOLERANCE


def canonical_view(rgb: np.ndarray, catalog_aspect: float | None) -> np.ndarray:
    """Exposure-normalised, and at the catalogue's typical aspect when it differs > 5 %."""
    rgb = normalise_exposure(rgb)
    h, w = rgb.shape[:2]
    if catalog_aspect is not None and differs(w / h, catalog_aspect):
        rgb = to_aspect(rgb, catalog_aspect)
    return rgb


def catalog_aspects(
    stored: Mapping[str, np.ndarray], kinds: Collection[str] | None = None
) -> dict[str, np.ndarray]:
    """The rows to upsert into :class:`vitrine.index.aspect_store.AspectStore` for some products.

    ``stored``: their stored feature vectors by kind (``color``, ``texture``, ``shape``,
    ``pattern``: ``FEATURE_VERSION``; ``layout``: ``LAYOUT_VERSION``), N x dim each.
    ``kinds``: the kinds to keep (default all given); ``layout_coarse`` is derived from
    ``layout`` (it is not stored).
    """
    out = {k: np.asarray(v, np.float32) for k, v in stored.items() if kinds is None or k in kinds}
    if LAYOUT_KIND in stored and (kinds is None or COARSE_KIND in kinds):
        out[COARSE_KIND] = coarse_layout(np.atleast_2d(stored[LAYOUT_KIND]))
    return out


@dataclass
class QueryDescription:
    """Everything search needs from a query photo."""

    analysis: ImageAnalysis  # of the canonical view (labels, features, embedding)
    embeddings: np.ndarray  # one row per view (1 or 2) x 1280, unit rows
    aspects: dict[str, Any]  # for AspectStore.rerank
    scan_aspects: dict[str, np.ndarray]  # for AspectStore.scan
    timings: dict[str, float] = field(default_factory=dict)


def describe_query(
    data: bytes,
    complete: Callable[[Sequence[PreparedImage]], list[ImageAnalysis]],
    catalog_aspect: float | None,
    *,
    source: str = "<upload>",
    limits: DecodeLimits = DecodeLimits(),
    extra_view: bool = False,
) -> QueryDescription:
    """Decode and describe a query photo; raises ImageDecodeError. See the module docstring.

    ``complete`` runs the CNN on prepared images: ``ImageAnalyzer.complete``, or the
    service's ``MicroBatcher.analyze`` so that concurrent queries share model calls.
    """
    t0 = time.perf_counter()
    decoded = decode_image(data, source=source, limits=limits, max_side=WORKING_SIDE)
    rgb = decoded.rgb
    t1 = time.perf_counter()
    frame_aspect = catalog_aspect or rgb.shape[1] / rgb.shape[0]
    views = [canonical_view(rgb, catalog_aspect)]
    if extra_view and differs(rgb.shape[1] / rgb.shape[0], catalog_aspect):
        views.append(normalise_exposure(rgb))
    digest = _content_hash(data)
    prepared = []
    for view in views:
        features = extract_features(view)
        prepared.append(
            PreparedImage(
                source=source,
                content_hash=digest,
                format=decoded.format,
                width=decoded.width,
                height=decoded.height,
                byte_size=len(data),
                features=features,
                model_input=prepare_image(view),
            )
        )
    layout = layout_vector(views[0])
    aligned = AlignedLayoutQuery(rgb, frame_aspect)
    t2 = time.perf_counter()
    analyses = complete(prepared)
    t3 = time.perf_counter()
    per_view = [p.features.vectors() for p in prepared]
    aspects: dict[str, Any] = {
        kind: np.stack([v[kind] for v in per_view]) if len(per_view) > 1 else per_view[0][kind]
        for kind in per_view[0]
    }
    aspects[LAYOUT_KIND] = layout
    aspects[ALIGNED_LAYOUT] = aligned
    scan_aspects = {k: per_view[0][k] for k in ("color", "pattern", "texture", "shape")}
    scan_aspects[LAYOUT_KIND] = layout
    scan_aspects[COARSE_KIND] = coarse_layout(layout)
    return QueryDescription(
        analysis=analyses[0],
        embeddings=np.stack([a.embedding for a in analyses]),
        aspects=aspects,
        scan_aspects=scan_aspects,
        timings={"decode": t1 - t0, "describe": t2 - t1, "cnn": t3 - t2},
    )
