"""Classification benchmark: per-field accuracy and macro-F1 on a fixed 80/20 split of the
product ids, Vitrine's heads beside the baselines measured in the same run.

Baselines: the majority class, and plain logistic regression on the frozen CNN embedding
alone (standardised, the same C). Vitrine: per-field feature groups chosen on its own
calibration rows, temperature calibration, rare classes merged, joint hierarchy decoding.
Training uses only the 80 %; the 20 % test rows are touched once, at the end.

    .venv/bin/python bench/bench_classify.py --limit 8000          # imports 8000 rows first
    .venv/bin/python bench/bench_classify.py --home var            # an already imported home
    .venv/bin/python bench/bench_classify.py --home var --hm-limit 6116   # plus H&M fields

Also trains the pattern tag on H&M's ``graphical_appearance_name`` (the H&M articles
imported into a temporary home) and reports it; nothing trained here is kept.

When ``bench/bench_finetune_full.py --save .cache/finetuned`` has run (the whole network
fine-tuned on the same 80 %; it takes about an hour on 2 cores), its cached test-photo
predictions are scored too, on the test products both runs share, beside the frozen
embedding's logistic regression of this run on exactly those products.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
FASHION = DATA / "fashion-small"
HM = DATA / "hm"
MODELS = Path(__file__).resolve().parents[1] / ".cache" / "models"
FINETUNED = Path(__file__).resolve().parents[1] / ".cache" / "finetuned"
FASHION_FIELDS = ["masterCategory", "subCategory", "articleType", "baseColour", "gender", "usage"]
HM_FIELDS = [
    "product_group_name",
    "product_type_name",
    "colour_group_name",
    "graphical_appearance_name",
    "index_group_name",
]
MIN_SUPPORT = 10


def open_home(home: Path, fresh: bool) -> Any:
    from vitrine.config import load_settings
    from vitrine.runtime import Runtime

    home.mkdir(parents=True, exist_ok=True)
    if fresh and not (home / "models").exists():
        (home / "models").symlink_to(MODELS.resolve(), target_is_directory=True)
    return Runtime(load_settings(env={}).with_overrides(home=home))


def import_slice(
    vitrine: Any, csv_path: Path, images: Path, limit: int | None, **mapping: Any
) -> dict:
    from vitrine.catalog.csv_source import ColumnMapping
    from vitrine.jobs.bulk_import import import_catalog

    report = import_catalog(
        vitrine, csv_path, images, ColumnMapping(**mapping), limit=limit, progress=False
    )
    return report.to_json()


def catalog_home(
    given: Path | None, fresh: Path, csv_path: Path, images: Path, limit: int | None, **mapping: Any
) -> Any:
    """The given imported home, or ``fresh`` with the catalog imported into it."""
    if given is not None:
        return open_home(given, fresh=False)
    vitrine = open_home(fresh, fresh=True)
    t0 = time.perf_counter()
    report = import_slice(vitrine, csv_path, images, limit, **mapping)
    print(
        f"imported {csv_path.parent.name}: {report['imported']} in {time.perf_counter() - t0:.0f} s"
    )
    return vitrine


def is_test(product_id: str) -> bool:
    """The fixed 20 % test split: a hash of the id, the same in every run."""
    digest = hashlib.blake2b(f"bench:{product_id}".encode(), digest_size=4).digest()
    return int.from_bytes(digest, "big") % 5 == 0


def macro_f1(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    from sklearn.metrics import f1_score

    return float(
        f1_score(y_true, y_pred, average="macro", labels=np.unique(y_true), zero_division=0)
    )


def bench_catalog(vitrine: Any, fields: list[str], limit: int | None) -> list[dict[str, Any]]:
    from vitrine.classify.dataset import FieldLabels, read_field_labels
    from vitrine.classify.features import load_features
    from vitrine.classify.heads import LinearHead
    from vitrine.classify.predictor import Predictor
    from vitrine.classify.trainer import TrainConfig, train_heads

    features = load_features(vitrine.store, vitrine.embedder.model_version)
    if limit is not None and len(features) > limit:
        features = features.take(np.arange(limit))
    labels = read_field_labels(vitrine.store, fields)
    test_mask = np.array([is_test(p) for p in features.ids])
    train_f, test_f = (
        features.take(np.flatnonzero(~test_mask)),
        features.take(np.flatnonzero(test_mask)),
    )
    train_ids = set(train_f.ids)
    train_labels = {
        f: FieldLabels(f, {p: v for p, v in fl.values.items() if p in train_ids}, set())
        for f, fl in labels.items()
    }
    print(
        f"products with features: {len(features)}, train {len(train_f)}, test {len(test_f)}",
        flush=True,
    )

    systems = {}
    for name, text in (("photo_only", False), ("vitrine", True)):
        t0 = time.perf_counter()
        trained = train_heads(
            train_f, train_labels, TrainConfig(min_support=MIN_SUPPORT, text=text)
        )
        seconds = time.perf_counter() - t0
        systems[name] = (trained, Predictor([t.model for t in trained.values()]).predict(test_f))
        print(f"{name} training, all fields: {seconds:.0f} s", flush=True)

    rows = []
    for f in fields:
        values = labels[f].values
        test_rows = np.array([i for i, p in enumerate(test_f.ids) if p in values])
        y_test = np.array([values[test_f.ids[i]] for i in test_rows], dtype=object)
        y_train_ids = [p for p in train_f.ids if p in values]
        y_train = np.array([values[p] for p in y_train_ids], dtype=object)
        support = Counter(y_train)
        frequent = np.array([support[v] >= MIN_SUPPORT for v in y_test])

        majority = support.most_common(1)[0][0]
        base_pred = np.full(len(y_test), majority, dtype=object)

        t1 = time.perf_counter()
        sub = train_f.select(y_train_ids)
        plain = LinearHead(["embedding"]).fit(sub, y_train)
        plain_pred = plain.predict(test_f.take(test_rows))
        plain_seconds = time.perf_counter() - t1

        row = {
            "field": f,
            "test_rows": len(y_test),
            "classes": len(support),
            "rare_test_rows_excluded_from_frequent": int((~frequent).sum()),
            "test_rows_with_text": int(sum(bool(t) for t in test_f.blocks["text"][test_rows])),
            "majority": scores(base_pred, y_test, frequent),
            "embedding_logreg": {
                **scores(plain_pred, y_test, frequent),
                "seconds": round(plain_seconds, 1),
            },
        }
        for name, (trained, predictions) in systems.items():
            row[name] = system_scores(trained[f], predictions[f], test_rows, y_test, frequent)
        tuned = finetuned_predictions(f)
        if tuned is not None:
            ids = [test_f.ids[i] for i in test_rows]
            shared = np.array([i for i, p in enumerate(ids) if p in tuned])
            if len(shared):
                pred = np.array([tuned[ids[i]] for i in shared], dtype=object)
                row["finetuned_cached"] = {
                    "test_rows": len(shared),
                    "embedding_logreg": scores(
                        plain_pred[shared], y_test[shared], frequent[shared]
                    ),
                    "finetuned": scores(pred, y_test[shared], frequent[shared]),
                }
        rows.append(row)
    return rows


def finetuned_predictions(field: str) -> dict[str, str] | None:
    """The cached fine-tuned network's prediction per test product id (None: not cached)."""
    path = FINETUNED / "test_predictions.npz"
    if not path.exists():
        return None
    cached = np.load(path, allow_pickle=False)
    if field not in cached.files:
        return None
    classes = cached[f"{field}_classes"]
    return dict(zip(cached["ids"].tolist(), classes[cached[field].argmax(1)].tolist(), strict=True))


