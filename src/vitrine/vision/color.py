"""Colour features of the product: named dominant colours and a compact colour histogram.

Colours are measured on the core of the foreground (away from its outline). Dominant colours
come from k-means (k <= 5, OpenCV, k-means++ with a fixed seed: deterministic; note that this
reseeds OpenCV's RNG of the calling thread) in CIELAB on a deterministic subsample of at most
1200 pixels; clusters closer than a CIE94 threshold are merged (more generously within one hue
family) and tiny ones are folded into their nearest neighbour; each is named by CIEDE2000
against the palette. The primary colour is "Multi" when no hue family dominates. The histogram
is a joint Lab histogram (4 lightness x 5 x 5 chroma bins with a neutral band), square-rooted
so that it is unit-L2 (Hellinger form).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from vitrine.vision.foreground import Foreground, quantile
from vitrine.vision.palette import (
    COLOR_FAMILY,
    MULTI,
    approximate_families,
    lab_to_rgb,
    name_colors,
    rgb_to_hex,
    rgb_to_lab,
)

MAX_COLORS = 5
_MAX_SAMPLES = 1200
# Colours are measured on the product pixels farther from its outline than this percentile.
_CORE_PERCENTILE = 35
_KMEANS_ITERS = 10
_SEED = 12345
# Clusters closer than this (CIE94) are merged; more generously within one hue family
# (shading of one material: black and charcoal folds, light and dark blue of one denim).
_MERGE = 9.0
_MERGE_FAMILY = 16.0
_MIN_SHARE = 0.03
# "Multi" when no hue family covers this share and at least three families are substantial.
_MULTI_TOP_SHARE = 0.4
_MULTI_MIN_SHARE = 0.15
_SECONDARY_MIN_SHARE = 0.1

# Joint Lab histogram: L in 4 bins (edges 25, 50, 75), a and b in 5 bins each (edges -24, -8,
# 8, 24: a neutral band in the middle). Computed as a uniform histogram with 8-unit chroma bins
# over -128..128, then summed into the coarse chroma bins.
_FINE_SIZE = [4, 32, 32]
_FINE_RANGES = [0.0, 100.0001, -128.0, 128.0, -128.0, 128.0]
_AB_STARTS = np.array([0, 13, 15, 17, 19])  # fine-bin index where each coarse bin starts
HISTOGRAM_DIM = 4 * 5 * 5


@dataclass(frozen=True)
class NamedColor:
    """One dominant colour: palette name, share of the foreground, Lab and sRGB hex."""

    name: str
    share: float
    lab: tuple[float, float, float]
    rgb_hex: str

    def to_dict(self) -> dict[str, object]:
        return {
            "name": self.name,
            "share": self.share,
            "lab": list(self.lab),
            "hex": self.rgb_hex,
        }


@dataclass(frozen=True)
class ColorFeatures:
    """Dominant colours (by share, shares sum to 1), primary/secondary names, histogram."""

    colors: tuple[NamedColor, ...]
    primary: str
    secondary: str | None
    histogram: np.ndarray

    def summary(self) -> dict[str, object]:
        return {
            "primary": self.primary,
            "secondary": self.secondary,
            "colors": [c.to_dict() for c in self.colors],
        }


def _core(mask: np.ndarray) -> np.ndarray:
    """The core of the product: pixels away from its outline (rims blend with the background;
    shadows, hands and legs of a model sit at the periphery), unless too little is left."""
    dt = cv2.distanceTransform(np.pad(mask, 1).astype(np.uint8), cv2.DIST_L2, 3)[1:-1, 1:-1]
    core = dt >= max(1.5, float(quantile(dt[mask], _CORE_PERCENTILE / 100.0)))
    return core if core.sum() >= 0.3 * mask.sum() else mask


def _subsample(pts: np.ndarray, limit: int) -> np.ndarray:
    """Deterministic evenly strided subsample of at most ``limit`` rows."""
    if len(pts) <= limit:
        return pts
    idx = np.linspace(0, len(pts) - 1, limit).astype(np.int64)
    return pts[idx]


def _kmeans(pts: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """k-means (OpenCV, k-means++ init, fixed seed: deterministic). Returns (centres, counts)."""
    k = min(k, len(pts))
    cv2.setRNGSeed(_SEED)
    criteria = (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_MAX_ITER, _KMEANS_ITERS, 0.5)
    _, labels, centres = cv2.kmeans(pts, k, None, criteria, 1, cv2.KMEANS_PP_CENTERS)
    counts = np.bincount(labels.ravel(), minlength=k).astype(np.float64)
    keep = counts > 0
    return centres[keep].astype(np.float64), counts[keep]


def _delta_e_94(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Symmetric CIE94 colour difference of broadcastable Lab arrays (cheap; for merging)."""
    d = x - y
    c1, c2 = np.hypot(x[..., 1], x[..., 2]), np.hypot(y[..., 1], y[..., 2])
    dc = c1 - c2
    dh2 = np.maximum(d[..., 1] ** 2 + d[..., 2] ** 2 - dc**2, 0.0)
    c = np.sqrt(c1 * c2)
    return np.sqrt(d[..., 0] ** 2 + (dc / (1 + 0.045 * c)) ** 2 + dh2 / (1 + 0.015 * c) ** 2)


