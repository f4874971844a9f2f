"""Whole-network multi-task fine-tuning from the photo alone, beside a linear probe on the
same network's frozen features, on the fixed 80/20 split of fashion-small (a slice of it).

Both systems see the same photos at the same input size; the baseline is logistic
regression on the pretrained EfficientNet-Lite0's pooled features (the service's frozen
embedding), measured in the same run. Fine-tuning trains every layer with one head per
field: random resized crops and flips for every photo; colour jitter on half of each
batch, whose colour field's loss is left out (the colour is the label there). The test
photos are touched once, at the end.

    .venv/bin/python bench/bench_finetune_full.py --train 10000 --test 2000 --epochs 3
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import nn
from torch.nn import functional

from bench_classify import FASHION, is_test
from bench_finetune_speed import cpu_flags, load_backbone

FIELDS = ("masterCategory", "subCategory", "articleType", "baseColour", "gender")
COLOUR_FIELDS = ("baseColour",)
MIN_SUPPORT = 10
IGNORE = -100


def read_rows(limit_train: int, limit_test: int) -> tuple[list[dict], list[dict]]:
    with (FASHION / "styles.csv").open(newline="", encoding="utf-8") as handle:
        rows = [
            r for r in csv.DictReader(handle) if (FASHION / "images" / f"{r['id']}.jpg").is_file()
        ]
    train = [r for r in rows if not is_test(r["id"])][:limit_train]
    test = [r for r in rows if is_test(r["id"])][:limit_test]
    return train, test


def decode(rows: list[dict], height: int, width: int) -> np.ndarray:
    """uint8 NHWC photos resized to the network's input (decoded once, kept in memory)."""
    out = np.empty((len(rows), height, width, 3), dtype=np.uint8)
    for i, r in enumerate(rows):
        with Image.open(FASHION / "images" / f"{r['id']}.jpg") as photo:
            out[i] = np.asarray(photo.convert("RGB").resize((width, height), Image.BICUBIC))
    return out


def vocabularies(train: list[dict]) -> dict[str, list[str]]:
    vocab = {}
    for f in FIELDS:
        counts = Counter(r[f] for r in train if r[f])
        vocab[f] = sorted(v for v, n in counts.items() if n >= MIN_SUPPORT)
    return vocab


def targets(rows: list[dict], vocab: dict[str, list[str]]) -> np.ndarray:
    index = {f: {v: i for i, v in enumerate(vs)} for f, vs in vocab.items()}
    return np.array([[index[f].get(r[f], IGNORE) for f in FIELDS] for r in rows], dtype=np.int64)


def to_input(batch: np.ndarray) -> torch.Tensor:
    x = torch.from_numpy(batch).permute(0, 3, 1, 2).float()
    return ((x - 127.0) / 128.0).contiguous(memory_format=torch.channels_last)


