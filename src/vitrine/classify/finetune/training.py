"""Multi-task fine-tuning of the CNN's last blocks on cached lower activations.

One cross-entropy per field (label smoothing; a human correction weighs
``correction_weight`` as in the head trainer), summed over fields. Each field holds out
exactly the products :func:`vitrine.classify.trainer.held_out_sides` holds out, so the
heads trained later on the new embeddings are calibrated and evaluated on products whose
label of that field the CNN never saw. Rare classes (fewer than ``min_support`` training
examples) are not trained on. Early stopping on the mean calibration accuracy; the best
epoch is kept. The learning rate follows a warm-up and a cosine decay over whichever ends
first, the epochs or the wall-clock budget, so a short budget still ends at a low rate.
"""

from __future__ import annotations

import logging
import math
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
from torch.nn import functional

from vitrine.classify.dataset import FieldLabels
from vitrine.classify.finetune.activations import Activations
from vitrine.classify.finetune.network import MultiTaskNet, check_trainable_blocks
from vitrine.classify.trainer import TrainConfig, TrainingError, held_out_sides

log = logging.getLogger(__name__)

IGNORE = -100


@dataclass
class SplitSettings:
    """What every fine-tuning shares with the head trainer: the held-out split, rare
    classes, the weight of a correction, and the CPU threads."""

    threads: int = 0  # torch CPU threads; 0: every core this process may use
    min_support: int = 10
    holdout: float = 0.2
    correction_weight: float = 3.0
    seed: str = "vitrine"

    def split_config(self) -> TrainConfig:
        return TrainConfig(
            min_support=self.min_support,
            holdout=self.holdout,
            correction_weight=self.correction_weight,
            seed=self.seed,
        )


@dataclass
class FineTuneConfig(SplitSettings):
    """How the CNN's last blocks are fine-tuned: blocks, epochs, batch size, learning rate."""

    trainable_blocks: int = 2  # MBConv blocks trained (plus the head convolution)
    budget_seconds: float = 600.0  # wall clock for the training loop
    max_epochs: int = 12
    patience: int = 2  # epochs without a better calibration accuracy before stopping
    batch_size: int = 64
    lr: float = 3e-4  # the CNN blocks
    head_lr: float = 3e-3  # the per-field heads
    weight_decay: float = 1e-4
    label_smoothing: float = 0.1
    dropout: float = 0.2
    warmup_steps: int = 20
    flip: bool = True  # also cache and train on mirror images


@dataclass
class FieldTargets:
    """Class indices per activation row for one field, by side (``IGNORE`` where none)."""

    field: str
    classes: list[str]
    train: np.ndarray
    weight: np.ndarray
    calibration: np.ndarray
    evaluation: np.ndarray


@dataclass
class FineTuneResult:
    """A fine-tuned network with its training history."""

    model: MultiTaskNet
    targets: list[FieldTargets]
    device: str
    history: list[dict[str, Any]] = field(default_factory=list)
    metrics: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    stopped: str = ""
    config: dict[str, Any] = field(default_factory=dict)

    @property
    def cut(self) -> int:
        return self.model.top.cut

    def embed(self, activations: Activations, batch_size: int = 256) -> np.ndarray:
        """L2-normalised fine-tuned embeddings of the cached photos (not their mirrors)."""
        return _run(self.model, activations, np.arange(len(activations)), batch_size, self.device)[
            0
        ]

    def predict(self, activations: Activations) -> dict[str, np.ndarray]:
        """The network's own heads: field -> predicted class per cached photo."""
        _, logits = _run(self.model, activations, np.arange(len(activations)), 256, self.device)
        return {
            t.field: np.array(t.classes, dtype=object)[lg.argmax(axis=1)]
            for t, lg in zip(self.targets, logits, strict=True)
        }


