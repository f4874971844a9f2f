"""Foreground (product) mask estimation for studio photos on a plain background.

The background colour is modelled from a band of border pixels in CIELAB as a robust plane
(``c0 + c1*x + c2*y`` per channel: handles the soft light gradients of studio shots). Pixels
far from that model - with a threshold adapted to the border's own spread - are foreground; the
mask is cleaned with morphology, small components are dropped and holes are filled; closed
outlines (Canny edges of the lightness) also count, so that a white product on white with a
visible contour is still found. When the border is busy (no plain background) or the mask is
degenerate (almost empty - e.g. a white product on white without any contour - or almost
everything) a central-region mask (the whole image when tiny) is returned instead, with
``background_uniform=False``: that flag is True only for a real segmentation against a plain
background.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np

from vitrine.vision.palette import rgb_to_lab

# Weight of lightness differences in the background distance: soft shadows mostly change L.
_L_WEIGHT = 0.6
# Border pixels within this distance of the background model count as background.
_INLIER_DIST = 9.0
# Minimum share of border pixels that must look like background for a "plain" background.
_MIN_INLIER_SHARE = 0.6
_MIN_THRESHOLD = 7.0
_MAX_THRESHOLD = 22.0
_MIN_RATIO = 0.01
_MAX_RATIO = 0.97
_FALLBACK_MARGIN = 0.1
_CANNY_LOW = 25
_CANNY_HIGH = 50


@dataclass(frozen=True)
class Foreground:
    """Foreground estimate: ``mask`` is bool HxW; ``ratio`` its share of the image."""

    mask: np.ndarray
    background_uniform: bool
    background_lab: tuple[float, float, float]
    ratio: float


def quantile(x: np.ndarray, q: float, axis: int | None = None) -> np.ndarray:
    """Lower ``q`` quantile (0..1) by partial sort: much cheaper than np.percentile on the
    small arrays used here. ``x`` must not be empty."""
    arr = np.asarray(x)
    if axis is None:
        arr, axis = arr.ravel(), 0
    n = arr.shape[axis]
    k = min(n - 1, max(0, int(q * (n - 1))))
    return np.partition(arr, k, axis=axis).take(k, axis=axis)


def _band_width(h: int, w: int) -> int:
    """Width of the border band used to model the background."""
    return max(1, round(0.04 * min(h, w)))


def _border_band(h: int, w: int, width: int | None = None) -> np.ndarray:
    """Bool HxW mask of a border band (default: a few percent of the short side)."""
    band = _band_width(h, w) if width is None else width
    m = np.zeros((h, w), dtype=bool)
    m[:band, :] = True
    m[-band:, :] = True
    m[:, :band] = True
    m[:, -band:] = True
    return m


@lru_cache(maxsize=32)
def _geometry(h: int, w: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For an HxW image: flat indices of the border band pixels, their plane design matrix
    [1, x, y] (x and y scaled to -1..1) and the same as an HxWx3 image (for cv2.transform)."""
    xr = np.linspace(-1.0, 1.0, w, dtype=np.float32)
    yr = np.linspace(-1.0, 1.0, h, dtype=np.float32)
    coords = np.empty((h, w, 3), dtype=np.float32)
    coords[..., 0] = 1.0
    coords[..., 1] = xr[None, :]
    coords[..., 2] = yr[:, None]
    idx = np.flatnonzero(_border_band(h, w))
    design = coords.reshape(-1, 3)[idx]
    for arr in (idx, design, coords):
        arr.setflags(write=False)  # cached and shared between calls
    return idx, design, coords


_DIST_WEIGHTS = np.array([[_L_WEIGHT**2, 1.0, 1.0]], dtype=np.float32)


def _weighted_dist(diff: np.ndarray) -> np.ndarray:
    """Lab difference (N, 3) -> distance with down-weighted lightness."""
    return np.sqrt((diff * diff) @ _DIST_WEIGHTS[0])


def _solve_plane(design: np.ndarray, vals: np.ndarray, keep: np.ndarray) -> np.ndarray | None:
    """Least-squares plane through the kept rows: coefficients 3 x 3 (constant, x, y rows per
    Lab channel), or None if the system is singular."""
    weighted = design * keep[:, None].astype(np.float32)
    ok, sol = cv2.solve(weighted.T @ design, weighted.T @ vals, flags=cv2.DECOMP_LU)
    return sol if ok else None


