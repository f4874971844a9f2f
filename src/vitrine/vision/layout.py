"""Colour layout of a photo, and matching it under small crops, rotations and shifts.

The *layout* is the photo squashed onto a ``GRID x GRID`` grid of cells, each cell the mean
colour of its pixels in CIELAB, every channel centred on its mean over the grid and the whole
vector scaled to unit length (a colour-layout descriptor in the spirit of MPEG-7's). Because the
photo is squashed onto the grid, the layout does not change when a photo is resized to another
aspect ratio; centring makes it insensitive to a global exposure or colour-cast offset. For
near-duplicate photos of one product (the catalogue photo and a larger copy of it) its cosine
similarity is close to 1, and it separates products that differ only in small details of
colour placement, where a global CNN embedding does not.

A shopper's photo is rarely framed exactly like the catalogue photo. :class:`AlignedLayoutQuery`
renders the query photo into the catalogue photo's frame under a fixed set of similarity
transforms (the query covering 80-100 % of the frame, at several positions, rotated by up to
10 degrees; also stretched to fill the frame when its aspect ratio differs from the catalogue's)
and scores a candidate by the best masked correlation between the rendered query and the
candidate's stored layout, over the cells the query covers. That is a brute-force geometric
verification on a tiny grid: about a hundred hypotheses scored against a hundred candidates is a
few small matrix products (a few milliseconds).

Cost at import: an exposure check, one ``INTER_AREA`` resize and a 100-pixel Lab conversion
(~0.15 ms per photo); 300 float32 per product.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

LAYOUT_KIND = "layout"
LAYOUT_VERSION = "layout-1"  # bump when the descriptor changes
GRID = 10
LAYOUT_DIM = GRID * GRID * 3
# Rendering samples each grid cell at this many points per side (4 gave the same hit rates).
_SUPERSAMPLE = 2
# A rendered cell counts when at least this share of it lies inside the query photo.
_MIN_COVER = 0.98
# At least this share of the cells must be covered for a hypothesis to count.
_MIN_CELLS = 0.5
# Exposure normalisation: the white point is this percentile of the per-pixel maximum channel.
_WHITE_PERCENTILE = 99.0
_MAX_GAIN = 1.6
_MIN_GAIN = 1.02  # below this the photo is left as it is


def normalise_exposure(rgb: np.ndarray) -> np.ndarray:
    """Brighten an under-exposed photo so that its white point reaches 255 (gain <= 1.6).

    The white point is the 99th percentile of each pixel's brightest channel. Photos whose
    white point is already (nearly) 255, as most studio product shots on white are, come
    back unchanged (the same array).
    """
    rgb = np.asarray(rgb)
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"expected an HxWx3 uint8 image, got {rgb.dtype} {rgb.shape}")
    r, g, b = cv2.split(rgb)
    brightest = cv2.max(cv2.max(r, g), b)
    counts = np.bincount(brightest.ravel(), minlength=256).cumsum()
    white = float(np.searchsorted(counts, counts[-1] * _WHITE_PERCENTILE / 100.0))
    gain = min(_MAX_GAIN, 255.0 / max(white, 1.0))
    if gain < _MIN_GAIN:
        return rgb
    lut = np.clip(np.arange(256, dtype=np.float32) * gain + 0.5, 0, 255).astype(np.uint8)
    return cv2.LUT(rgb, lut)


def _rgb_cells_to_layout(cells: np.ndarray) -> np.ndarray:
    """(..., C, 3) float RGB 0..255 cell means -> (..., C, 3) float32 Lab, channel-centred."""
    shape = cells.shape
    flat = np.clip(cells.reshape(1, -1, 3), 0.0, 255.0).astype(np.float32) * np.float32(1 / 255)
    lab = cv2.cvtColor(flat, cv2.COLOR_RGB2Lab).reshape(shape)
    return lab - lab.mean(axis=-2, keepdims=True)


def _unit(v: np.ndarray) -> np.ndarray:
    n = np.linalg.norm(v, axis=-1, keepdims=True)
    return (v / np.maximum(n, 1e-6)).astype(np.float32)


def layout_vector(rgb: np.ndarray) -> np.ndarray:
    """The colour layout of an RGB uint8 photo: ``LAYOUT_DIM`` float32, unit-L2 (or all zero
    for a photo of one flat colour)."""
    rgb = normalise_exposure(rgb)
    h, w = rgb.shape[:2]
    if h < GRID or w < GRID:  # upsample tiny photos first so that every cell gets pixels
        rgb = cv2.resize(rgb, (max(w, GRID), max(h, GRID)), interpolation=cv2.INTER_NEAREST)
    cells = cv2.resize(rgb.astype(np.float32), (GRID, GRID), interpolation=cv2.INTER_AREA)
    lab = _rgb_cells_to_layout(cells.reshape(GRID * GRID, 3))
    v = lab.ravel()
    if float(np.abs(v).max(initial=0.0)) < 1e-3:
        return np.zeros(LAYOUT_DIM, np.float32)
    return _unit(v)


@dataclass(frozen=True)
class Hypothesis:
    """The query photo's place in the catalogue frame (frame height 1, width = its aspect)."""

    scale_x: float  # width of the query in frame widths
    scale_y: float  # height of the query in frame heights
    angle: float  # degrees, counter-clockwise
    cx: float  # centre, in frame widths / heights (0..1)
    cy: float


