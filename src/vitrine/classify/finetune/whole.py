"""EfficientNet-Lite0 trained end to end on the shop's photos, one head per label field.

The network takes what the served model takes (uint8 NHWC 224x224 photos prepared by
:func:`vitrine.vision.model_input.prepare_image`) and first resizes them to
``input_size`` by area averaging (:func:`downscale`), so a catalog of small photos (60x80
is common) is learnt and served at a matching scale at a fraction of the cost; the same
downscaling is part of the exported graph, so training and serving see the same pixels.

A colour field (``baseColour``) reads, beside the pooled features, the colour histogram
of the product's own region (:class:`RegionColour`): a spatial attention map computed from
the network's last feature map weights a soft histogram of the photo's pixels. The
attention is learnt by the colour loss together with the network, so it learns to look at
the garment rather than the skin, hair or background around it.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn
from torch.nn import functional

SERVED_SIZE = 224  # what prepare_image hands the network


def check_input_size(size: int) -> int:
    if not 56 <= size <= SERVED_SIZE:
        raise ValueError(f"input_size must be 56 to {SERVED_SIZE} pixels, not {size}")
    return size


def area_matrix(source: int, target: int) -> torch.Tensor:
    """``target x source`` weights of an area (box-filter) resize: each output pixel is
    the mean of the source pixels it covers, fractions included. Applied as two matrix
    products, it resizes by any factor without aliasing and exports to ONNX as MatMul."""
    ratio = source / target
    weights = torch.zeros(target, source)
    for i in range(target):
        start, end = i * ratio, (i + 1) * ratio
        for j in range(int(start), min(source, math.ceil(end))):
            weights[i, j] = max(0.0, min(end, j + 1) - max(start, j))
    return weights / ratio


def downscale(x: torch.Tensor, size: int, matrix: torch.Tensor | None = None) -> torch.Tensor:
    """Float NCHW 224x224 -> ``size x size``: average pooling when ``size`` divides 224,
    else the area resize of :func:`area_matrix` (``matrix``, precomputed)."""
    if size == x.shape[-1]:
        return x
    if x.shape[-1] % size == 0:
        return functional.avg_pool2d(x, x.shape[-1] // size)
    m = matrix if matrix is not None else area_matrix(x.shape[-1], size)
    return torch.matmul(torch.matmul(m, x), m.transpose(0, 1))


def colour_prototypes(levels: int = 4) -> torch.Tensor:
    """A regular grid of RGB colours in the network's [-1, 1] pixel scale."""
    steps = torch.linspace(-1.0, 1.0, levels)
    return torch.tensor(list(itertools.product(steps.tolist(), repeat=3)), dtype=torch.float32)


class RegionColour(nn.Module):
    """Attention-weighted soft colour histogram of the photo's pixels (``K`` bins).

    The attention logits come from a 1x1 convolution of the last feature map, upsampled
    to a ``grid x grid`` map of the photo; each pixel of the (average-pooled) photo is
    softly assigned to the nearest colour prototypes. Starts as the whole-photo histogram
    (zero attention weights) and learns where the product is.
    """

    def __init__(self, channels: int, grid: int = 28, temperature: float = 0.08) -> None:
        super().__init__()
        self.grid = grid
        self.temperature = temperature
        self.attention = nn.Conv2d(channels, 1, kernel_size=1)
        nn.init.zeros_(self.attention.weight)
        nn.init.zeros_(self.attention.bias)
        self.register_buffer("prototypes", colour_prototypes())

    @property
    def bins(self) -> int:
        return int(self.prototypes.shape[0])

    def forward(self, features: torch.Tensor, pixels: torch.Tensor) -> torch.Tensor:
        logits = self.attention(features.float())
        logits = functional.interpolate(
            logits, size=(self.grid, self.grid), mode="bilinear", align_corners=False
        )
        weights = torch.softmax(logits.flatten(1), dim=1)  # N x G²
        px = functional.adaptive_avg_pool2d(pixels.float(), self.grid).flatten(2).transpose(1, 2)
        # Squared distances written out: cdist's gradient is NaN where a pixel sits exactly
        # on a prototype (clamped pixels do).
        squared = (px.unsqueeze(2) - self.prototypes).square().sum(dim=3)  # N x G² x K
        assign = torch.softmax(-squared / self.temperature, dim=2)
        histogram = torch.bmm(weights.unsqueeze(1), assign).squeeze(1)  # N x K
        return (histogram + 1e-6).sqrt() * 4.0  # Hellinger scale, near unit variance


class WholeNet(nn.Module):
    """Downscale, the whole EfficientNet-Lite0, dropout and one linear head per field;
    colour fields also read :class:`RegionColour`."""

    def __init__(
        self,
        backbone: Any,
        classes: dict[str, Sequence[str]],
        *,
        input_size: int = 128,
        colour_fields: Sequence[str] = (),
        region_colour: bool = True,
        dropout: float = 0.2,
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.input_size = check_input_size(input_size)
        self.register_buffer("resize", area_matrix(SERVED_SIZE, input_size), persistent=False)
        self.fields = list(classes)
        width = backbone._fc.in_features
        self.region = RegionColour(width) if region_colour and colour_fields else None
        self.colour_fields = [f for f in self.fields if f in set(colour_fields)]
        self.dropout = nn.Dropout(dropout)
        extra = self.region.bins if self.region is not None else 0
        self.heads = nn.ModuleList(
            nn.Linear(width + (extra if f in self.colour_fields else 0), len(c))
            for f, c in classes.items()
        )
        for p in self.parameters():
            p.requires_grad_(True)

    def downscale(self, image: torch.Tensor) -> torch.Tensor:
        """uint8 NHWC 224x224 -> float NCHW in [-1, 1] at the network's input size."""
        x = (image.permute(0, 3, 1, 2).to(torch.float32) - 127.0) / 128.0
        return downscale(x, self.input_size, self.resize)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone.extract_features(x)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """``x``: float NCHW at the input size (see :meth:`downscale`) -> (pooled
        embedding, logits per field)."""
        maps = self.features(x)
        embedding = maps.mean(dim=(2, 3))
        hidden = self.dropout(embedding)
        colour = self.region(maps, x) if self.region is not None else None
        outs = []
        for f, head in zip(self.fields, self.heads, strict=True):
            if colour is not None and f in self.colour_fields:
                outs.append(head(torch.cat([hidden, colour.to(hidden.dtype)], dim=1)))
            else:
                outs.append(head(hidden))
        return embedding, outs

    def backbone_parameters(self) -> list[nn.Parameter]:
        return list(self.backbone.parameters())

    def head_parameters(self) -> list[nn.Parameter]:
        region = list(self.region.parameters()) if self.region is not None else []
        return [*self.heads.parameters(), *region]

    def trainable_state(self) -> dict[str, torch.Tensor]:
        """A detached copy of every weight (to restore the best epoch)."""
        return {k: v.detach().clone() for k, v in self.state_dict().items()}

    def embedding_state(self) -> dict[str, torch.Tensor]:
        """The weights the served embedding depends on (the backbone)."""
        return {k: v for k, v in self.trainable_state().items() if k.startswith("backbone.")}

    def serving_module(self) -> nn.Module:
        """uint8 NHWC 224x224 in, (pooled embedding, ImageNet logits) out: the served
        model's interface (the ImageNet classifier is the base model's, untrained)."""
        return _Serving(self).eval()


class _Serving(nn.Module):
    def __init__(self, net: WholeNet) -> None:
        super().__init__()
        self.net = net

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.net.downscale(image)
        embedding = self.net.features(x).mean(dim=(2, 3))
        return embedding, self.net.backbone._fc(embedding)
