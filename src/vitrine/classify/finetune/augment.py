"""Augmentations that a product photo meets, applied to a training batch.

Every photo gets a random scale change (a crop of 70-100 % of its area, or, one time in
four, a zoom out onto its own border colour) and a horizontal flip half the time. A share
of each batch is colour-jittered (channel gains, contrast, saturation, brightness): those
rows change colour, so the loss of a colour field must leave them out (the returned mask).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch.nn import functional


def augment_batch(
    x: torch.Tensor, rng: np.random.Generator, jitter_share: float = 0.5
) -> tuple[torch.Tensor, torch.Tensor]:
    """``x``: float NCHW in [-1, 1]. Returns the augmented batch and a bool mask of the
    colour-jittered rows (the last ``jitter_share`` of the batch)."""
    n, _c, h, w = x.shape
    out = torch.empty_like(x)
    for i in range(n):
        out[i] = _rescale(x[i : i + 1], rng, h, w)[0]
        if rng.random() < 0.5:
            out[i] = out[i].flip(2)
    jittered = torch.zeros(n, dtype=torch.bool)
    first = n - round(n * jitter_share)
    if first < n:
        jittered[first:] = True
        out[first:] = _jitter(out[first:], rng)
    return out, jittered


def _rescale(one: torch.Tensor, rng: np.random.Generator, h: int, w: int) -> torch.Tensor:
    if rng.random() < 0.25:  # zoom out: the product smaller, on its own border colour
        scale = rng.uniform(0.7, 0.95)
        sh, sw = max(8, int(h * scale)), max(8, int(w * scale))
        small = functional.interpolate(one, size=(sh, sw), mode="bilinear", align_corners=False)
        border = torch.cat([one[..., 0, :], one[..., -1, :]], dim=-1).median(dim=-1).values
        canvas = border[..., None, None].expand(1, one.shape[1], h, w).clone()
        top, left = rng.integers(0, h - sh + 1), rng.integers(0, w - sw + 1)
        canvas[..., top : top + sh, left : left + sw] = small
        return canvas
    scale = math.sqrt(rng.uniform(0.7, 1.0))
    aspect = math.exp(rng.uniform(-0.15, 0.15))
    ch = min(h, max(8, int(h * scale * aspect)))
    cw = min(w, max(8, int(w * scale / aspect)))
    top, left = rng.integers(0, h - ch + 1), rng.integers(0, w - cw + 1)
    crop = one[..., top : top + ch, left : left + cw]
    return functional.interpolate(crop, size=(h, w), mode="bilinear", align_corners=False)


def _jitter(x: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
    m = x.shape[0]

    def draw(low: float, high: float, channels: int = 1) -> torch.Tensor:
        return torch.from_numpy(rng.uniform(low, high, size=(m, channels, 1, 1))).float()

    grey = x.mean(dim=1, keepdim=True)
    x = grey + (x - grey) * draw(0.5, 1.5)  # saturation
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    x = mean + (x - mean) * draw(0.7, 1.3)  # contrast
    x = (x + 1.0) * draw(0.75, 1.25, 3) - 1.0  # per-channel gain (white balance, hue shift)
    x = x + draw(-0.15, 0.15)  # brightness
    return x.clamp(-1.0, 1.0)