def build_targets(
    ids: list[str], labels: Mapping[str, FieldLabels], config: SplitSettings
) -> list[FieldTargets]:
    labelled = sorted({p for fl in labels.values() for p in fl.values} & set(ids))
    sides = held_out_sides(labels, labelled, config.split_config())
    out = []
    for f, fl in labels.items():
        side = sides[f]
        support = Counter(v for p, v in fl.values.items() if side.get(p) == "train")
        classes = sorted(c for c, n in support.items() if n >= config.min_support)
        if len(classes) < 2:
            raise TrainingError(
                f"field {f!r}: fewer than 2 classes with {config.min_support} or more "
                "training examples"
            )
        index = {c: i for i, c in enumerate(classes)}
        arrays = {
            s: np.full(len(ids), IGNORE, np.int64) for s in ("train", "calibration", "evaluation")
        }
        weight = np.zeros(len(ids), np.float32)
        for row, pid in enumerate(ids):
            value = fl.values.get(pid)
            name = side.get(pid)
            if value is None or name is None:
                continue
            # A held-out row of a rare class is kept as -1: never right, as in service.
            arrays[name][row] = index.get(value, IGNORE if name == "train" else -1)
            if name == "train" and value in index:
                weight[row] = config.correction_weight if pid in fl.corrected else 1.0
        out.append(
            FieldTargets(
                f, classes, arrays["train"], weight, arrays["calibration"], arrays["evaluation"]
            )
        )
    return out


def _run(
    model: MultiTaskNet, acts: Activations, rows: np.ndarray, batch_size: int, device: str
) -> tuple[np.ndarray, list[np.ndarray]]:
    model.eval()
    embeddings, logits = [], []
    with torch.inference_mode():
        for start in range(0, len(rows), batch_size):
            chunk = np.sort(rows[start : start + batch_size])
            x = torch.from_numpy(np.asarray(acts.data[chunk, 0], dtype=np.float32)).to(device)
            emb, outs = model(x)
            embeddings.append(functional.normalize(emb, dim=1).cpu().numpy())
            logits.append([o.cpu().numpy() for o in outs])
    if not embeddings:
        return np.zeros((0, 1280), np.float32), [np.zeros((0, len(h.weight))) for h in model.heads]
    per_field = [np.concatenate([lg[i] for lg in logits]) for i in range(len(model.heads))]
    return np.concatenate(embeddings), per_field


def side_accuracies(
    targets: list[FieldTargets],
    side: str,
    scores: Callable[[np.ndarray], list[np.ndarray]],
) -> dict[str, float]:
    """Accuracy per field on one side of the split (``train``, ``calibration`` or
    ``evaluation``); ``scores(rows)`` gives each field's class scores of those rows."""
    wanted = [getattr(t, side) for t in targets]
    rows = np.flatnonzero(np.any(np.stack(wanted) != IGNORE, axis=0))
    if len(rows) == 0:
        return {}
    out = {}
    for t, y_all, lg in zip(targets, wanted, scores(rows), strict=True):
        y = y_all[rows]
        keep = y != IGNORE
        if keep.any():
            out[t.field] = round(float((lg[keep].argmax(axis=1) == y[keep]).mean()), 4)
    return out


def _accuracy(
    model: MultiTaskNet, acts: Activations, targets: list[FieldTargets], side: str, device: str
) -> dict[str, float]:
    return side_accuracies(targets, side, lambda rows: _run(model, acts, rows, 256, device)[1])


def field_loss(
    outs: list[torch.Tensor], ys: list[torch.Tensor], ws: list[torch.Tensor], smoothing: float
) -> torch.Tensor:
    total = outs[0].new_zeros(())
    for out, y, w in zip(outs, ys, ws, strict=True):
        keep = y != IGNORE
        if keep.any():
            ce = functional.cross_entropy(
                out[keep], y[keep], reduction="none", label_smoothing=smoothing
            )
            total = total + (ce * w[keep]).sum() / w[keep].sum()
    return total


def fine_tune(
    net: Any,
    activations: Activations,
    labels: Mapping[str, FieldLabels],
    config: FineTuneConfig | None = None,
    on_epoch: Callable[[dict[str, Any]], None] | None = None,
) -> FineTuneResult:
    """Train the last blocks of ``net`` (the pretrained torch EfficientNet-Lite0, changed in
    place) and one head per field of ``labels`` on the cached ``activations``."""
    config = config or FineTuneConfig()
    cut = 16 - check_trainable_blocks(config.trainable_blocks)
    if config.budget_seconds <= 0:
        raise ValueError("the time budget must be positive")
    targets = build_targets(activations.ids, labels, config)
    train_rows = np.flatnonzero(np.any(np.stack([t.train for t in targets]) != IGNORE, axis=0))
    if len(train_rows) == 0:
        raise TrainingError("no labelled product with a readable photo to fine-tune on")
    device = "cuda" if torch.cuda.is_available() else "cpu"
    previous_threads = torch.get_num_threads()
    if config.threads:
        torch.set_num_threads(config.threads)
    try:
        result = _fit(net, cut, activations, targets, train_rows, config, device, on_epoch)
    finally:
        torch.set_num_threads(previous_threads)
    result.config = asdict(config)
    return result


