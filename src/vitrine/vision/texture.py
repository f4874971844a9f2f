"""Texture features of the product: multi-scale uniform LBP histograms and GLCM statistics.

Rotation-invariant uniform local binary patterns (bilinear sampling as in scikit-image, with a
small noise tolerance so that flat JPEG areas read as flat) are histogrammed on the interior of
the foreground: P=8, R=1 at the given scale, and P=8, R=1 plus P=16, R=2 at half that scale.
Grey-level co-occurrence statistics (contrast, dissimilarity, homogeneity, energy, correlation,
ASM; distance 1 at 0/45/90/135 degrees, 16 grey levels) are computed at half scale on foreground
pixel pairs only. The half-scale part keeps the descriptor comparable between a small catalogue
photo and a sharper, larger photo of the same product (fine-scale LBP alone is not). Everything
is implemented with OpenCV/NumPy primitives for speed; the definitions follow ``skimage.feature``.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np

# (scale, P, R): scale 1 is the given image, 2 is half its resolution.
_LBP_CONFIGS: tuple[tuple[int, int, float], ...] = ((1, 8, 1.0), (2, 8, 1.0), (2, 16, 2.0))
# Weight of the fine-scale LBP block (it does not carry over between image resolutions).
_FINE_WEIGHT = 0.7
# Neighbour must exceed the centre by this many grey levels to count as "1".
_LBP_TOLERANCE = 2
_GLCM_LEVELS = 16
_GLCM_OFFSETS: tuple[tuple[int, int], ...] = ((0, 1), (1, 1), (1, 0), (1, -1))  # (dy, dx)
GLCM_PROPS: tuple[str, ...] = (
    "contrast",
    "dissimilarity",
    "homogeneity",
    "energy",
    "correlation",
    "ASM",
)
TEXTURE_DIM = sum(p + 2 for _, p, _ in _LBP_CONFIGS) + len(GLCM_PROPS) * len(_GLCM_OFFSETS)


@dataclass(frozen=True)
class TextureFeatures:
    """Texture descriptor (``vector``, unit-L2 float32) and a JSON-ready summary."""

    vector: np.ndarray
    lbp: tuple[np.ndarray, ...]  # histograms in _LBP_CONFIGS order
    glcm: dict[str, tuple[float, ...]]  # per angle, at half scale

    def summary(self) -> dict[str, float]:
        out = {name: float(np.mean(vals)) for name, vals in self.glcm.items()}
        p8 = self.lbp[1]  # P=8, R=1 at half scale
        out["lbp_flat_share"] = float(p8[0] + p8[8])  # all-below / all-above-or-equal codes
        out["lbp_nonuniform_share"] = float(p8[-1])
        nz = p8[p8 > 0]
        out["lbp_entropy"] = float(-(nz * np.log2(nz)).sum())
        return out


def _uniform_lut(p: int) -> np.ndarray:
    """Map a P-bit LBP code to its rotation-invariant uniform label (0..P+1)."""
    codes = np.arange(1 << p, dtype=np.int64)
    bits = (codes[:, None] >> np.arange(p)) & 1
    transitions = np.sum(bits != np.roll(bits, 1, axis=1), axis=1)
    ones = bits.sum(axis=1)
    return np.where(transitions <= 2, ones, p + 1).astype(np.uint8)


_LUTS: dict[int, np.ndarray] = {p: _uniform_lut(p) for p in sorted({p for _, p, _ in _LBP_CONFIGS})}


@lru_cache(maxsize=8)
def _neighbour_kernels(p: int, r: float) -> tuple[tuple[int, int, np.ndarray | None], ...]:
    """Per neighbour: integer offset (dy, dx) or a bilinear-sampling kernel for filter2D."""
    out: list[tuple[int, int, np.ndarray | None]] = []
    c = int(np.ceil(r))
    for i in range(p):
        angle = 2.0 * np.pi * i / p
        dy, dx = round(-r * np.sin(angle), 6), round(r * np.cos(angle), 6)
        if dy == int(dy) and dx == int(dx):
            out.append((int(dy), int(dx), None))
            continue
        k = np.zeros((2 * c + 1, 2 * c + 1), dtype=np.float32)
        y0, x0 = int(np.floor(dy)), int(np.floor(dx))
        fy, fx = dy - y0, dx - x0
        k[c + y0, c + x0] = (1 - fy) * (1 - fx)
        k[c + y0, c + x0 + 1] = (1 - fy) * fx
        k[c + y0 + 1, c + x0] = fy * (1 - fx)
        k[c + y0 + 1, c + x0 + 1] = fy * fx
        out.append((0, 0, k))
    return tuple(out)


def lbp_uniform(gray: np.ndarray, p: int, r: float) -> np.ndarray:
    """Rotation-invariant uniform LBP labels (uint8 HxW, values 0..P+1) of a grey image.

    A neighbour (bilinearly sampled on the circle of radius ``r``, image border replicated)
    counts as 1 when it is at least the centre plus a small noise tolerance.
    """
    h, w = gray.shape
    c = int(np.ceil(r))
    src = gray.astype(np.float32)
    padded = cv2.copyMakeBorder(src, c, c, c, c, cv2.BORDER_REPLICATE)
    centre = src + np.float32(_LBP_TOLERANCE)
    code = np.zeros((h, w), dtype=np.uint16)
    bit = np.empty((h, w), dtype=np.uint16)
    for i, (dy, dx, kernel) in enumerate(_neighbour_kernels(p, r)):
        if kernel is None:
            nb = padded[c + dy : c + dy + h, c + dx : c + dx + w]
        else:
            nb = cv2.filter2D(src, -1, kernel, borderType=cv2.BORDER_REPLICATE)
        np.greater_equal(nb, centre, out=bit, casting="unsafe")
        bit <<= np.uint16(i)
        code |= bit
    return _LUTS[p][code]


def _glcm_props(q: np.ndarray, mask: np.ndarray) -> dict[str, np.ndarray]:
    """GLCM properties at the four angles, from foreground pixel pairs of a quantised image."""
    h, w = q.shape
    n = _GLCM_LEVELS
    m1 = n + 1  # level n marks background pixels; their pairs are dropped below
    qm = np.where(mask, q, n).astype(np.uint16)
    codes = []
    for k, (dy, dx) in enumerate(_GLCM_OFFSETS):
        y0, y1 = max(0, -dy), h - max(0, dy)
        x0, x1 = max(0, -dx), w - max(0, dx)
        a = qm[y0:y1, x0:x1]
        b = qm[y0 + dy : y1 + dy, x0 + dx : x1 + dx]
        codes.append((a * np.uint16(m1) + b + np.uint16(k * m1 * m1)).ravel())
    nk = len(_GLCM_OFFSETS)
    counts = np.bincount(np.concatenate(codes), minlength=nk * m1 * m1).reshape(nk, m1, m1)
    mats = counts[:, :n, :n].astype(np.float64)
    mats += mats.transpose(0, 2, 1)
    totals = mats.sum(axis=(1, 2))
    empty = totals <= 0
    mats[empty] = np.eye(n) / n
    totals[empty] = 1.0
    mats /= totals[:, None, None]
    i, j = np.ogrid[0:n, 0:n]
    diff2 = (i - j) ** 2
    contrast = np.sum(mats * diff2, axis=(1, 2))
    dissimilarity = np.sum(mats * np.sqrt(diff2), axis=(1, 2))
    homogeneity = np.sum(mats / (1.0 + diff2), axis=(1, 2))
    asm = np.sum(mats**2, axis=(1, 2))
    levels = np.arange(n, dtype=np.float64)
    pi = mats.sum(axis=2)
    mu = pi @ levels
    var = pi @ levels**2 - mu**2
    cov = (mats @ levels) @ levels - mu * mu
    with np.errstate(invalid="ignore", divide="ignore"):
        corr = np.where(var > 1e-12, cov / np.maximum(var, 1e-12), 1.0)
    return {
        "contrast": contrast,
        "dissimilarity": dissimilarity,
        "homogeneity": homogeneity,
        "energy": np.sqrt(asm),
        "correlation": np.clip(corr, -1.0, 1.0),
        "ASM": asm,
    }


def _glcm_block(props: dict[str, np.ndarray]) -> np.ndarray:
    """GLCM statistics scaled to about 0..1 for the descriptor vector."""
    top = _GLCM_LEVELS - 1
    scaled = {
        "contrast": np.log1p(props["contrast"]) / np.log1p(top**2),
        "dissimilarity": props["dissimilarity"] / top,
        "homogeneity": props["homogeneity"],
        "energy": props["energy"],
        "correlation": (props["correlation"] + 1.0) / 2.0,
        "ASM": np.sqrt(props["ASM"]),
    }
    return np.concatenate([scaled[name] for name in GLCM_PROPS])


def interior(mask: np.ndarray) -> np.ndarray:
    """The mask without its rim (pixels blended with the background), when enough is left."""
    m8 = mask.astype(np.uint8)
    for size in (5, 3):
        inner = cv2.erode(m8, np.ones((size, size), np.uint8))
        if inner.sum() >= max(16, 0.25 * m8.sum()):
            return inner.astype(bool)
    return mask.astype(bool)


def _crop(gray: np.ndarray, mask: np.ndarray, pad: int) -> tuple[np.ndarray, np.ndarray]:
    """The bounding box of the mask plus ``pad`` pixels (for the LBP radius)."""
    x, y, w, h = cv2.boundingRect(mask.astype(np.uint8))
    y0, y1 = max(0, y - pad), min(mask.shape[0], y + h + pad)
    x0, x1 = max(0, x - pad), min(mask.shape[1], x + w + pad)
    return gray[y0:y1, x0:x1], mask[y0:y1, x0:x1]


def _half(gray: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Half-resolution grey image and mask (unchanged when already tiny)."""
    h, w = gray.shape
    if min(h, w) < 16:
        return gray, mask
    size = (w // 2, h // 2)
    g = cv2.resize(gray, size, interpolation=cv2.INTER_AREA)
    m = cv2.resize(mask.astype(np.uint8) * 255, size, interpolation=cv2.INTER_AREA) > 127
    return g, (m if m.any() else np.ones_like(m))


def _lbp_histogram(gray: np.ndarray, sample: np.ndarray, p: int, r: float) -> np.ndarray:
    h = np.bincount(lbp_uniform(gray, p, r)[sample], minlength=p + 2).astype(np.float64)
    return h / max(h.sum(), 1.0)


def texture_features(gray: np.ndarray, mask: np.ndarray) -> TextureFeatures:
    """Texture descriptor of the masked region of a uint8 grey image."""
    gray = np.ascontiguousarray(gray, dtype=np.uint8)
    mask = mask.astype(bool)
    if not mask.any():
        mask = np.ones_like(mask)
    pad = 2 * int(np.ceil(max(r for _, _, r in _LBP_CONFIGS))) + 2
    fine = _crop(gray, mask, pad)
    coarse = _half(*fine)
    scales = {1: (fine[0], interior(fine[1])), 2: (coarse[0], interior(coarse[1]))}

    hists = [_lbp_histogram(*scales[sc], p, r) for sc, p, r in _LBP_CONFIGS]
    g2, sample2 = scales[2]
    props = _glcm_props((g2.astype(np.uint16) * _GLCM_LEVELS >> 8).astype(np.uint8), sample2)

    blocks = [
        np.sqrt(h) * (_FINE_WEIGHT if sc == 1 else 1.0)
        for h, (sc, _, _) in zip(hists, _LBP_CONFIGS, strict=True)
    ]
    blocks.append(_glcm_block(props) / np.sqrt(len(GLCM_PROPS)))
    vec = np.concatenate(blocks).astype(np.float32)
    vec /= max(float(np.linalg.norm(vec)), 1e-12)
    return TextureFeatures(
        vector=vec,
        lbp=tuple(h.astype(np.float32) for h in hists),
        glcm={name: tuple(float(v) for v in vals) for name, vals in props.items()},
    )