def _merge(centres: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Merge near-duplicate clusters (CIE94; more generously within one hue family), then fold
    tiny clusters into their nearest neighbour. Returns (centres, weights, palette names)."""
    centres, weights = centres.copy(), weights.copy()
    fams = np.array(approximate_families(centres))
    d = _delta_e_94(centres[:, None, :], centres[None, :, :])
    np.fill_diagonal(d, np.inf)
    while len(centres) > 1:
        excess = d - np.where(fams[:, None] == fams[None, :], _MERGE_FAMILY, _MERGE)
        i, j = np.unravel_index(int(np.argmin(excess)), d.shape)
        if excess[i, j] >= 0.0:
            if not (weights / weights.sum() < _MIN_SHARE).any():
                break
            i = int(np.argmin(weights))
            j = int(np.argmin(d[i]))
        if weights[i] > weights[j]:
            fams[j] = fams[i]  # the merged cluster keeps the family of its larger part
        w = weights[i] + weights[j]
        centres[j] = (centres[i] * weights[i] + centres[j] * weights[j]) / w
        weights[j] = w
        row = _delta_e_94(centres[j], centres)
        d[j, :], d[:, j] = row, row
        d[j, j] = np.inf
        keep = np.arange(len(centres)) != i
        centres, weights, fams = centres[keep], weights[keep], fams[keep]
        d = d[keep][:, keep]
    return centres, weights, name_colors(centres)


def _histogram(lab: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Joint Lab histogram of the masked pixels, square-rooted and unit-L2 (float32)."""
    fine = cv2.calcHist([lab], [0, 1, 2], mask.astype(np.uint8), _FINE_SIZE, _FINE_RANGES)
    # Sum the uniform fine bins into the coarse (non-uniform) chroma bins.
    coarse = np.add.reduceat(np.add.reduceat(fine, _AB_STARTS, axis=1), _AB_STARTS, axis=2)
    hist = coarse.ravel()
    total = float(hist.sum())
    if total <= 0:
        return np.zeros(HISTOGRAM_DIM, dtype=np.float32)
    return np.sqrt(hist / total).astype(np.float32)


def _primary_secondary(colors: list[NamedColor]) -> tuple[str, str | None]:
    """Primary and secondary colour names; "Multi" when no hue family dominates."""
    shares: dict[str, float] = {}
    families: dict[str, float] = {}
    for c in colors:
        shares[c.name] = shares.get(c.name, 0.0) + c.share
        fam = COLOR_FAMILY[c.name]
        families[fam] = families.get(fam, 0.0) + c.share
    ranked = sorted(shares.items(), key=lambda kv: -kv[1])
    fam_shares = sorted(families.values(), reverse=True)
    substantial = [s for s in fam_shares if s >= _MULTI_MIN_SHARE]
    if fam_shares[0] < _MULTI_TOP_SHARE and len(substantial) >= 3:
        return MULTI, ranked[0][0]
    if len(ranked) > 1 and ranked[1][1] >= _SECONDARY_MIN_SHARE:
        return ranked[0][0], ranked[1][0]
    return ranked[0][0], None


def color_features(rgb: np.ndarray, fg: Foreground, lab: np.ndarray | None = None) -> ColorFeatures:
    """Colour features of the foreground of an RGB uint8 image (``lab``: its CIELAB, if known)."""
    if lab is None:
        lab = rgb_to_lab(rgb)
    mask = fg.mask if fg.mask.any() else np.ones(lab.shape[:2], dtype=bool)
    mask = _core(mask)
    histogram = _histogram(lab, mask)
    idx = _subsample(np.flatnonzero(mask), _MAX_SAMPLES)
    pixels = np.ascontiguousarray(lab.reshape(-1, 3)[idx], dtype=np.float32)
    centres, weights = _kmeans(pixels, MAX_COLORS)
    centres, weights, names = _merge(centres, weights)
    order = np.argsort(-weights, kind="stable")
    centres, weights, names = centres[order], weights[order], [names[i] for i in order]
    shares = weights / weights.sum()
    rgbs = lab_to_rgb(centres)
    colors = [
        NamedColor(
            name=names[i],
            share=float(shares[i]),
            lab=(float(centres[i, 0]), float(centres[i, 1]), float(centres[i, 2])),
            rgb_hex=rgb_to_hex(rgbs[i]),
        )
        for i in range(len(centres))
    ]
    primary, secondary = _primary_secondary(colors)
    return ColorFeatures(
        colors=tuple(colors), primary=primary, secondary=secondary, histogram=histogram
    )
