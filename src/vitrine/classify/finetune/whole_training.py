"""Training the whole network (:class:`~.whole.WholeNet`) on the catalog's photos.

Photos are decoded and prepared once (as served: 224x224, then averaged down to the input
size) and cached as float16 maps (:func:`~.activations.compute_activations`). Each step
augments a batch (:mod:`.augment`); the colour fields' loss leaves out the jittered rows.
One cross-entropy per field (label smoothing, corrections weighted) summed; AdamW with a
warm-up and a cosine decay over whichever ends first, the epochs or the wall-clock
budget; early stopping on the mean calibration accuracy, the best epoch kept. The device
is the GPU when torch sees one (``device="auto"``); on a CPU the batch is channels-last,
and bf16 autocast is used where the CPU has native bf16 and the input is large enough for
it to pay (measured: from 160 px).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch

from vitrine.classify.finetune.activations import Activations
from vitrine.classify.finetune.augment import augment_batch
from vitrine.classify.finetune.training import (
    IGNORE,
    FieldTargets,
    SplitSettings,
    field_loss,
    side_accuracies,
)
from vitrine.classify.finetune.whole import (
    SERVED_SIZE,
    WholeNet,
    area_matrix,
    check_input_size,
    downscale,
)
from vitrine.classify.trainer import TrainingError

log = logging.getLogger(__name__)

COLOUR_WORDS = ("colour", "color")
BF16_MIN_SIZE = 160


def is_colour_field(name: str) -> bool:
    return any(w in name.lower() for w in COLOUR_WORDS)


@dataclass
class WholeNetConfig(SplitSettings):
    """How the whole network is fine-tuned."""

    input_size: int = 128  # the served 224x224 photo is area-resized to this first
    max_epochs: int = 4
    budget_seconds: float = 3600.0
    patience: int = 1
    batch_size: int = 32
    lr: float = 4e-4  # the backbone; the heads learn 5x faster
    head_lr_factor: float = 5.0
    weight_decay: float = 1e-4
    label_smoothing: float = 0.1
    dropout: float = 0.2
    warmup_share: float = 0.1
    jitter_share: float = 0.5  # rows of each batch colour-jittered (colour loss left out)
    region_colour: bool = True
    colour_fields: tuple[str, ...] | None = None  # None: fields named like a colour
    device: str = "auto"  # auto, cpu or cuda
    precision: str = "auto"  # auto, fp32 or bf16


def resolve_device(wanted: str) -> str:
    if wanted not in {"auto", "cpu", "cuda"}:
        raise ValueError(f"device must be auto, cpu or cuda, not {wanted!r}")
    if wanted == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' asked for, but torch sees no CUDA GPU")
    if wanted == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return wanted


def cpu_has_bf16() -> bool:
    try:
        flags = open("/proc/cpuinfo").read()  # noqa: SIM115 - read once, small
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def resolve_precision(wanted: str, device: str, input_size: int) -> str:
    if wanted not in {"auto", "fp32", "bf16"}:
        raise ValueError(f"precision must be auto, fp32 or bf16, not {wanted!r}")
    if wanted != "auto":
        return wanted
    if device == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    return "bf16" if cpu_has_bf16() and input_size >= BF16_MIN_SIZE else "fp32"


@dataclass
class WholeNetResult:
    """A fine-tuned whole network with its training history."""

    model: WholeNet
    targets: list[FieldTargets]
    device: str
    precision: str = "fp32"
    history: list[dict[str, Any]] = field(default_factory=list)
    metrics: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    stopped: str = ""
    config: dict[str, Any] = field(default_factory=dict)

    def probabilities(
        self, photos: Activations, rows: np.ndarray | None = None, tta: bool = False
    ) -> list[np.ndarray]:
        """Softmax per field of the cached photos (``rows``, default all); with ``tta``
        the mean of the photo and its mirror image."""
        rows = np.arange(len(photos)) if rows is None else rows
        return _probabilities(self.model, photos, rows, self.device, tta)


def _batch(photos: Activations, rows: np.ndarray, device: str) -> torch.Tensor:
    """Cached NHWC float16 photos -> NCHW float32 on ``device`` (channels-last)."""
    x = torch.from_numpy(np.asarray(photos.data[rows, 0], dtype=np.float32))
    return x.permute(0, 3, 1, 2).contiguous(memory_format=torch.channels_last).to(device)


def _autocast(device: str, precision: str) -> Any:
    return torch.autocast(device_type=device, dtype=torch.bfloat16, enabled=precision == "bf16")


def _probabilities(
    model: WholeNet, photos: Activations, rows: np.ndarray, device: str, tta: bool
) -> list[np.ndarray]:
    model.eval()
    out: list[list[np.ndarray]] = [[] for _ in model.heads]
    with torch.inference_mode():
        for start in range(0, len(rows), 128):
            x = _batch(photos, rows[start : start + 128], device)
            _, logits = model(x)
            probs = [torch.softmax(lg.float(), dim=1) for lg in logits]
            if tta:
                _, mirrored = model(x.flip(3))
                probs = [
                    (p + torch.softmax(m.float(), 1)) / 2
                    for p, m in zip(probs, mirrored, strict=True)
                ]
            for i, p in enumerate(probs):
                out[i].append(p.cpu().numpy())
    return [
        np.concatenate(o) if o else np.zeros((0, len(h.weight)))
        for o, h in zip(out, model.heads, strict=True)
    ]


def side_accuracy(
    model: WholeNet, photos: Activations, targets: list[FieldTargets], side: str, device: str
) -> dict[str, float]:
    return side_accuracies(
        targets, side, lambda rows: _probabilities(model, photos, rows, device, tta=False)
    )


def fine_tune_whole(
    backbone: Any,
    photos: Activations,
    targets: list[FieldTargets],
    config: WholeNetConfig | None = None,
    on_epoch: Callable[[dict[str, Any]], None] | None = None,
) -> WholeNetResult:
    """Train ``backbone`` (the pretrained torch EfficientNet-Lite0, changed in place) and one
    head per target field on the cached ``photos`` (at ``config.input_size``)."""
    config = config or WholeNetConfig()
    check_input_size(config.input_size)
    if config.budget_seconds <= 0:
        raise ValueError("the time budget must be positive")
    if len(photos) and photos.data.shape[2] != config.input_size:
        raise ValueError(
            f"photos cached at {photos.data.shape[2]} px, the network expects {config.input_size}"
        )
    train_rows = np.flatnonzero(np.any(np.stack([t.train for t in targets]) != IGNORE, axis=0))
    if len(train_rows) == 0:
        raise TrainingError("no labelled product with a readable photo to fine-tune on")
    device = resolve_device(config.device)
    precision = resolve_precision(config.precision, device, config.input_size)
    colour = config.colour_fields
    if colour is None:
        colour = tuple(t.field for t in targets if is_colour_field(t.field))
    torch.manual_seed(0)
    model = WholeNet(
        backbone,
        {t.field: t.classes for t in targets},
        input_size=config.input_size,
        colour_fields=colour,
        region_colour=config.region_colour,
        dropout=config.dropout,
    ).to(device)
    if device == "cpu":
        model = model.to(memory_format=torch.channels_last)
    previous_threads = torch.get_num_threads()
    if config.threads:
        torch.set_num_threads(config.threads)
    try:
        result = WholeNetResult(model, targets, device, precision)
        _fit(result, photos, train_rows, config, set(colour), on_epoch)
    finally:
        torch.set_num_threads(previous_threads)
    result.config = asdict(config) | {"colour_fields": list(colour)}
    return result


def _fit(
    result: WholeNetResult,
    photos: Activations,
    train_rows: np.ndarray,
    config: WholeNetConfig,
    colour: set[str],
    on_epoch: Callable[[dict[str, Any]], None] | None,
) -> None:
    model, targets, device = result.model, result.targets, result.device
    base = [config.lr, config.lr * config.head_lr_factor]
    optimizer = torch.optim.AdamW(
        [
            {"params": model.backbone_parameters(), "lr": base[0]},
            {"params": model.head_parameters(), "lr": base[1]},
        ],
        weight_decay=config.weight_decay,
    )
    rng = np.random.default_rng(0)
    steps_per_epoch = max(1, len(train_rows) // config.batch_size)
    total_steps = config.max_epochs * steps_per_epoch
    ys = [torch.from_numpy(t.train) for t in targets]
    ws = [torch.from_numpy(t.weight) for t in targets]
    is_colour = [t.field in colour for t in targets]
    t0 = time.monotonic()
    step, best, best_state, since_best = 0, -1.0, model.trainable_state(), 0
    result.stopped = "max_epochs"
    for epoch in range(1, config.max_epochs + 1):
        model.train()
        order = rng.permutation(train_rows)
        losses: list[float] = []
        skipped = 0
        out_of_time = False
        epoch_start = time.monotonic()
        for s in range(steps_per_epoch):
            rows = np.sort(order[s * config.batch_size : (s + 1) * config.batch_size])
            x, jittered = augment_batch(_batch(photos, rows, "cpu"), rng, config.jitter_share)
            x = x.contiguous(memory_format=torch.channels_last).to(device)
            _set_lr(optimizer, base, step, total_steps, config, time.monotonic() - t0)
            idx = torch.from_numpy(rows)
            batch_ys = []
            for y, colour_field in zip(ys, is_colour, strict=True):
                target = y[idx].clone()
                if colour_field:
                    target[jittered] = IGNORE  # jitter changed the colour: no label here
                batch_ys.append(target.to(device))
            with _autocast(device, result.precision):
                _, outs = model(x)
            loss = field_loss(
                [o.float() for o in outs],
                batch_ys,
                [w[idx].to(device) for w in ws],
                config.label_smoothing,
            )
            optimizer.zero_grad(set_to_none=True)
            step += 1
            if not torch.isfinite(loss):  # one bad batch must not poison the weights
                skipped += 1
                continue
            loss.backward()
            optimizer.step()
            losses.append(float(loss.detach()))
            if time.monotonic() - t0 >= config.budget_seconds:
                out_of_time = True
                break
        train_seconds = time.monotonic() - epoch_start
        calibration = side_accuracy(model, photos, targets, "calibration", device)
        if calibration:
            score = float(np.mean(list(calibration.values())))
        else:
            score = -float(np.mean(losses)) if losses else -float("inf")
        entry = {
            "epoch": epoch,
            "steps": step,
            "seconds": round(time.monotonic() - epoch_start, 1),
            "photos_per_second": round(
                (len(losses) + skipped) * config.batch_size / max(1e-9, train_seconds), 1
            ),
            "train_loss": round(float(np.mean(losses)), 4) if losses else None,
            "skipped_steps": skipped,
            "calibration_accuracy": calibration,
            "score": round(score, 4),
        }
        result.history.append(entry)
        log.info("whole-network fine-tune epoch %d: %s", epoch, entry)
        if on_epoch:
            on_epoch(entry)
        if score >= best:  # a tie goes to the later, more trained epoch
            best, best_state, since_best = score, model.trainable_state(), 0
        else:
            since_best += 1
        if out_of_time:
            result.stopped = "time budget"
            break
        if since_best >= config.patience and epoch < config.max_epochs:
            result.stopped = "early stopping"
            break
    model.load_state_dict(best_state)
    result.seconds = round(time.monotonic() - t0, 1)
    result.metrics = {
        "best_epoch": max(result.history, key=lambda e: e["score"])["epoch"],
        "calibration_accuracy": side_accuracy(model, photos, targets, "calibration", device),
        "evaluation_accuracy": side_accuracy(model, photos, targets, "evaluation", device),
        "train_rows": len(train_rows),
        "steps": step,
        "precision": result.precision,
    }
    model.eval()


def _set_lr(
    optimizer: torch.optim.Optimizer,
    base: Sequence[float],
    step: int,
    total_steps: int,
    config: WholeNetConfig,
    elapsed: float,
) -> None:
    """Warm-up, then a cosine decay over the epochs or the time budget, whichever ends first."""
    progress = min(1.0, max(step / total_steps, elapsed / config.budget_seconds))
    warmup = max(1.0, config.warmup_share * total_steps)
    scale = min(1.0, (step + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * progress))
    for group, lr in zip(optimizer.param_groups, base, strict=True):
        group["lr"] = lr * scale


def downscale_runner(input_size: int) -> Callable[[np.ndarray], np.ndarray]:
    """uint8 NHWC 224 batches -> float16 NHWC photos at ``input_size`` (the network's own
    downscaling, so the cache holds what the served graph computes)."""
    check_input_size(input_size)
    matrix = area_matrix(SERVED_SIZE, input_size)

    def run(batch: np.ndarray) -> np.ndarray:
        x = (torch.from_numpy(batch).permute(0, 3, 1, 2).float() - 127.0) / 128.0
        x = downscale(x, input_size, matrix)
        return x.permute(0, 2, 3, 1).numpy().astype(np.float16)

    return run