def _fit(
    net: Any,
    cut: int,
    acts: Activations,
    targets: list[FieldTargets],
    train_rows: np.ndarray,
    config: FineTuneConfig,
    device: str,
    on_epoch: Callable[[dict[str, Any]], None] | None,
) -> FineTuneResult:
    torch.manual_seed(0)
    model = MultiTaskNet(net, cut, {t.field: t.classes for t in targets}, config.dropout).to(device)
    optimizer = torch.optim.AdamW(
        [
            {"params": model.backbone_parameters(), "lr": config.lr, "base": config.lr},
            {"params": model.head_parameters(), "lr": config.head_lr, "base": config.head_lr},
        ],
        weight_decay=config.weight_decay,
    )
    result = FineTuneResult(model, targets, device)
    rng = np.random.default_rng(0)
    steps_per_epoch = math.ceil(len(train_rows) / config.batch_size)
    total_steps = config.max_epochs * steps_per_epoch
    ys = [torch.from_numpy(t.train) for t in targets]
    ws = [torch.from_numpy(t.weight) for t in targets]
    t0 = time.monotonic()
    step, best, best_state, since_best = 0, -1.0, model.trainable_state(), 0
    result.stopped = "max_epochs"
    for epoch in range(1, config.max_epochs + 1):
        model.train()
        order = rng.permutation(train_rows)
        losses = []
        out_of_time = False
        for start in range(0, len(order), config.batch_size):
            rows = np.sort(order[start : start + config.batch_size])
            views = rng.integers(0, acts.views, len(rows))
            x = torch.from_numpy(np.asarray(acts.data[rows, views], dtype=np.float32)).to(device)
            progress = max(step / total_steps, (time.monotonic() - t0) / config.budget_seconds)
            warm = min(1.0, (step + 1) / max(1, config.warmup_steps))
            for group in optimizer.param_groups:
                group["lr"] = (
                    group["base"] * warm * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
                )
            _, outs = model(x)
            idx = torch.from_numpy(rows)
            loss = field_loss(
                outs,
                [y[idx].to(device) for y in ys],
                [w[idx].to(device) for w in ws],
                config.label_smoothing,
            )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            losses.append(float(loss.detach()))
            step += 1
            if time.monotonic() - t0 >= config.budget_seconds:
                out_of_time = True
                break
        calibration = _accuracy(model, acts, targets, "calibration", device)
        score = (
            float(np.mean(list(calibration.values()))) if calibration else -float(np.mean(losses))
        )
        entry = {
            "epoch": epoch,
            "steps": step,
            "seconds": round(time.monotonic() - t0, 1),
            "train_loss": round(float(np.mean(losses)), 4),
            "calibration_accuracy": calibration,
            "score": round(score, 4),
        }
        result.history.append(entry)
        log.info("fine-tune epoch %d: %s", epoch, entry)
        if on_epoch:
            on_epoch(entry)
        if score > best + 1e-4:
            best, best_state, since_best = score, model.trainable_state(), 0
        else:
            since_best += 1
        if out_of_time:
            result.stopped = "time budget"
            break
        if since_best >= config.patience:
            result.stopped = "early stopping"
            break
    model.load_state_dict(best_state, strict=False)
    result.seconds = round(time.monotonic() - t0, 1)
    best_epoch = max(result.history, key=lambda e: e["score"])["epoch"]
    result.metrics = {
        "best_epoch": best_epoch,
        "calibration_accuracy": _accuracy(model, acts, targets, "calibration", device),
        "evaluation_accuracy": _accuracy(model, acts, targets, "evaluation", device),
        "train_rows": len(train_rows),
        "steps": step,
    }
    model.eval()
    return result
