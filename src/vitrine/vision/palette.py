"""Fixed e-commerce colour palette, colour-space helpers and colour naming.

Every name of the fashion catalogue's ``baseColour`` vocabulary is in the palette. Reference
values are how such products typically look in studio photos (fabric under soft light rarely
reaches pure black or pure white). ``Multi`` is not a point colour: it has no reference value and
is assigned by :mod:`vitrine.vision.color` when no single colour dominates. A name may have
extra reference colours (its light/dark variants), and specialised names pay a small bias.

Naming is nearest-reference by CIEDE2000, vectorised over the palette. ``delta_e_2000`` gives
the same values as ``skimage.color.deltaE_ciede2000`` (checked in the tests) at a fraction of
its per-call overhead, which matters at a few milliseconds per photo.
"""

from __future__ import annotations

import cv2
import numpy as np

MULTI: str = "Multi"

# name -> (family, sRGB reference colour as photographed, extra references). A colour name covers a
# region, not a point: extra references (light/dark variants) let "Blue" also cover sky blue and
# "Pink" hot pink. Families group names of similar hue for merging and the "Multi" decision.
_PALETTE: dict[str, tuple[str, str, tuple[str, ...]]] = {
    # Neutrals, dark to light.
    "Black": ("black", "#1e1e1e", ("#2c2c2c",)),
    "Charcoal": ("black", "#4a4b50", ()),
    "Grey": ("grey", "#7e7e80", ("#a2a2a4", "#6a6a6c")),
    "Steel": ("grey", "#6f7f8c", ()),
    "Metallic": ("grey", "#9ea8b5", ()),
    "Grey Melange": ("grey", "#b4b4b2", ()),
    "Silver": ("grey", "#c9cacd", ()),
    "Off White": ("white", "#efeadf", ()),
    "White": ("white", "#f6f6f6", ("#e4e4e4",)),
    # Warm light neutrals.
    "Cream": ("white", "#f1e4c4", ()),
    "Beige": ("beige", "#d8c3a2", ("#e6d6bc",)),
    "Skin": ("beige", "#e6bea0", ()),
    "Nude": ("beige", "#d9ae95", ()),
    "Peach": ("beige", "#f6b896", ()),
    "Khaki": ("beige", "#b9ab84", ()),
    "Tan": ("beige", "#c09868", ()),
    "Taupe": ("beige", "#8b7e72", ()),
    "Mushroom Brown": ("beige", "#9f8a78", ()),
    # Browns and metals.
    "Brown": ("brown", "#6b4428", ("#4a3122", "#8a5a3a")),
    "Coffee Brown": ("brown", "#4b3a2e", ()),
    "Rust": ("brown", "#a84a22", ()),
    "Gold": ("yellow", "#c9a54e", ()),
    "Bronze": ("brown", "#9c6b3c", ()),
    "Copper": ("brown", "#b46f43", ()),
    # Reds and pinks.
    "Red": ("red", "#c41e2a", ("#e0303a",)),
    "Maroon": ("red", "#6e1a24", ()),
    "Burgundy": ("red", "#6a1c3c", ()),
    "Pink": ("pink", "#ee8fb4", ("#f7c6d6", "#e0457f")),
    "Rose": ("pink", "#d46e84", ()),
    "Magenta": ("pink", "#c2207a", ()),
    "Mauve": ("pink", "#a87a92", ()),
    # Oranges and yellows.
    "Orange": ("orange", "#ef7d24", ("#ffa500",)),
    "Mustard": ("yellow", "#d0a020", ()),
    "Yellow": ("yellow", "#f2d235", ("#f6e27a",)),
    # Greens.
    "Olive": ("green", "#6b6a32", ()),
    "Green": ("green", "#2f8a46", ("#1f5a3a", "#8cc9a0", "#008000")),
    "Sea Green": ("green", "#3aa07a", ()),
    "Lime Green": ("green", "#98c83a", ()),
    "Fluorescent Green": ("green", "#b8f03a", ()),
    # Blues and purples.
    "Teal": ("blue", "#1d7478", ()),
    "Turquoise Blue": ("blue", "#2fb4c6", ("#40e0d0",)),
    "Blue": ("blue", "#2d63b0", ("#9cc3e6", "#5b7fae", "#4169e1", "#0000ff", "#2a3a9a")),
    "Navy Blue": ("blue", "#1e2740", ("#2e3446", "#000080")),
    "Purple": ("purple", "#633a8e", ("#8a4fa8", "#5e3c5c")),
    "Lavender": ("purple", "#b4a4d6", ()),
}

