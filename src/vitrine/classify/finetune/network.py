"""EfficientNet-Lite0 cut in two for fine-tuning, with one linear head per label field.

The lower blocks stay frozen and are run once per photo (see :mod:`.activations`); the
last ``trainable_blocks`` MBConv blocks, the 1x1 head convolution and the per-field heads
are trained. Batch-norm statistics stay frozen (their scale and shift are trained): the
cached activations were computed with them, and small CPU batches would estimate new
ones badly. Stochastic depth (drop connect) is kept as the pretrained model used it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

NUM_BLOCKS = 16  # MBConv blocks of EfficientNet-Lite0


def check_trainable_blocks(n: int) -> int:
    if not 1 <= n <= NUM_BLOCKS:
        raise ValueError(f"trainable_blocks must be 1..{NUM_BLOCKS}, not {n}")
    return n


class Lower(nn.Module):
    """uint8 NHWC photos (as the served model takes them) -> activations before block ``cut``."""

    def __init__(self, net: Any, cut: int) -> None:
        super().__init__()
        self.net = net
        self.cut = cut

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        x = (image.permute(0, 3, 1, 2).to(torch.float32) - 127.0) / 128.0
        net = self.net
        x = net._swish(net._bn0(net._conv_stem(x)))
        for block in net._blocks[: self.cut]:
            x = block(x)
        return x


class Top(nn.Module):
    """Blocks ``cut..15`` and the head convolution -> the pooled 1280-d embedding."""

    def __init__(self, net: Any, cut: int) -> None:
        super().__init__()
        self.net = net  # shares (and trains) the base network's own modules
        self.cut = cut

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        net = self.net
        rate = net._global_params.drop_connect_rate or 0.0
        for idx in range(self.cut, NUM_BLOCKS):
            drop = rate * idx / NUM_BLOCKS if self.training else None
            x = net._blocks[idx](x, drop_connect_rate=drop)
        x = net._swish(net._bn1(net._conv_head(x)))
        return x.mean(dim=(2, 3))

    def trainable_modules(self) -> list[nn.Module]:
        net = self.net
        return [*net._blocks[self.cut :], net._conv_head, net._bn1]


class MultiTaskNet(nn.Module):
    """The trainable top plus one linear head (after dropout) per field."""

    def __init__(
        self, net: Any, cut: int, classes: dict[str, Sequence[str]], dropout: float = 0.2
    ) -> None:
        super().__init__()
        self.top = Top(net, cut)
        self.dropout = nn.Dropout(dropout)
        self.fields = list(classes)
        self.heads = nn.ModuleList([nn.Linear(1280, len(c)) for c in classes.values()])
        for p in net.parameters():
            p.requires_grad_(False)
        for module in self.top.trainable_modules():
            for p in module.parameters():
                p.requires_grad_(True)

    def train(self, mode: bool = True) -> MultiTaskNet:
        super().train(mode)
        for module in self.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.eval()
        return self

    def backbone_parameters(self) -> list[nn.Parameter]:
        return [p for m in self.top.trainable_modules() for p in m.parameters()]

    def head_parameters(self) -> list[nn.Parameter]:
        return list(self.heads.parameters())

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        embedding = self.top(x)
        hidden = self.dropout(embedding)
        return embedding, [head(hidden) for head in self.heads]

    def embedding_state(self) -> dict[str, torch.Tensor]:
        """The trained weights the served embedding depends on (not the heads)."""
        return {k: v for k, v in self.trainable_state().items() if not k.startswith("heads.")}

    def serving_module(self) -> nn.Module:
        """uint8 NHWC 224x224 in, (pooled embedding, ImageNet logits) out."""
        from vitrine.vision.onnx_export import embedding_module

        return embedding_module(self.top.net)

    def trainable_state(self) -> dict[str, torch.Tensor]:
        """A detached copy of everything training changes (to restore the best epoch)."""
        names = {f"top.net._blocks.{i}." for i in range(self.top.cut, NUM_BLOCKS)}
        names |= {"top.net._conv_head.", "top.net._bn1.", "heads."}
        return {
            k: v.detach().clone()
            for k, v in self.state_dict().items()
            if any(k.startswith(n) for n in names)
        }