def augment(x: torch.Tensor, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Crops (75-100 % of the area) and flips for all; colour jitter (brightness,
    contrast, saturation, hue-ish channel gains) on the second half. Returns the batch and
    a mask of the jittered rows."""
    n, _c, h, w = x.shape
    out = torch.empty_like(x)
    for i in range(n):
        scale = math.sqrt(rng.uniform(0.75, 1.0))
        ch, cw = max(8, int(h * scale)), max(8, int(w * scale))
        top, left = rng.integers(0, h - ch + 1), rng.integers(0, w - cw + 1)
        crop = x[i : i + 1, :, top : top + ch, left : left + cw]
        crop = functional.interpolate(crop, size=(h, w), mode="bilinear", align_corners=False)
        if rng.random() < 0.5:
            crop = crop.flip(3)
        out[i] = crop[0]
    jittered = torch.zeros(n, dtype=torch.bool)
    jittered[n // 2 :] = True
    half = out[n // 2 :]
    gains = torch.from_numpy(rng.uniform(0.7, 1.3, size=(half.shape[0], 3, 1, 1))).float()
    mean = half.mean(dim=(1, 2, 3), keepdim=True)
    contrast = torch.from_numpy(rng.uniform(0.7, 1.3, size=(half.shape[0], 1, 1, 1))).float()
    grey = half.mean(dim=1, keepdim=True)
    saturation = torch.from_numpy(rng.uniform(0.5, 1.5, size=(half.shape[0], 1, 1, 1))).float()
    half = grey + (half - grey) * saturation
    half = mean + (half - mean) * contrast
    out[n // 2 :] = (half * gains).clamp(-1.0, 1.0)
    return out.contiguous(memory_format=torch.channels_last), jittered


class MultiTask(nn.Module):
    def __init__(self, backbone: nn.Module, sizes: list[int]) -> None:
        super().__init__()
        self.backbone = backbone
        width = backbone._fc.in_features
        self.dropout = nn.Dropout(0.2)
        self.heads = nn.ModuleList(nn.Linear(width, n) for n in sizes)

    def pooled(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone.extract_features(x).mean(dim=(2, 3))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        z = self.dropout(self.pooled(x))
        return [head(z) for head in self.heads]


@torch.inference_mode()
def embed(net: MultiTask, photos: np.ndarray, batch: int = 128) -> np.ndarray:
    net.eval()
    return np.concatenate(
        [net.pooled(to_input(photos[i : i + batch])).numpy() for i in range(0, len(photos), batch)]
    )


def accuracy(pred: np.ndarray, truth: np.ndarray) -> float:
    keep = truth != IGNORE
    return float((pred[keep] == truth[keep]).mean()) if keep.any() else float("nan")


def linear_probe(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray) -> np.ndarray:
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(train_x)
    a, b = scaler.transform(train_x), scaler.transform(test_x)
    preds = []
    for j in range(train_y.shape[1]):
        keep = train_y[:, j] != IGNORE
        model = LogisticRegression(C=0.5, max_iter=1000).fit(a[keep], train_y[keep, j])
        preds.append(model.predict(b))
    return np.stack(preds, axis=1)


def fine_tune(
    net: MultiTask, photos: np.ndarray, y: np.ndarray, args: argparse.Namespace
) -> list[dict[str, Any]]:
    rng = np.random.default_rng(0)
    colour = torch.tensor([f in COLOUR_FIELDS for f in FIELDS])
    backbone_params = list(net.backbone.parameters())
    head_params = list(net.heads.parameters())
    optimiser = torch.optim.AdamW(
        [{"params": backbone_params, "lr": args.lr}, {"params": head_params, "lr": args.lr * 5}],
        weight_decay=1e-4,
    )
    steps = args.epochs * (len(photos) // args.batch)
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimiser, max_lr=[args.lr, args.lr * 5], total_steps=steps, pct_start=0.1
    )
    net = net.to(memory_format=torch.channels_last)
    log = []
    for epoch in range(args.epochs):
        net.train()
        order = rng.permutation(len(photos))
        started, losses = time.perf_counter(), []
        for s in range(len(photos) // args.batch):
            idx = np.sort(order[s * args.batch : (s + 1) * args.batch])
            x, jittered = augment(to_input(photos[idx]), rng)
            t = torch.from_numpy(y[idx])
            outputs = net(x)
            loss = torch.zeros(())
            for j, out in enumerate(outputs):
                target = t[:, j].clone()
                if colour[j]:
                    target[jittered] = IGNORE  # jitter changed the colour: no label here
                if (target != IGNORE).any():
                    loss = loss + functional.cross_entropy(
                        out, target, ignore_index=IGNORE, label_smoothing=0.1
                    )
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            schedule.step()
            losses.append(float(loss.detach()))
        seconds = time.perf_counter() - started
        log.append(
            {
                "epoch": epoch + 1,
                "loss": round(float(np.mean(losses)), 4),
                "seconds": round(seconds),
            }
        )
        print(f"epoch {epoch + 1}: loss {np.mean(losses):.3f}, {seconds:.0f} s", flush=True)
    return log


@torch.inference_mode()
def predict(net: MultiTask, photos: np.ndarray, batch: int = 128) -> np.ndarray:
    net.eval()
    preds = []
    for i in range(0, len(photos), batch):
        x = to_input(photos[i : i + batch])
        outputs = net(x)
        preds.append(np.stack([o.argmax(1).numpy() for o in outputs], axis=1))
    return np.concatenate(preds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", type=int, default=10_000, help="training photos (of the 80 %)")
    parser.add_argument("--test", type=int, default=2_000, help="test photos (of the 20 %)")
    parser.add_argument("--height", type=int, default=128)
    parser.add_argument("--width", type=int, default=96)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--lr", type=float, default=4e-4)
    parser.add_argument("--backbone", default="lite0")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    torch.manual_seed(0)
    train, test = read_rows(args.train, args.test)
    vocab = vocabularies(train)
    y_train, y_test = targets(train, vocab), targets(test, vocab)
    started = time.perf_counter()
    train_photos = decode(train, args.height, args.width)
    test_photos = decode(test, args.height, args.width)
    took = time.perf_counter() - started
    print(f"{len(train)} train / {len(test)} test photos decoded in {took:.0f} s")
    net = MultiTask(load_backbone(args.backbone), [len(vocab[f]) for f in FIELDS])
    started = time.perf_counter()
    probe = linear_probe(embed(net, train_photos), y_train, embed(net, test_photos))
    probe_seconds = time.perf_counter() - started
    scores = [f"{f} {accuracy(probe[:, j], y_test[:, j]):.3f}" for j, f in enumerate(FIELDS)]
    shown = ", ".join(scores)
    print(f"linear probe ({probe_seconds:.0f} s): {shown}", flush=True)
    log = fine_tune(net, train_photos, y_train, args)
    tuned = predict(net, test_photos)
    result = {
        "cpu_flags": cpu_flags(),
        "args": vars(args) | {"out": None},
        "probe_seconds": round(probe_seconds),
        "epochs": log,
        "fields": {},
    }
    print(f"{'field':16} {'classes':>7} {'linear probe':>12} {'fine-tuned':>10}")
    for j, f in enumerate(FIELDS):
        a, b = accuracy(probe[:, j], y_test[:, j]), accuracy(tuned[:, j], y_test[:, j])
        result["fields"][f] = {
            "classes": len(vocab[f]),
            "probe": round(a, 4),
            "finetuned": round(b, 4),
        }
        print(f"{f:16} {len(vocab[f]):7d} {a:12.3f} {b:10.3f}")
    if args.out:
        args.out.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
