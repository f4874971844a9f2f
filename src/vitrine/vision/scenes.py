"""Synthetic real-world photos, made from the shop's own catalog photos.

No pretrained detector installs from a package, so the localiser learns from scenes made
here: products cut out of their studio photos (the plain-background segmentation of
:mod:`vitrine.vision.foreground`) and put, one to three at a time, on a busy background,
then re-lit, blurred and JPEG-compressed as a phone snapshot is. Every scene knows its
products' boxes.

Backgrounds are generated clutter (gradients, shapes, lines, noise textures) and the
photos that ship inside scikit-image and scikit-learn, split once into a ``"train"`` and
a ``"test"`` part: the localiser trains on the first, the benchmark measures on the
second, and each part's clutter comes from its own random stream.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

import cv2
import numpy as np

from vitrine.vision.foreground import estimate_foreground

TRAIN_PHOTOS = (
    "astronaut", "brick", "camera", "chelsea", "coins", "grass",
    "immunohistochemistry", "rocket", "text", "clock", "page", "china.jpg",
)  # fmt: skip
TEST_PHOTOS = ("coffee", "gravel", "moon", "hubble_deep_field", "colorwheel", "cell",
               "retina", "flower.jpg")  # fmt: skip


@dataclass(frozen=True)
class CutOut:
    """A product's pixels and its mask (``rgb`` HxWx3 uint8, ``alpha`` HxW float32 0..1)."""

    rgb: np.ndarray
    alpha: np.ndarray
    product_id: str = ""


@dataclass
class Scene:
    """A composed photo and, per product, its box ``[x0, y0, x1, y1]`` and id."""

    image: np.ndarray
    boxes: list[tuple[int, int, int, int]] = field(default_factory=list)
    product_ids: list[str] = field(default_factory=list)


def cut_out(rgb: np.ndarray, product_id: str = "") -> CutOut | None:
    """The product of a studio photo on a plain background, cropped to its mask; None
    when the background is not plain (nothing to cut along)."""
    fg = estimate_foreground(rgb)
    if not fg.background_uniform or fg.ratio < 0.03:
        return None
    ys, xs = np.nonzero(fg.mask)
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    alpha = cv2.GaussianBlur(fg.mask.astype(np.float32), (3, 3), 0)[y0:y1, x0:x1]
    return CutOut(np.ascontiguousarray(rgb[y0:y1, x0:x1]), alpha, product_id)


@functools.cache
def _package_photo(name: str) -> np.ndarray:
    if name.endswith(".jpg"):
        from sklearn.datasets import load_sample_image

        image = load_sample_image(name)
    else:
        import skimage.data

        image = getattr(skimage.data, name)()
    image = np.asarray(image)
    if image.dtype != np.uint8:
        image = (image.astype(np.float64) / max(float(image.max()), 1e-9) * 255).astype(np.uint8)
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=2)
    return np.ascontiguousarray(image[..., :3])


