"""The CNN's input: any RGB photo fitted into the model's square without distortion.

Shared by the embedder, the int8 calibration and the fine-tuning activations, so that
every path feeds the network the same pixels.
"""

from __future__ import annotations

import cv2
import numpy as np

INPUT_SIZE = 224


def _as_rgb_uint8(rgb: np.ndarray) -> np.ndarray:
    if not isinstance(rgb, np.ndarray):
        raise TypeError(f"expected a numpy array, got {type(rgb).__name__}")
    if rgb.dtype != np.uint8:
        raise TypeError(f"expected a uint8 image, got dtype {rgb.dtype}")
    if rgb.ndim == 2:
        rgb = np.repeat(rgb[:, :, None], 3, axis=2)
    elif rgb.ndim == 3 and rgb.shape[2] == 1:
        rgb = np.repeat(rgb, 3, axis=2)
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"expected an H x W x 3 RGB image, got shape {rgb.shape}")
    if rgb.shape[0] == 0 or rgb.shape[1] == 0:
        raise ValueError(f"empty image of shape {rgb.shape}")
    return rgb


def _border_color(img: np.ndarray) -> np.ndarray:
    """Per-channel median of the outermost pixel ring."""
    h, w = img.shape[:2]
    if h <= 2 or w <= 2:
        ring = img.reshape(-1, 3)
    else:
        ring = np.concatenate(
            [img[0], img[-1], img[1:-1, 0], img[1:-1, -1]],
            axis=0,
        )
    return np.median(ring, axis=0).round().astype(np.uint8)


def prepare_image(rgb: np.ndarray, size: int = INPUT_SIZE) -> np.ndarray:
    """Fit an RGB photo into a ``size x size`` square without distorting it.

    The longer side is resized to ``size`` (``INTER_AREA`` when shrinking, ``INTER_CUBIC``
    when enlarging) and the shorter side is padded on both sides, centred, with the median
    colour of the photo's border, so a product on a plain background stays on that background.

    Args:
        rgb: ``H x W x 3`` uint8 RGB array of any size (``H x W`` greyscale is accepted too).
        size: side of the output square.

    Returns:
        A new contiguous ``size x size x 3`` uint8 array.
    """
    img = _as_rgb_uint8(rgb)
    h, w = img.shape[:2]
    scale = size / max(h, w)
    new_w = min(size, max(1, round(w * scale)))
    new_h = min(size, max(1, round(h * scale)))
    if (new_h, new_w) != (h, w):
        interp = cv2.INTER_AREA if scale < 1.0 else cv2.INTER_CUBIC
        img = cv2.resize(np.ascontiguousarray(img), (new_w, new_h), interpolation=interp)
    if new_h == size and new_w == size:
        return img.copy() if img is rgb else np.ascontiguousarray(img)
    out = np.empty((size, size, 3), dtype=np.uint8)
    out[:] = _border_color(img)
    top = (size - new_h) // 2
    left = (size - new_w) // 2
    out[top : top + new_h, left : left + new_w] = img
    return out