def hypotheses(
    query_aspect: float,
    frame_aspect: float,
    scales: Sequence[float] = (1.0, 0.9, 0.8),
    angles: Sequence[float] = (-10.0, -5.0, 0.0, 5.0, 10.0),
    positions: int = 3,
) -> list[Hypothesis]:
    """Similarity transforms that place a query of ``query_aspect`` (w/h) in the frame.

    The query keeps its own aspect ratio, at each of ``scales`` (its larger relative side as
    a share of the frame's), ``positions`` x ``positions`` centres spread over the room left,
    and each of ``angles``. When the aspect ratios differ by more than 5 %, the same again
    with the query stretched to the frame's aspect ratio (a photo squashed to a square).
    """
    ratio = query_aspect / frame_aspect
    shapes = [(ratio, 1.0) if ratio <= 1.0 else (1.0, 1.0 / ratio)]
    if abs(math.log(ratio)) > 0.05:
        shapes.append((1.0, 1.0))
    out: list[Hypothesis] = []
    for rx, ry in shapes:
        for s in scales:
            sx, sy = s * rx, s * ry
            xs = _spread(sx, positions)
            ys = _spread(sy, positions)
            for angle in angles:
                out.extend(Hypothesis(sx, sy, float(angle), cx, cy) for cx in xs for cy in ys)
    return out


def _spread(size: float, positions: int) -> list[float]:
    room = 1.0 - size
    if room < 1e-3 or positions <= 1:
        return [0.5]
    return [0.5 + room * (i / (positions - 1) - 0.5) for i in range(positions)]