def print_finetuned(rows: list[dict[str, Any]]) -> None:
    rows = [r for r in rows if "finetuned_cached" in r]
    if not rows:
        return
    report = json.loads((FINETUNED / "report.json").read_text())
    print(
        f"\nphoto only: the whole network fine-tuned (cached: {report['train_photos']} training "
        f"photos, {len(report['epochs'])} epochs, {report['train_seconds'] / 60:.0f} min, CPU "
        f"{','.join(report['cpu_flags'])}) beside this run's frozen-embedding LR, same test rows"
    )
    head = f"{'field':20s} {'rows':>6s} | {'emb-LR acc':>10s} {'F1':>6s} | "
    head += f"{'tuned acc':>9s} {'F1':>6s}"
    print(head)
    print("-" * len(head))
    for r in rows:
        c = r["finetuned_cached"]
        b, t = c["embedding_logreg"], c["finetuned"]
        print(
            f"{r['field']:20s} {c['test_rows']:6d} | {b['accuracy']:10.4f} {b['macro_f1']:6.4f} | "
            f"{t['accuracy']:9.4f} {t['macro_f1']:6.4f}"
        )


def system_scores(
    trained: Any, p: Any, test_rows: np.ndarray, y_test: np.ndarray, frequent: np.ndarray
) -> dict[str, Any]:
    """One trained system's figures on the test rows of one field."""
    served = np.array(["(other)" if v is None else v for v in p.value[test_rows]], dtype=object)
    conf = p.confidence[test_rows]
    threshold = trained.model.threshold
    accepted = (conf >= threshold) & (p.value[test_rows] != None)  # noqa: E711
    return {
        **scores(served, y_test, frequent),
        "groups": "+".join(trained.model.head.groups),
        "selection": trained.metrics["feature_selection"]["calibration_macro_f1"],
        "review_threshold": round(threshold, 3),
        "coverage": round(float(accepted.mean()), 4),
        "accuracy_when_accepted": round(float((served[accepted] == y_test[accepted]).mean()), 4)
        if accepted.any()
        else None,
        "ece": _ece(conf, served == y_test),
    }