def _fit_background(lab: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """Robust plane fit of the border: (coefficients 3x3, border residuals, inlier share)."""
    h, w = lab.shape[:2]
    idx, design, _ = _geometry(h, w)
    vals = lab.reshape(-1, 3)[idx]
    med = quantile(vals, 0.5, axis=0)
    coef = np.zeros((3, 3), dtype=np.float32)
    coef[0] = med
    keep = _weighted_dist(vals - med) < 2.0 * _INLIER_DIST
    for _ in range(2):
        if keep.sum() < 8:
            break
        sol = _solve_plane(design, vals, keep)
        if sol is None:
            break
        coef = sol
        keep = _weighted_dist(vals - design @ coef) < _INLIER_DIST
    resid = _weighted_dist(vals - design @ coef)
    return coef, resid, float(np.mean(resid < _INLIER_DIST))


def _background_distance(lab: np.ndarray, coef: np.ndarray) -> np.ndarray:
    """Weighted Lab distance of every pixel to the background plane model (float32 HxW)."""
    _, _, coords = _geometry(*lab.shape[:2])
    diff = cv2.subtract(lab, cv2.transform(coords, np.ascontiguousarray(coef.T)))
    return cv2.sqrt(cv2.transform(cv2.multiply(diff, diff), _DIST_WEIGHTS))


def _fill_holes(mask: np.ndarray) -> np.ndarray:
    """Fill regions of background not connected to the image border."""
    h, w = mask.shape
    padded = np.zeros((h + 2, w + 2), dtype=np.uint8)
    padded[1:-1, 1:-1] = mask
    flood = padded.copy()
    ff_mask = np.zeros((h + 4, w + 4), dtype=np.uint8)
    cv2.floodFill(flood, ff_mask, (0, 0), 2)
    return (flood[1:-1, 1:-1] != 2).astype(np.uint8)


def _keep_significant(mask: np.ndarray) -> np.ndarray:
    """Drop connected components much smaller than the largest one."""
    n, labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    if n <= 2:
        return mask
    areas = stats[1:, cv2.CC_STAT_AREA]
    min_area = max(0.08 * float(areas.max()), 0.002 * mask.size)
    keep = np.zeros(n, dtype=np.uint8)
    keep[1:] = areas >= min_area
    return keep[labels]


def _edges(lightness: np.ndarray) -> np.ndarray:
    """Canny edges of the lightness channel (uint8 0/1)."""
    l8 = np.clip(lightness * 2.55, 0, 255).astype(np.uint8)
    e = cv2.Canny(l8, _CANNY_LOW, _CANNY_HIGH, L2gradient=True)
    # Frames and vignetting at the very border are not product outlines.
    b = _band_width(*e.shape) + 1
    e[:b], e[-b:], e[:, :b], e[:, -b:] = 0, 0, 0, 0
    return cv2.threshold(e, 0, 1, cv2.THRESH_BINARY)[1]


def central_mask(h: int, w: int) -> np.ndarray:
    """Fallback mask: the central region (whole image when tiny)."""
    m = np.zeros((h, w), dtype=bool)
    if min(h, w) < 10:
        m[:] = True
        return m
    dy, dx = round(_FALLBACK_MARGIN * h), round(_FALLBACK_MARGIN * w)
    m[dy : h - dy, dx : w - dx] = True
    return m


def _result(mask: np.ndarray, uniform: bool, bg: np.ndarray) -> Foreground:
    return Foreground(
        mask=mask,
        background_uniform=uniform,
        background_lab=(float(bg[0]), float(bg[1]), float(bg[2])),
        ratio=float(mask.mean()) if mask.size else 0.0,
    )


def estimate_foreground(rgb: np.ndarray, lab: np.ndarray | None = None) -> Foreground:
    """Estimate the product mask of an RGB uint8 HxWx3 photo (``lab``: its CIELAB, if known)."""
    h, w = rgb.shape[:2]
    if lab is None:
        lab = rgb_to_lab(rgb)
    if min(h, w) < 4:
        bg = quantile(lab.reshape(-1, 3), 0.5, axis=0)
        return _result(central_mask(h, w), False, bg)

    coef, resid, inlier_share = _fit_background(lab)
    bg = coef[0]  # background colour at the image centre
    if inlier_share < _MIN_INLIER_SHARE:
        return _result(central_mask(h, w), False, bg)

    spread = float(quantile(resid[resid < _INLIER_DIST], 0.9))
    threshold = float(np.clip(2.0 * spread + 4.0, _MIN_THRESHOLD, _MAX_THRESHOLD))

    dist = _background_distance(lab, coef)
    mask = (dist > threshold).astype(np.uint8)

    k = max(1, round(min(h, w) / 64))
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * k + 1, 2 * k + 1))
    mask = cv2.morphologyEx(mask, cv2.MORPH_OPEN, kernel)
    mask = cv2.morphologyEx(mask, cv2.MORPH_CLOSE, kernel, iterations=2)
    # Outline cue: products close to the background colour (white on white) usually still
    # have a visible contour; closed contours become regions after hole filling, and the
    # opening drops open edge fragments.
    edges = _edges(lab[..., 0])
    region = cv2.morphologyEx(mask | edges, cv2.MORPH_CLOSE, kernel, iterations=2)
    region = cv2.morphologyEx(_fill_holes(region), cv2.MORPH_OPEN, kernel, iterations=2)
    mask = _keep_significant(mask | region)
    mask = _fill_holes(mask)

    ratio = float(mask.mean())
    if not _MIN_RATIO <= ratio <= _MAX_RATIO:
        return _result(central_mask(h, w), False, bg)
    return _result(mask.astype(bool), True, bg)