def clutter(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    """A generated busy background: a colour gradient under shapes, lines and texture."""
    a, b = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
    t = np.linspace(0, 1, width)[None, :, None] if rng.random() < 0.5 else None
    t = np.linspace(0, 1, height)[:, None, None] if t is None else t
    image = np.broadcast_to(a + (b - a) * t, (height, width, 3)).astype(np.uint8).copy()
    for _ in range(int(rng.integers(8, 40))):
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        x, y = int(rng.integers(0, width)), int(rng.integers(0, height))
        size = int(rng.integers(max(4, width // 40), max(8, width // 4)))
        kind = rng.integers(0, 4)
        if kind == 0:
            corner = (x + size, y + int(size * rng.uniform(0.3, 2)))
            cv2.rectangle(image, (x, y), corner, colour, -1)
        elif kind == 1:
            axes = (size // 2 + 1, int(size * rng.uniform(0.2, 0.8)) + 1)
            cv2.ellipse(image, (x, y), axes, float(rng.uniform(0, 180)), 0, 360, colour, -1)
        elif kind == 2:
            end = (int(rng.integers(0, width)), int(rng.integers(0, height)))
            cv2.line(image, (x, y), end, colour, int(rng.integers(1, 6)))
        else:
            points = rng.integers(-size, size, (5, 2)) + np.array([x, y])
            cv2.fillPoly(image, [points.astype(np.int32)], colour)
    noise = rng.normal(0, rng.uniform(0, 18), (height, width, 1))
    return np.clip(image + noise, 0, 255).astype(np.uint8)


def background(split: str, rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    """A background of ``split``'s part: a package photo's random crop, or clutter."""
    photos = TRAIN_PHOTOS if split == "train" else TEST_PHOTOS
    if rng.random() < 0.4:
        return clutter(rng, width, height)
    photo = _package_photo(photos[int(rng.integers(0, len(photos)))])
    ph, pw = photo.shape[:2]
    scale = max(width / pw, height / ph) * rng.uniform(1.0, 2.0)
    resized = cv2.resize(photo, (max(width, round(pw * scale)), max(height, round(ph * scale))))
    y = int(rng.integers(0, resized.shape[0] - height + 1))
    x = int(rng.integers(0, resized.shape[1] - width + 1))
    crop = resized[y : y + height, x : x + width]
    if rng.random() < 0.5:
        crop = crop[:, ::-1]
    if photo[..., 0].tolist() == photo[..., 1].tolist():  # a grey photo: tint it
        crop = (crop * (0.6 + 0.4 * rng.random(3))).astype(np.uint8)
    return np.ascontiguousarray(crop)


def _overlap(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> float:
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    if w <= 0 or h <= 0:
        return 0.0
    return w * h / min((a[2] - a[0]) * (a[3] - a[1]), (b[2] - b[0]) * (b[3] - b[1]))


def compose(
    cutouts: list[CutOut], backdrop: np.ndarray, rng: np.random.Generator, degrade: bool = True
) -> Scene:
    """Put the cut-outs on ``backdrop`` at random sizes and places (overlapping at most a
    fifth of the smaller one), then degrade the photo as a snapshot."""
    image = backdrop.astype(np.float32)
    height, width = image.shape[:2]
    scene = Scene(image=backdrop)
    one = len(cutouts) == 1
    for item in cutouts:
        share = rng.uniform(0.45, 0.9) if one else rng.uniform(0.28, 0.6)
        h0, w0 = item.rgb.shape[:2]
        scale = share * min(height, width) / max(h0, w0)
        w, h = max(8, round(w0 * scale)), max(8, round(h0 * scale))
        w, h = min(w, width), min(h, height)
        for _ in range(20):
            x, y = int(rng.integers(0, width - w + 1)), int(rng.integers(0, height - h + 1))
            box = (x, y, x + w, y + h)
            if all(_overlap(box, other) < 0.2 for other in scene.boxes):
                break
        else:
            continue
        rgb = cv2.resize(item.rgb, (w, h), interpolation=cv2.INTER_LINEAR).astype(np.float32)
        alpha = cv2.resize(item.alpha, (w, h), interpolation=cv2.INTER_LINEAR)[..., None]
        region = image[y : y + h, x : x + w]
        image[y : y + h, x : x + w] = alpha * rgb + (1 - alpha) * region
        scene.boxes.append(box)
        scene.product_ids.append(item.product_id)
    scene.image = snapshot_degrade(image, rng) if degrade else image.clip(0, 255).astype(np.uint8)
    return scene


def snapshot_degrade(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Uneven light, a colour cast, blur and JPEG artefacts, as a phone's snapshot."""
    width = image.shape[1]
    gain = rng.uniform(0.6, 1.25) * rng.uniform(0.88, 1.12, 3)
    ramp = np.linspace(rng.uniform(0.7, 1.0), rng.uniform(1.0, 1.3), width)[None, :, None]
    out = np.clip(image.astype(np.float32) * gain * ramp, 0, 255).astype(np.uint8)
    sigma = rng.uniform(0, 1.6)
    if sigma > 0.3:
        out = cv2.GaussianBlur(out, (0, 0), sigma)
    quality = int(rng.integers(35, 90))
    ok, encoded = cv2.imencode(".jpg", out[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, quality])
    return cv2.imdecode(encoded, cv2.IMREAD_COLOR)[..., ::-1].copy() if ok else out


def random_scene(
    cutouts: list[CutOut], split: str, rng: np.random.Generator, count: int | None = None
) -> Scene:
    """A scene of ``count`` (default 1-3) random cut-outs on a background of ``split``."""
    width = int(rng.integers(320, 720))
    height = int(width * rng.uniform(0.75, 1.34))
    n = count if count is not None else int(rng.choice([1, 1, 2, 3]))
    chosen = rng.choice(len(cutouts), size=min(n, len(cutouts)), replace=False)
    return compose([cutouts[i] for i in chosen], background(split, rng, width, height), rng)
