"""Hand-crafted visual features of one product photo: the single entry point.

``extract_features`` brings the photo to one working size (long side ``WORK_LONG_SIDE``,
upscaling small photos so that every source is analysed at the same scale), estimates the
product's foreground, and computes colour, texture, shape and pattern features from that one
image. Every descriptor vector is 1-D float32, unit-L2 and of fixed length (``VECTOR_DIMS``);
``FEATURE_VERSION`` changes whenever any of them does.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from vitrine.vision.color import HISTOGRAM_DIM, ColorFeatures, color_features
from vitrine.vision.foreground import estimate_foreground
from vitrine.vision.palette import rgb_to_lab
from vitrine.vision.pattern import PATTERN_DIM, PatternFeatures, pattern_features
from vitrine.vision.shape import SHAPE_DIM, ShapeFeatures, shape_features
from vitrine.vision.texture import TEXTURE_DIM, TextureFeatures, texture_features

FEATURE_VERSION: str = "features-1"  # bump when any descriptor changes

WORK_LONG_SIDE = 128
VECTOR_DIMS: dict[str, int] = {
    "color": HISTOGRAM_DIM,
    "texture": TEXTURE_DIM,
    "shape": SHAPE_DIM,
    "pattern": PATTERN_DIM,
}


@dataclass(frozen=True)
class VisualFeatures:
    """All hand-crafted features of one photo."""

    color: ColorFeatures
    texture: TextureFeatures
    shape: ShapeFeatures
    pattern: PatternFeatures
    foreground_ratio: float
    background_uniform: bool

    def vectors(self) -> dict[str, np.ndarray]:
        """Descriptor vectors by kind: 1-D float32, unit-L2, lengths as in ``VECTOR_DIMS``."""
        raw = {
            "color": self.color.histogram,
            "texture": self.texture.vector,
            "shape": self.shape.vector,
            "pattern": self.pattern.vector,
        }
        out: dict[str, np.ndarray] = {}
        for key, vec in raw.items():
            v = np.nan_to_num(np.asarray(vec, dtype=np.float32).ravel())
            n = float(np.linalg.norm(v))
            out[key] = v / n if n > 1e-12 else v
        return out

    def summary(self) -> dict[str, object]:
        """JSON-serialisable summary (plain floats, strings and lists)."""
        return {
            "feature_version": FEATURE_VERSION,
            "color": self.color.summary(),
            "texture": self.texture.summary(),
            "shape": self.shape.summary(),
            "pattern": self.pattern.summary(),
            "foreground_ratio": self.foreground_ratio,
            "background_uniform": self.background_uniform,
        }


def working_image(rgb: np.ndarray, long_side: int = WORK_LONG_SIDE) -> np.ndarray:
    """Resize an RGB uint8 image so that its long side is ``long_side`` (aspect kept).

    Grey (HxW) and RGBA inputs are accepted; integer images are clipped to 0..255.
    """
    rgb = np.asarray(rgb)
    if rgb.dtype != np.uint8:
        if not np.issubdtype(rgb.dtype, np.integer):
            raise ValueError(f"expected an 8-bit image, got dtype {rgb.dtype}")
        rgb = np.clip(rgb, 0, 255).astype(np.uint8)
    if rgb.ndim not in (2, 3) or (rgb.ndim == 3 and rgb.shape[2] not in (1, 3, 4)):
        raise ValueError(f"expected an HxW, HxWx3 or HxWx4 image, got shape {rgb.shape}")
    if rgb.ndim == 3 and rgb.shape[2] == 1:
        rgb = rgb[:, :, 0]
    if rgb.ndim == 2:
        rgb = np.repeat(rgb[:, :, None], 3, axis=2)
    elif rgb.shape[2] == 4:
        rgb = rgb[:, :, :3]
    rgb = np.ascontiguousarray(rgb)
    h, w = rgb.shape[:2]
    if h == 0 or w == 0:
        raise ValueError("empty image")
    scale = long_side / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    if size == (w, h):
        return rgb
    if scale < 1.0:
        return cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)
    if min(h, w) < 4:
        return cv2.resize(rgb, size, interpolation=cv2.INTER_NEAREST)
    return cv2.resize(rgb, size, interpolation=cv2.INTER_LINEAR)


def extract_features(rgb: np.ndarray) -> VisualFeatures:
    """All hand-crafted features of an RGB uint8 HxWx3 photo (grey HxW and RGBA accepted)."""
    img = working_image(rgb, WORK_LONG_SIDE)
    lab = rgb_to_lab(img)
    fg = estimate_foreground(img, lab)
    gray = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)
    return VisualFeatures(
        color=color_features(img, fg, lab),
        texture=texture_features(gray, fg.mask),
        shape=shape_features(fg.mask),
        pattern=pattern_features(gray, fg.mask),
        foreground_ratio=fg.ratio,
        background_uniform=fg.background_uniform,
    )