class AlignedLayoutQuery:
    """A query photo rendered into the catalogue frame under every hypothesis.

    Use as a reranker query aspect: :meth:`similarity` scores stored layouts (rows of
    ``LAYOUT_DIM``) by the best masked correlation over the hypotheses.
    """

    kind = LAYOUT_KIND

    def __init__(
        self,
        rgb: np.ndarray,
        frame_aspect: float,
        hyps: Sequence[Hypothesis] | None = None,
    ) -> None:
        if frame_aspect <= 0:
            raise ValueError(f"frame_aspect must be positive, got {frame_aspect}")
        rgb = normalise_exposure(rgb)
        h, w = rgb.shape[:2]
        self.hypotheses = list(hyps) if hyps is not None else hypotheses(w / h, frame_aspect)
        side = GRID * _SUPERSAMPLE
        # Shrink the photo to about twice the rendering's resolution (anti-aliasing).
        target = 2 * side
        if max(h, w) > target:
            f = target / max(h, w)
            rgb = cv2.resize(
                rgb, (max(1, round(w * f)), max(1, round(h * f))), interpolation=cv2.INTER_AREA
            )
            h, w = rgb.shape[:2]
        n = len(self.hypotheses)
        hp = np.array(
            [
                (hy.scale_x, hy.scale_y, math.radians(hy.angle), hy.cx, hy.cy)
                for hy in self.hypotheses
            ]
        ).reshape(n, 5, 1, 1)
        # Frame coordinates of the rendered pixel centres (frame height 1), relative to each
        # hypothesis' centre; then the inverse of f = R @ diag(ax, ay) @ (u - centre_q) + c_f.
        gy, gx = np.mgrid[0:side, 0:side].astype(np.float32)
        hp = hp.astype(np.float32)
        dx = (gx + 0.5) * np.float32(frame_aspect / side) - hp[:, 3] * np.float32(frame_aspect)
        dy = (gy + 0.5) * np.float32(1 / side) - hp[:, 4]
        cos, sin = np.cos(hp[:, 2]), np.sin(hp[:, 2])
        inv_ax = np.float32(w / frame_aspect) / hp[:, 0]  # query pixels per frame unit
        inv_ay = np.float32(h) / hp[:, 1]
        map_x = (cos * dx + sin * dy) * inv_ax + np.float32(w / 2 - 0.5)
        map_y = (cos * dy - sin * dx) * inv_ay + np.float32(h / 2 - 0.5)
        map_x = map_x.reshape(n * side, side)
        map_y = map_y.reshape(n * side, side)
        inside = (
            (map_x >= -0.5) & (map_x <= w - 0.5) & (map_y >= -0.5) & (map_y <= h - 0.5)
        ).astype(np.float32)
        rendered = cv2.remap(rgb, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        # Exact block means (the sizes divide evenly).
        cells = cv2.resize(
            rendered.astype(np.float32), (GRID, n * GRID), interpolation=cv2.INTER_AREA
        ).reshape(n, GRID * GRID, 3)
        cover = cv2.resize(inside, (GRID, n * GRID), interpolation=cv2.INTER_AREA).reshape(
            n, GRID * GRID
        )
        lab = _rgb_cells_to_layout(cells)  # centring is redone per mask in similarity()
        mask = (cover >= _MIN_COVER).astype(np.float32)
        keep = mask.sum(axis=1) >= _MIN_CELLS * GRID * GRID
        if not keep.any():  # no hypothesis covers enough of the frame: the squashed photo
            whole = cv2.resize(rgb.astype(np.float32), (GRID, GRID), interpolation=cv2.INTER_AREA)
            lab = _rgb_cells_to_layout(whole.reshape(1, GRID * GRID, 3))
            mask = np.ones((1, GRID * GRID), np.float32)
            keep = np.ones(1, bool)
        self._lab = np.ascontiguousarray(lab[keep] * mask[keep][:, :, None])
        self._mask = np.ascontiguousarray(mask[keep])

    def similarity(self, layouts: np.ndarray) -> np.ndarray:
        """Best masked correlation with each row of ``layouts`` (N x LAYOUT_DIM) -> (N,)."""
        layouts = np.asarray(layouts, dtype=np.float32)
        if layouts.ndim != 2 or layouts.shape[1] != LAYOUT_DIM:
            raise ValueError(f"expected N x {LAYOUT_DIM} layouts, got {layouts.shape}")
        if len(layouts) == 0:
            return np.zeros(0, np.float32)
        cand = layouts.reshape(len(layouts), GRID * GRID, 3)
        m = self._mask  # H x C
        count = m.sum(axis=1)[:, None]  # H x 1
        cov = np.zeros((len(m), len(cand)), np.float64)
        var_q = np.zeros((len(m), 1), np.float64)
        var_c = np.zeros((len(m), len(cand)), np.float64)
        for ch in range(3):
            q = self._lab[:, :, ch]  # H x C (zero outside the mask)
            c = np.ascontiguousarray(cand[:, :, ch])  # N x C
            sq = q.sum(axis=1)[:, None]
            smc = m @ c.T
            cov += q @ c.T - sq * smc / count
            var_q += (q * q).sum(axis=1)[:, None] - sq * sq / count
            var_c += m @ (c * c).T - smc * smc / count
        corr = cov / np.sqrt(np.maximum(var_q * var_c, 1e-12))
        return corr.max(axis=0).astype(np.float32)


COARSE_KIND = "layout_coarse"
COARSE_GRID = GRID // 2
COARSE_DIM = COARSE_GRID * COARSE_GRID * 3


def coarse_layout(layouts: np.ndarray) -> np.ndarray:
    """Layouts (``LAYOUT_DIM`` or N x ``LAYOUT_DIM``) pooled to a 5 x 5 grid, unit rows.

    A quarter of the size, for scanning the whole catalogue cheaply; derived, not stored.
    """
    v = np.asarray(layouts, dtype=np.float32)
    single = v.ndim == 1
    v = np.atleast_2d(v)
    if v.shape[1] != LAYOUT_DIM:
        raise ValueError(f"expected layouts of {LAYOUT_DIM} values, got {v.shape}")
    grid = v.reshape(len(v), COARSE_GRID, 2, COARSE_GRID, 2, 3).mean(axis=(2, 4))
    out = _unit(grid.reshape(len(v), COARSE_DIM))
    out[np.abs(v).max(axis=1) == 0] = 0.0
    return out[0] if single else out