# Specialised names pay a small CIEDE2000 penalty so that, when a colour is ambiguous, the basic
# colour term wins (a light grey fabric is "Grey" rather than "Silver" or "Metallic").
NAME_BIAS: dict[str, float] = {
    "Metallic": 2.0,
    "Silver": 2.0,
    "Grey Melange": 2.0,
    "Steel": 2.0,
    "Off White": 2.0,
    "Coffee Brown": 2.0,
    "Mushroom Brown": 2.0,
    "Nude": 2.0,
    "Skin": 1.0,
    "Taupe": 1.0,
}

# name -> main sRGB reference colour.
PALETTE_HEX: dict[str, str] = {name: ref for name, (_, ref, _) in _PALETTE.items()}
# name -> hue family ("black", "grey", "white", "beige", "brown", "red", ...).
COLOR_FAMILY: dict[str, str] = {name: fam for name, (fam, _, _) in _PALETTE.items()}
COLOR_FAMILY[MULTI] = "multi"

# All names, including the non-point name "Multi".
COLOR_NAMES: tuple[str, ...] = (*PALETTE_HEX.keys(), MULTI)


def hex_to_rgb(value: str) -> tuple[int, int, int]:
    """``"#rrggbb"`` -> (r, g, b) integers."""
    v = value.lstrip("#")
    return int(v[0:2], 16), int(v[2:4], 16), int(v[4:6], 16)


def rgb_to_hex(rgb: tuple[int, int, int] | np.ndarray) -> str:
    """(r, g, b) in 0..255 -> ``"#rrggbb"``."""
    r, g, b = (min(255, max(0, round(float(c)))) for c in rgb)
    return f"#{r:02x}{g:02x}{b:02x}"


def rgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    """sRGB uint8 array (..., 3) -> CIELAB float32 (..., 3), D65 (L 0..100)."""
    arr = np.asarray(rgb, dtype=np.uint8)
    shape = arr.shape
    img = arr if arr.ndim == 3 else arr.reshape(-1, 1, 3)
    lab = cv2.cvtColor(img.astype(np.float32) * np.float32(1.0 / 255.0), cv2.COLOR_RGB2Lab)
    return lab.reshape(shape)


def lab_to_rgb(lab: np.ndarray) -> np.ndarray:
    """CIELAB (..., 3) -> sRGB uint8 (..., 3), out-of-gamut values clipped."""
    arr = np.asarray(lab, dtype=np.float32)
    shape = arr.shape
    rgb = cv2.cvtColor(np.ascontiguousarray(arr.reshape(-1, 1, 3)), cv2.COLOR_Lab2RGB)
    return np.clip(np.rint(rgb * 255.0), 0, 255).astype(np.uint8).reshape(shape)


_POINT_NAMES: tuple[str, ...] = tuple(PALETTE_HEX.keys())
# One row per reference colour (main and variants), with the index of its name.
_REF_HEX: list[tuple[int, str]] = [
    (i, h) for i, (_, ref, extra) in enumerate(_PALETTE.values()) for h in (ref, *extra)
]
_REF_NAME: np.ndarray = np.array([i for i, _ in _REF_HEX], dtype=np.int64)
_REF_LAB: np.ndarray = rgb_to_lab(
    np.array([hex_to_rgb(h) for _, h in _REF_HEX], dtype=np.uint8)
).astype(np.float64)
_REF_FAMILY: list[str] = [COLOR_FAMILY[_POINT_NAMES[i]] for i in _REF_NAME]
_REF_START: np.ndarray = np.searchsorted(_REF_NAME, np.arange(len(_POINT_NAMES)))
_REF_BIAS: np.ndarray = np.array([NAME_BIAS.get(_POINT_NAMES[i], 0.0) for i in _REF_NAME])
# name -> Lab of the main reference (P, 3), in PALETTE_HEX order.
PALETTE_LAB: np.ndarray = rgb_to_lab(
    np.array([hex_to_rgb(h) for h in PALETTE_HEX.values()], dtype=np.uint8)
).astype(np.float64)
PALETTE_LAB.setflags(write=False)


