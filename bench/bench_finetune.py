"""Fine-tuning benchmark: does tuning the CNN's last blocks on the catalog beat frozen features?

On one fixed 80/20 split of the product ids (the one ``bench_classify.py`` uses), per field
accuracy, macro-F1 and accuracy on frequent classes of:

* ``emb-LR``: plain logistic regression on the frozen (pretrained) embedding;
* ``frozen``: Runtime's heads (feature groups, calibration, hierarchy) on frozen features;
* ``ft-net``: the fine-tuned network's own multi-task heads;
* ``ft``: Runtime's heads on the fine-tuned embedding (plus the same hand-crafted groups).

The fine-tuning sees the labels of the 80 % only (and holds out the head trainer's
calibration / evaluation rows of each field); the 20 % test photos are embedded, never
trained on. The exported ONNX model is checked against the torch model on test photos.

    nice -n 5 .venv/bin/python bench/bench_finetune.py --home .cache/bench-fashion-home \\
        --limit 6000 --budget-minutes 12
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from bench_classify import FASHION_FIELDS, MIN_SUPPORT, is_test, open_home, scores

ROOT = Path(__file__).resolve().parents[1]
SYSTEMS = ("emb-LR", "frozen", "ft-net", "ft")


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--home", type=Path, default=ROOT / ".cache" / "bench-fashion-home")
    parser.add_argument("--limit", type=int, default=6000, help="products (first by id)")
    parser.add_argument("--budget-minutes", type=float, default=12.0)
    parser.add_argument("--trainable-blocks", type=int, default=2)
    parser.add_argument("--max-epochs", type=int, default=12)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--no-flip", action="store_true", help="do not cache mirror images")
    parser.add_argument("--fields", default=",".join(FASHION_FIELDS[:5]))
    parser.add_argument("--cache-dir", type=Path, default=Path("/tmp/vitrine-finetune-cache"))
    parser.add_argument("--json", type=Path, help="also write every figure here")
    args = parser.parse_args()
    fields = args.fields.split(",")

    from vitrine.classify.dataset import FieldLabels, read_field_labels
    from vitrine.classify.features import FeatureBlocks, load_features
    from vitrine.classify.finetune import (
        FineTuneConfig,
        catalog_activations,
        fine_tune,
        load_base_network,
    )

    vitrine = open_home(args.home, fresh=False)
    features = load_features(vitrine.store, vitrine.embedder.model_version)
    features = features.take(np.arange(min(args.limit, len(features))))
    labels = read_field_labels(vitrine.store, fields)
    test_mask = np.array([is_test(p) for p in features.ids])
    train_f = features.take(np.flatnonzero(~test_mask))
    train_ids = set(train_f.ids)
    train_labels = {
        f: FieldLabels(f, {p: v for p, v in fl.values.items() if p in train_ids}, set())
        for f, fl in labels.items()
    }
    print(f"products {len(features)}: train {len(train_f)}, test {int(test_mask.sum())}")

    config = FineTuneConfig(
        trainable_blocks=args.trainable_blocks,
        budget_seconds=args.budget_minutes * 60,
        max_epochs=args.max_epochs,
        threads=args.threads,
        flip=not args.no_flip,
        min_support=MIN_SUPPORT,
    )
    net = load_base_network()
    t0 = time.perf_counter()
    acts = catalog_activations(
        vitrine.store, vitrine.blobs, labels, config, args.cache_dir,
        product_ids=features.ids, net=net,
    )  # fmt: skip
    cache_seconds = time.perf_counter() - t0
    print(f"lower activations of {len(acts)} photos x {acts.views}: {cache_seconds:.0f} s")
    t0 = time.perf_counter()
    result = fine_tune(net, acts, train_labels, config)
    tune_seconds = time.perf_counter() - t0
    print(f"fine-tuning: {result.seconds:.0f} s ({result.stopped}), {result.metrics}")

    # Every product's fine-tuned embedding, in the feature blocks' row order.
    features = features.select([p for p in features.ids if p in set(acts.ids)])
    tuned = result.embed(acts)[acts.rows(features.ids)]
    tuned_f = FeatureBlocks(features.ids, {**features.blocks, "embedding": tuned})
    test_mask = np.array([is_test(p) for p in features.ids])
    net_pred = result.predict(acts)
    net_rows = acts.rows(features.ids)
    out = {
        "command": vars(args) | {"home": str(args.home), "cache_dir": str(args.cache_dir)},
        "cache_seconds": round(cache_seconds, 1),
        "fine_tune_seconds": round(tune_seconds, 1),
        "fine_tune": {"stopped": result.stopped, **result.metrics, "history": result.history},
        "fields": compare(features, tuned_f, test_mask, labels, train_labels, net_pred, net_rows),
        "onnx_check": onnx_check(result, acts, vitrine, features.ids, test_mask),
    }
    vitrine.close()
    print_table(out)
    if args.json:
        args.json.write_text(json.dumps(out, indent=2, default=str))


def compare(
    frozen: Any,
    tuned: Any,
    test_mask: np.ndarray,
    labels: dict[str, Any],
    train_labels: dict[str, Any],
    net_pred: dict[str, np.ndarray],
    net_rows: np.ndarray,
) -> list[dict[str, Any]]:
    from vitrine.classify.heads import LinearHead
    from vitrine.classify.predictor import Predictor
    from vitrine.classify.trainer import TrainConfig, train_heads

    test_rows = np.flatnonzero(test_mask)
    served: dict[str, dict[str, np.ndarray]] = {}
    for name, blocks in (("frozen", frozen), ("ft", tuned)):
        t0 = time.perf_counter()
        train_f = blocks.take(np.flatnonzero(~test_mask))
        trained = train_heads(
            train_f, train_labels, TrainConfig(min_support=MIN_SUPPORT, text=False)
        )
        pred = Predictor([t.model for t in trained.values()]).predict(blocks.take(test_rows))
        served[name] = {
            f: np.array(["(other)" if v is None else v for v in p.value], dtype=object)
            for f, p in pred.items()
        }
        print(f"heads on {name} features: {time.perf_counter() - t0:.0f} s", flush=True)
    rows = []
    for f, fl in labels.items():
        values = fl.values
        keep = np.array([frozen.ids[i] in values for i in test_rows])
        y_test = np.array([values[frozen.ids[i]] for i in test_rows[keep]], dtype=object)
        train_ids = [p for p in frozen.ids if p in train_labels[f].values]
        support = Counter(train_labels[f].values[p] for p in train_ids)
        frequent = np.array([support[v] >= MIN_SUPPORT for v in y_test])
        plain = LinearHead(["embedding"]).fit(
            frozen.select(train_ids), np.array([values[p] for p in train_ids], dtype=object)
        )
        preds = {
            "emb-LR": plain.predict(frozen.take(test_rows[keep])),
            "frozen": served["frozen"][f][keep],
            "ft-net": net_pred[f][net_rows[test_rows[keep]]],
            "ft": served["ft"][f][keep],
        }
        rows.append(
            {
                "field": f,
                "test_rows": len(y_test),
                "classes": len(support),
                **{s: scores(preds[s], y_test, frequent) for s in SYSTEMS},
            }
        )
    return rows


def onnx_check(
    result: Any, acts: Any, vitrine: Any, ids: list[str], test_mask: np.ndarray
) -> dict[str, Any]:
    """Export to ONNX, embed 64 test photos with the Embedder: same as the torch model?"""
    from vitrine.classify.finetune import export_finetuned
    from vitrine.vision.decode import decode_image
    from vitrine.vision.embedding import Embedder

    sample = [p for p, t in zip(ids, test_mask, strict=True) if t][:64]
    photos = dict(vitrine.store.primary_images(sample))
    with tempfile.TemporaryDirectory() as tmp:
        record = export_finetuned(result, Path(tmp))
        embedder = Embedder(Path(tmp), model=record["version"], threads=2, top_labels=0)
        images = [decode_image(vitrine.blobs.get(photos[p])).rgb for p in sample]
        onnx = embedder.embed(images).vectors
    torch_vectors = result.embed(acts)[acts.rows(sample)]
    base = vitrine.store.primary_vectors("embedding", vitrine.embedder.model_version, sample)[1]
    return {
        "version": record["version"],
        "photos": len(sample),
        "min_cosine_onnx_vs_torch": round(float((onnx * torch_vectors).sum(axis=1).min()), 5),
        "mean_cosine_onnx_vs_base": round(float((onnx * base).sum(axis=1).mean()), 4),
    }


def print_table(out: dict[str, Any]) -> None:
    ft = out["fine_tune"]
    print(
        f"\nfine-tuning: {out['fine_tune_seconds']:.0f} s of a "
        f"{out['command']['budget_minutes']:g}-minute budget ({ft['stopped']}, best epoch "
        f"{ft['best_epoch']}, {ft['steps']} steps, {ft['train_rows']} training products); "
        f"lower activations {out['cache_seconds']:.0f} s"
    )
    print(f"ONNX check: {out['onnx_check']}")
    head = f"{'field':16s} {'test':>5s} {'cls':>4s} | " + " | ".join(
        f"{s:>6s} acc    F1  freq" for s in SYSTEMS
    )
    print(head)
    print("-" * len(head))
    for r in out["fields"]:
        cells = " | ".join(
            f"{r[s]['accuracy']:10.4f} {r[s]['macro_f1']:.3f} {r[s]['accuracy_frequent']:.3f}"
            for s in SYSTEMS
        )
        print(f"{r['field']:16s} {r['test_rows']:5d} {r['classes']:4d} | {cells}")


if __name__ == "__main__":
    main()
