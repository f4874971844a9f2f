"""Surface pattern descriptor: tells solid, striped, checked, dotted and printed surfaces apart.

The interior of the foreground is cropped to its bounding box, the rest is filled with the mean
product grey, the crop is squared and rendered at 64x64, and normalised for contrast (so that a
pattern reads the same in any pair of colours; near-flat surfaces stay near zero). From it:

- FFT power spectrum (Hann window): energy shares of 5 radial (octave) bands and 8 orientation
  sectors, the sectors again rotated so the strongest comes first (rotation invariant), and a
  peakiness/periodicity measure (share of the energy in the 8 strongest frequency bins).
- A log-Gabor bank (4 orientations x 2 scales, applied in the frequency domain): energy share per
  filter and the spatial variation (coefficient of variation) of each response on the product.
- Structure tensor coherence (orientedness) and the dominant line orientation; edge density.

Naming the pattern is left to a classifier trained on these vectors; the summary reports only
measured quantities.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from vitrine.vision.texture import interior

_N = 64
# Grey-level standard deviation at which a surface counts as half "textured".
_CONTRAST_SCALE = 6.0
_RADIAL_EDGES = (1, 2, 4, 8, 16, 33)  # in cycles per patch (radius of the frequency bin)
_N_SECTORS = 8
_TOP_BINS = 8
_GABOR_FREQS = (0.25, 0.125)  # cycles per pixel
_GABOR_ORIENTS = 4
_GABOR_SIGMA_LOG = 0.45
_GABOR_SIGMA_THETA = np.pi / 8
_N_GABOR = len(_GABOR_FREQS) * _GABOR_ORIENTS
PATTERN_DIM = 2 + 5 + 2 * _N_SECTORS + 2 * _N_GABOR + 4


@dataclass(frozen=True)
class PatternFeatures:
    """Pattern descriptor (``vector``, unit-L2 float32) and measured summary values."""

    vector: np.ndarray
    intensity_std: float  # grey-level standard deviation on the product (0..255 scale)
    edge_density: float
    dominant_orientation_deg: float
    orientedness: float
    periodicity: float
    radial_energy: tuple[float, ...]
    angular_energy: tuple[float, ...]

    def summary(self) -> dict[str, object]:
        return {
            "intensity_std": self.intensity_std,
            "edge_density": self.edge_density,
            "dominant_orientation_deg": self.dominant_orientation_deg,
            "orientedness": self.orientedness,
            "periodicity": self.periodicity,
            "radial_energy": list(self.radial_energy),
            "angular_energy": list(self.angular_energy),
        }


def _frequency_grid() -> tuple[np.ndarray, np.ndarray]:
    f = np.fft.fftfreq(_N)
    fy, fx = np.meshgrid(f, f, indexing="ij")
    radius = np.hypot(fx, fy)
    # Orientation of the frequency vector in 0..pi; image y points down, so flip fy.
    theta = np.mod(np.arctan2(-fy, fx), np.pi)
    return radius, theta


_RADIUS, _THETA = _frequency_grid()
_RADIUS_BINS = _RADIUS * _N
_RADIAL_IDX = np.digitize(_RADIUS_BINS, _RADIAL_EDGES) - 1  # -1: DC, 5: corners beyond Nyquist
_SECTOR_IDX = (
    np.floor(np.mod(_THETA + np.pi / (2 * _N_SECTORS), np.pi) / (np.pi / _N_SECTORS)).astype(
        np.int64
    )
    % _N_SECTORS
)
_AC = (_RADIUS_BINS >= 2) & (_RADIUS_BINS < _N / 2)
_HANN = np.outer(np.hanning(_N), np.hanning(_N)).astype(np.float32)


def _gabor_bank() -> np.ndarray:
    """One-sided (analytic) log-Gabor transfer functions, as (N_GABOR, N, N, 2) multipliers of
    an OpenCV complex spectrum."""
    f = np.fft.fftfreq(_N)
    fy, fx = np.meshgrid(f, f, indexing="ij")
    radius = np.maximum(np.hypot(fx, fy), 1e-9)
    angle = np.arctan2(-fy, fx)
    bank = []
    for f0 in _GABOR_FREQS:
        radial = np.exp(-(np.log(radius / f0) ** 2) / (2 * _GABOR_SIGMA_LOG**2))
        for k in range(_GABOR_ORIENTS):
            t0 = k * np.pi / _GABOR_ORIENTS
            d = np.angle(np.exp(1j * (angle - t0)))
            bank.append(radial * np.exp(-(d**2) / (2 * _GABOR_SIGMA_THETA**2)))
    out = np.array(bank, dtype=np.float32)
    out[:, 0, 0] = 0.0
    return np.ascontiguousarray(np.repeat(out[..., None], 2, axis=3))  # (K, N, N, 2): re, im


_GABOR = _gabor_bank()


def _prepare(gray: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """Contrast-normalised N x N rendering of the product, its mask, and the grey std."""
    inner = interior(mask).astype(np.uint8)
    x, y, w, h = cv2.boundingRect(inner)
    crop = gray[y : y + h, x : x + w].astype(np.float32)
    sel = inner[y : y + h, x : x + w].astype(bool)
    vals = crop[sel]
    mean = float(vals.mean())
    std = float(vals.std())
    side = max(w, h)
    canvas = np.zeros((side, side), dtype=np.float32)
    cmask = np.zeros((side, side), dtype=np.float32)
    oy, ox = (side - h) // 2, (side - w) // 2
    canvas[oy : oy + h, ox : ox + w] = np.where(sel, crop - mean, 0.0)
    cmask[oy : oy + h, ox : ox + w] = sel
    interp = cv2.INTER_AREA if side > _N else cv2.INTER_LINEAR
    z = cv2.resize(canvas, (_N, _N), interpolation=interp)
    m = cv2.resize(cmask, (_N, _N), interpolation=interp) > 0.5
    if not m.any():
        m[:] = True
    z *= np.float32(1.0 / max(std, _CONTRAST_SCALE))
    return z, m, std


def _shares(x: np.ndarray) -> np.ndarray:
    s = float(x.sum())
    return x / s if s > 1e-12 else np.full_like(x, 1.0 / len(x))


def _orientation(z: np.ndarray, m: np.ndarray) -> tuple[float, float]:
    """(coherence 0..1, dominant line orientation in degrees 0..180, 0 = horizontal lines)."""
    gx = cv2.Sobel(z, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(z, cv2.CV_32F, 0, 1, ksize=3)
    jxx = float((gx * gx)[m].sum())
    jyy = float((gy * gy)[m].sum())
    jxy = float((gx * gy)[m].sum())
    trace = jxx + jyy
    if trace < 1e-9:
        return 0.0, 0.0
    coherence = float(np.hypot(jxx - jyy, 2 * jxy) / trace)
    grad_angle = 0.5 * np.degrees(np.arctan2(-2 * jxy, jxx - jyy))  # y axis up
    return coherence, float(np.mod(grad_angle + 90.0, 180.0))


def _edge_density(z: np.ndarray, m: np.ndarray) -> float:
    img = np.clip(128.0 + 32.0 * z, 0, 255).astype(np.uint8)
    edges = cv2.Canny(img, 40, 90, L2gradient=True) > 0
    return float(edges[m].mean())


def pattern_features(gray: np.ndarray, mask: np.ndarray) -> PatternFeatures:
    """Pattern descriptor of the masked region of a uint8 grey image."""
    gray = np.ascontiguousarray(gray, dtype=np.uint8)
    mask = mask.astype(bool)
    if not mask.any():
        mask = np.ones_like(mask)
    z, m, std = _prepare(gray, mask)
    texturedness = std**2 / (std**2 + _CONTRAST_SCALE**2)

    spec = cv2.dft(z, flags=cv2.DFT_COMPLEX_OUTPUT)
    windowed = cv2.dft(z * _HANN, flags=cv2.DFT_COMPLEX_OUTPUT)
    power = windowed[..., 0] ** 2 + windowed[..., 1] ** 2
    ac = power[_AC]
    radial = _shares(
        np.bincount(_RADIAL_IDX[_RADIUS_BINS >= 1].ravel(), power[_RADIUS_BINS >= 1], 6)[:5]
    )
    sectors = _shares(np.bincount(_SECTOR_IDX[_AC], ac, _N_SECTORS))
    aligned = np.roll(sectors, -int(np.argmax(sectors)))
    periodicity = float(np.sort(ac)[-_TOP_BINS:].sum() / max(float(ac.sum()), 1e-12))

    m8 = m.astype(np.uint8)
    stats = np.empty((_N_GABOR, 2), dtype=np.float64)  # mean and std of each response magnitude
    for k in range(_N_GABOR):
        resp = cv2.idft(spec * _GABOR[k], flags=cv2.DFT_COMPLEX_OUTPUT | cv2.DFT_SCALE)
        mean, std_dev = cv2.meanStdDev(cv2.magnitude(resp[..., 0], resp[..., 1]), mask=m8)
        stats[k] = mean[0, 0], std_dev[0, 0]
    means = stats[:, 0]
    cvs = stats[:, 1] / np.maximum(means, 1e-6)
    gabor = _shares(means)

    coherence, orient = _orientation(z, m)
    edges = _edge_density(z, m)

    c = texturedness
    vec = np.concatenate(
        [
            [1.0 - c, c * np.log1p(std) / np.log(128.0)],
            c * np.sqrt(radial),
            c * np.sqrt(sectors),
            c * np.sqrt(aligned),
            c * np.sqrt(gabor),
            c * np.clip(cvs, 0.0, 3.0) / 3.0,
            c * np.array([periodicity, coherence, edges, float(means.mean()) / 2.0]),
        ]
    ).astype(np.float32)
    vec /= max(float(np.linalg.norm(vec)), 1e-12)
    return PatternFeatures(
        vector=vec,
        intensity_std=std,
        edge_density=edges,
        dominant_orientation_deg=orient,
        orientedness=coherence,
        periodicity=periodicity,
        radial_energy=tuple(float(v) for v in radial),
        angular_energy=tuple(float(v) for v in sectors),
    )