def delta_e_2000(lab1: np.ndarray, lab2: np.ndarray) -> np.ndarray:
    """CIEDE2000 colour difference of broadcastable Lab arrays (..., 3) (Sharma et al. 2005).

    Same values as ``skimage.color.deltaE_ciede2000`` (kL = kC = kH = 1), several times
    faster on the small arrays used here.
    """
    x = np.asarray(lab1, dtype=np.float64)
    y = np.asarray(lab2, dtype=np.float64)
    l1, a1, b1 = x[..., 0], x[..., 1], x[..., 2]
    l2, a2, b2 = y[..., 0], y[..., 1], y[..., 2]
    cbar7 = (0.5 * (np.hypot(a1, b1) + np.hypot(a2, b2))) ** 7
    g = 0.5 * (1.0 - np.sqrt(cbar7 / (cbar7 + 25.0**7)))
    a1p, a2p = a1 * (1.0 + g), a2 * (1.0 + g)
    c1p, c2p = np.hypot(a1p, b1), np.hypot(a2p, b2)
    h1p = np.mod(np.arctan2(b1, a1p), 2 * np.pi)
    h2p = np.mod(np.arctan2(b2, a2p), 2 * np.pi)
    chroma_zero = (c1p * c2p) == 0.0
    dhp = h2p - h1p
    dhp = np.where(dhp > np.pi, dhp - 2 * np.pi, np.where(dhp < -np.pi, dhp + 2 * np.pi, dhp))
    dhp = np.where(chroma_zero, 0.0, dhp)
    d_l = l2 - l1
    d_c = c2p - c1p
    d_h = 2.0 * np.sqrt(c1p * c2p) * np.sin(dhp / 2.0)
    lbar = 0.5 * (l1 + l2)
    cbarp = 0.5 * (c1p + c2p)
    hsum = h1p + h2p
    hbar = np.where(
        np.abs(h1p - h2p) <= np.pi,
        0.5 * hsum,
        np.where(hsum < 2 * np.pi, 0.5 * hsum + np.pi, 0.5 * hsum - np.pi),
    )
    hbar = np.where(chroma_zero, hsum, hbar)
    t = (
        1.0
        - 0.17 * np.cos(hbar - np.radians(30.0))
        + 0.24 * np.cos(2.0 * hbar)
        + 0.32 * np.cos(3.0 * hbar + np.radians(6.0))
        - 0.20 * np.cos(4.0 * hbar - np.radians(63.0))
    )
    dtheta = np.radians(30.0) * np.exp(-(((np.degrees(hbar) - 275.0) / 25.0) ** 2))
    cbarp7 = cbarp**7
    r_c = 2.0 * np.sqrt(cbarp7 / (cbarp7 + 25.0**7))
    lm = (lbar - 50.0) ** 2
    s_l = 1.0 + 0.015 * lm / np.sqrt(20.0 + lm)
    s_c = 1.0 + 0.045 * cbarp
    s_h = 1.0 + 0.015 * cbarp * t
    r_t = -np.sin(2.0 * dtheta) * r_c
    tl, tc, th = d_l / s_l, d_c / s_c, d_h / s_h
    return np.sqrt(np.maximum(tl * tl + tc * tc + th * th + r_t * tc * th, 0.0))


def palette_distances(lab: np.ndarray) -> np.ndarray:
    """Biased CIEDE2000 distance of each Lab colour (N, 3) to each palette name -> (N, P).

    The distance to a name is the smallest over its reference colours, plus the name's bias.
    """
    pts = np.asarray(lab, dtype=np.float64).reshape(-1, 1, 3)
    d = delta_e_2000(pts, _REF_LAB[None, :, :]) + _REF_BIAS
    # Smallest distance per name: references are grouped by name, in name order.
    return np.minimum.reduceat(d, _REF_START, axis=1)


def name_colors(lab: np.ndarray) -> list[str]:
    """Nearest palette name (CIEDE2000) of each Lab colour in an (N, 3) array."""
    d = palette_distances(lab)
    return [_POINT_NAMES[i] for i in np.argmin(d, axis=1)]


def approximate_families(lab: np.ndarray) -> list[str]:
    """Hue family of the nearest reference by plain Euclidean Lab distance (CIE76): cheap, for
    coarse decisions such as merging clusters."""
    pts = np.asarray(lab, dtype=np.float64).reshape(-1, 3)
    d2 = (
        np.sum(pts * pts, axis=1)[:, None]
        - 2.0 * pts @ _REF_LAB.T
        + np.sum(_REF_LAB * _REF_LAB, axis=1)[None, :]
    )
    return [_REF_FAMILY[i] for i in np.argmin(d2, axis=1)]


def name_color(lab: tuple[float, float, float] | np.ndarray) -> str:
    """Nearest palette name (CIEDE2000) of one Lab colour."""
    return name_colors(np.asarray(lab, dtype=np.float64).reshape(1, 3))[0]