def scores(pred: np.ndarray, y_test: np.ndarray, frequent: np.ndarray) -> dict[str, float]:
    return {
        "accuracy": round(float((pred == y_test).mean()), 4),
        "macro_f1": round(macro_f1(y_test, pred), 4),
        "accuracy_frequent": round(float((pred[frequent] == y_test[frequent]).mean()), 4),
    }


def _ece(conf: np.ndarray, correct: np.ndarray) -> float:
    from vitrine.classify.metrics import reliability

    return reliability(conf, correct)[0]


def print_table(title: str, rows: list[dict[str, Any]]) -> None:
    print(f"\n{title}")
    head = (
        f"{'field':28s} {'test':>6s} {'text':>6s} {'cls':>4s} | {'majority':>8s} | "
        f"{'emb-LR acc':>10s} {'F1':>6s} {'freq':>6s} | {'photo acc':>9s} {'F1':>6s} "
        f"{'freq':>6s} | {'Vitrine acc':>11s} {'F1':>6s} {'freq':>6s} (excl) | "
        f"{'cover':>6s} {'acc@cov':>7s} {'ECE':>6s}  groups"
    )
    print(head)
    print("-" * len(head))
    for r in rows:
        v, b, o = r["vitrine"], r["embedding_logreg"], r["photo_only"]
        print(
            f"{r['field']:28s} {r['test_rows']:6d} {r['test_rows_with_text']:6d} "
            f"{r['classes']:4d} | {r['majority']['accuracy']:8.4f} | "
            f"{b['accuracy']:10.4f} {b['macro_f1']:6.4f} {b['accuracy_frequent']:6.4f} | "
            f"{o['accuracy']:9.4f} {o['macro_f1']:6.4f} {o['accuracy_frequent']:6.4f} | "
            f"{v['accuracy']:11.4f} {v['macro_f1']:6.4f} {v['accuracy_frequent']:6.4f} "
            f"({r['rare_test_rows_excluded_from_frequent']:4d}) | {v['coverage']:6.4f} "
            f"{v['accuracy_when_accepted'] or 0:7.4f} {v['ece']:6.4f}  {v['groups']}"
        )


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--home", type=Path, help="an imported fashion-small home to reuse")
    parser.add_argument("--limit", type=int, help="products to import / use (default: all)")
    parser.add_argument("--hm-home", type=Path, help="an imported H&M home to reuse")
    parser.add_argument("--hm-limit", type=int, default=6116, help="H&M articles (0: skip)")
    parser.add_argument("--fields", default=",".join(FASHION_FIELDS))
    parser.add_argument("--json", type=Path, help="also write every figure here")
    args = parser.parse_args()

    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="vitrine-bench-classify-") as tmp:
        vitrine = catalog_home(
            args.home, Path(tmp) / "fashion", FASHION / "styles.csv", FASHION / "images",
            args.limit, image_path="{id}.jpg",
        )  # fmt: skip
        out["fashion"] = bench_catalog(vitrine, args.fields.split(","), args.limit)
        vitrine.close()
        print_table("fashion-small (fixed 80/20 split of ids)", out["fashion"])
        print_finetuned(out["fashion"])
        if args.hm_limit:
            hm = catalog_home(
                args.hm_home, Path(tmp) / "hm", HM / "articles.csv", HM / "images",
                args.hm_limit, id_column="article_id",
                image_path="{article_id[:3]}/{article_id}.jpg",
            )  # fmt: skip
            out["hm"] = bench_catalog(hm, HM_FIELDS, None)
            hm.close()
            print_table(
                "H&M (fixed 80/20 split of ids; graphical_appearance_name = pattern tag)", out["hm"]
            )
    if args.json:
        args.json.write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
