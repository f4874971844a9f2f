"""Silhouette shape features of the product mask.

Scalars: bounding-box aspect ratio (width / height), fill ratio (mask area / bbox area),
solidity (mask area / convex hull area) and log-scaled Hu moments. Plus two small maps of the
silhouette, cropped to its bounding box and padded to a square (so that they also encode the
aspect ratio): an 8x8 occupancy grid and a HOG descriptor (9 unsigned orientations, 4x4 cells of
16 px on a 64x64 rendering, L2-Hys normalised) computed with OpenCV/NumPy for speed.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

_CANVAS = 64
_HOG_CELL = 16
_HOG_BINS = 9
_GRID = 8
_HOG_DIM = (_CANVAS // _HOG_CELL) ** 2 * _HOG_BINS
_SCALAR_DIM = 4 + 7
_HU_CLIP = 20.0
SHAPE_DIM = _SCALAR_DIM + _GRID * _GRID + _HOG_DIM
_ys, _xs = np.mgrid[0:_CANVAS, 0:_CANVAS]
# Index of each canvas pixel's first HOG bin.
_HOG_CELL_BASE = ((_ys // _HOG_CELL) * (_CANVAS // _HOG_CELL) + _xs // _HOG_CELL) * _HOG_BINS
# Weights of the blocks in the descriptor: scalars keep their (about 0..1) scale, the occupancy
# grid and the HOG are unit-normalised first.
_W_SCALARS, _W_GRID, _W_HOG = 0.6, 1.0, 1.0


@dataclass(frozen=True)
class ShapeFeatures:
    """Shape descriptor (``vector``, unit-L2 float32) and its scalar measurements."""

    vector: np.ndarray
    aspect_ratio: float
    fill_ratio: float
    solidity: float
    hu_moments: tuple[float, ...]
    bbox: tuple[int, int, int, int]  # x, y, width, height in the analysed image

    def summary(self) -> dict[str, object]:
        return {
            "aspect_ratio": self.aspect_ratio,
            "fill_ratio": self.fill_ratio,
            "solidity": self.solidity,
            "hu_moments": list(self.hu_moments),
        }


def _square_crop(mask: np.ndarray, bbox: tuple[int, int, int, int]) -> np.ndarray:
    """The bbox crop of the mask, centred on a square canvas, as float32 0..1 CANVAS x CANVAS."""
    x, y, w, h = bbox
    side = max(w, h)
    canvas = np.zeros((side, side), dtype=np.float32)
    oy, ox = (side - h) // 2, (side - w) // 2
    canvas[oy : oy + h, ox : ox + w] = mask[y : y + h, x : x + w]
    interp = cv2.INTER_AREA if side > _CANVAS else cv2.INTER_LINEAR
    return cv2.resize(canvas, (_CANVAS, _CANVAS), interpolation=interp)


def hog(img: np.ndarray) -> np.ndarray:
    """HOG of a float32 CANVAS x CANVAS image: 9 unsigned bins per 16x16 cell, L2-Hys."""
    gx = cv2.Sobel(img, cv2.CV_32F, 1, 0, ksize=1)
    gy = cv2.Sobel(img, cv2.CV_32F, 0, 1, ksize=1)
    mag, ang = cv2.cartToPolar(gx, gy, angleInDegrees=True)
    pos = (ang % 180.0) * (_HOG_BINS / 180.0) - 0.5  # soft binning between bin centres
    lo = np.floor(pos)
    frac = pos - lo
    b0 = lo.astype(np.int64) % _HOG_BINS
    b1 = (b0 + 1) % _HOG_BINS
    size = _HOG_DIM
    hist = np.bincount((_HOG_CELL_BASE + b0).ravel(), (mag * (1 - frac)).ravel(), size)
    hist += np.bincount((_HOG_CELL_BASE + b1).ravel(), (mag * frac).ravel(), size)
    norm = np.linalg.norm(hist)
    if norm < 1e-9:
        return np.zeros(size, dtype=np.float32)
    hist = np.minimum(hist / norm, 0.2)
    return (hist / max(np.linalg.norm(hist), 1e-12)).astype(np.float32)


def _hu_log(mask_u8: np.ndarray) -> np.ndarray:
    """Log-scaled Hu moments ``-sign(h) * log10(|h|)``, with |h| floored at 1e-30."""
    hu = cv2.HuMoments(cv2.moments(mask_u8, binaryImage=True)).ravel()
    sign = np.where(hu < 0, -1.0, 1.0)
    return -sign * np.log10(np.maximum(np.abs(hu), 1e-30))


def shape_features(mask: np.ndarray) -> ShapeFeatures:
    """Shape descriptor of a bool silhouette mask (the whole image if the mask is empty)."""
    mask_u8 = np.ascontiguousarray(mask, dtype=np.uint8)
    if not mask_u8.any():
        mask_u8 = np.ones_like(mask_u8)
    x, y, w, h = cv2.boundingRect(mask_u8)
    area = float(mask_u8.sum())
    aspect = w / h
    fill = area / float(w * h)

    contours, _ = cv2.findContours(mask_u8, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    hull_img = np.zeros_like(mask_u8)
    cv2.fillConvexPoly(hull_img, cv2.convexHull(np.concatenate(contours)), 1)
    solidity = min(1.0, area / max(float(np.count_nonzero(hull_img | mask_u8)), 1.0))
    hu = _hu_log(mask_u8)

    canvas = _square_crop(mask_u8, (x, y, w, h))
    grid = cv2.resize(canvas, (_GRID, _GRID), interpolation=cv2.INTER_AREA).ravel()
    scalars = np.concatenate(
        [
            [np.clip(np.log2(aspect), -3.0, 3.0) / 3.0, fill, solidity, area / mask_u8.size],
            # Magnitudes only: the signs of the higher moments flip with noise.
            np.minimum(np.abs(hu), _HU_CLIP) / _HU_CLIP,
        ]
    )
    grid /= max(float(np.linalg.norm(grid)), 1e-12)
    vec = np.concatenate([scalars * _W_SCALARS, grid * _W_GRID, hog(canvas) * _W_HOG])
    vec = vec.astype(np.float32)
    vec /= max(float(np.linalg.norm(vec)), 1e-12)
    return ShapeFeatures(
        vector=vec,
        aspect_ratio=float(aspect),
        fill_ratio=float(fill),
        solidity=float(solidity),
        hu_moments=tuple(float(v) for v in hu),
        bbox=(int(x), int(y), int(w), int(h)),
    )
