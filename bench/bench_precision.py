"""The pretrained CNN's precision (fp32 / int8) and input size (224 / 160 / 128) on this CPU:
what each costs and what it keeps.

For each variant: CNN photos/s alone (``Embedder`` on the service's threads, batches of 32,
best of 2 passes over 512 photos), cosine of the int8 embedding to the fp32 one at the same
input size, search by photo with the embedding alone (exact cosine over the first
``--catalog`` fashion-small photos; hit@1 / hit@10 on every ``fashion-queries`` photo of
those products), and classification (logistic regression on the standardised embedding,
a fixed 80/20 split of the product ids; accuracy and macro-F1 on the 20 %). fp32 at 224
(the service's model) is the same run's baseline.

The smaller sizes run the same exported graph with its spatial input axes made free (the
"same" padding of every strided convolution is identical at 224, 160 and 128, all even
sizes); photos are fitted into the square by ``prepare_image(rgb, size)``. int8 models use
the service's recipe (``vision.quantize``) calibrated on 256 catalog photos at their size.

    .venv/bin/python bench/bench_precision.py                       # 6,000 catalog photos
    .venv/bin/python bench/bench_precision.py --catalog 2000 --sizes 224
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from vitrine.vision.cpu import reported_flags
from vitrine.vision.embedding import OUTPUT_NAMES, Embedder
from vitrine.vision.model_input import prepare_image
from vitrine.vision.onnx_export import INPUT_NAME, export_onnx
from vitrine.vision.quantize import quantize_model

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
FASHION = DATA / "fashion-small"
QUERIES = DATA / "fashion-queries"
MODELS = ROOT / ".cache" / "models"
CACHE = ROOT / ".cache" / "precision"
FIELDS = ("masterCategory", "subCategory", "articleType", "baseColour")


def rgb(path: Path) -> np.ndarray:
    import cv2

    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    return np.ascontiguousarray(bgr[:, :, ::-1])


def free_size_model(fp32: Path) -> Path:
    """The exported fp32 graph with free height and width axes (cached beside the cache)."""
    import onnx

    target = CACHE / f"{fp32.stem}-anysize.onnx"
    if not target.exists():
        model = onnx.load(str(fp32))
        dims = model.graph.input[0].type.tensor_type.shape.dim
        dims[1].dim_param, dims[2].dim_param = "height", "width"
        for out in model.graph.output:
            del out.type.tensor_type.shape.dim[:]
        del model.graph.value_info[:]
        CACHE.mkdir(parents=True, exist_ok=True)
        onnx.save(model, str(target))
    return target


class Variant:
    """One ONNX model run at one input size."""

    def __init__(self, name: str, path: Path, size: int, int8: bool, threads: int) -> None:
        import onnxruntime as ort

        from vitrine.vision.embedding import _make_session

        self.name, self.size, self.int8 = name, size, int8
        self.session = _make_session(ort, path, threads, int8=int8)

    def embed(self, photos: list[np.ndarray]) -> np.ndarray:
        out = []
        for i in range(0, len(photos), 32):
            batch = np.stack([prepare_image(p, self.size) for p in photos[i : i + 32]])
            emb, _ = self.session.run(list(OUTPUT_NAMES), {INPUT_NAME: batch})
            out.append(emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12))
        return np.concatenate(out).astype(np.float32)

    def throughput(self, photos: list[np.ndarray]) -> float:
        batches = [
            np.stack([prepare_image(p, self.size) for p in photos[i : i + 32]])
            for i in range(0, len(photos), 32)
        ]
        self.session.run(list(OUTPUT_NAMES), {INPUT_NAME: batches[0]})
        best = 0.0
        for _ in range(2):
            t0 = time.perf_counter()
            for b in batches:
                self.session.run(list(OUTPUT_NAMES), {INPUT_NAME: b})
            best = max(best, len(photos) / (time.perf_counter() - t0))
        return best


def int8_model(anysize: Path, size: int, calibration: list[np.ndarray]) -> Path:
    target = CACHE / f"{anysize.stem}-int8-{size}.onnx"
    if not target.exists():
        images = np.stack([prepare_image(p, size) for p in calibration])
        quantize_model(anysize, target, images)
    return target


def search(catalog: np.ndarray, ids: list[str], variant: Variant) -> dict[str, Any]:
    position = {p: i for i, p in enumerate(ids)}
    out: dict[str, Any] = {}
    for folder in ("224x224", "225x300"):
        files = [f for f in sorted((QUERIES / folder).glob("*.jpg")) if f.stem in position]
        q = variant.embed([rgb(f) for f in files])
        top = np.argsort(-(q @ catalog.T), axis=1)[:, :10]
        target = np.array([position[f.stem] for f in files])
        out[folder] = {
            "queries": len(files),
            "hit@1": round(float((top[:, 0] == target).mean()), 4),
            "hit@10": round(float((top == target[:, None]).any(axis=1).mean()), 4),
        }
    return out


def labels(ids: list[str]) -> dict[str, list[str]]:
    wanted = set(ids)
    rows: dict[str, dict[str, str]] = {}
    with (FASHION / "styles.csv").open(newline="") as fh:
        for row in csv.DictReader(fh):
            if row["id"] in wanted:
                rows[row["id"]] = row
    return {f: [rows.get(i, {}).get(f, "") for i in ids] for f in FIELDS}


def classification(vectors: np.ndarray, ids: list[str], truth: dict[str, list[str]]) -> dict:
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import f1_score
    from sklearn.preprocessing import StandardScaler

    test = np.array([int(hashlib.sha1(i.encode()).hexdigest(), 16) % 5 == 0 for i in ids])
    out = {}
    for field in FIELDS:
        y = np.array(truth[field])
        keep = y != ""
        train, held = keep & ~test, keep & test
        scaler = StandardScaler().fit(vectors[train])
        model = LogisticRegression(C=0.05, max_iter=300)
        model.fit(scaler.transform(vectors[train]), y[train])
        pred = model.predict(scaler.transform(vectors[held]))
        out[field] = {
            "accuracy": round(float((pred == y[held]).mean()), 4),
            "macro_f1": round(float(f1_score(y[held], pred, average="macro")), 4),
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--catalog", type=int, default=6000, help="catalog photos")
    parser.add_argument("--sizes", default="224,160,128")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--no-classify", action="store_true")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    ids = sorted(p.stem for p in (FASHION / "images").glob("*.jpg"))[: args.catalog]
    photos = [rgb(FASHION / "images" / f"{i}.jpg") for i in ids]
    calibration = photos[:: max(1, len(photos) // 256)][:256]
    speed = photos[-512:]
    truth = labels(ids)
    fp32 = export_onnx(MODELS)
    anysize = free_size_model(fp32)
    Embedder(MODELS)  # the service's export exists
    results: dict[str, Any] = {"cpu_flags": reported_flags(), "catalog": len(ids), "rows": []}
    print("CPU flags:", " ".join(results["cpu_flags"]), flush=True)
    for size in [int(s) for s in args.sizes.split(",")]:
        base = anysize if size != 224 else fp32
        pair = [
            Variant(f"fp32 {size}", base, size, False, args.threads),
            Variant(
                f"int8 {size}", int8_model(anysize, size, calibration), size, True, args.threads
            ),
        ]
        reference = None
        for v in pair:
            t0 = time.perf_counter()
            row: dict[str, Any] = {
                "variant": v.name,
                "photos_per_second": round(v.throughput(speed), 1),
            }
            vectors = v.embed(photos)
            if reference is not None:
                cos = (vectors * reference).sum(axis=1)
                row["cosine_to_fp32"] = {
                    "mean": round(float(cos.mean()), 4),
                    "p01": round(float(np.percentile(cos, 1)), 4),
                    "min": round(float(cos.min()), 4),
                }
            reference = vectors if reference is None else reference
            row["search"] = search(vectors, ids, v)
            if not args.no_classify:
                row["classify"] = classification(vectors, ids, truth)
            row["seconds"] = round(time.perf_counter() - t0, 1)
            results["rows"].append(row)
            print(json.dumps(row), flush=True)
    print_table(results)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2))


def print_table(results: dict[str, Any]) -> None:
    head = (
        f"{'CNN':10s} {'photos/s':>9s} {'cos fp32':>14s} | {'224 hit@1':>9s} {'225x300 hit@1':>13s}"
        + "".join(f" | {f[:12]:>12s}" for f in FIELDS)
    )
    print(f"\ncatalog {results['catalog']}; CPU flags: {' '.join(results['cpu_flags'])}")
    print(head)
    print("-" * len(head))
    for row in results["rows"]:
        cos = row.get("cosine_to_fp32")
        c = f"{cos['mean']:.4f}/{cos['min']:.3f}" if cos else "-"
        s = row["search"]
        line = (
            f"{row['variant']:10s} {row['photos_per_second']:9.1f} {c:>14s} | "
            f"{s['224x224']['hit@1']:9.4f} {s['225x300']['hit@1']:13.4f}"
        )
        for f in FIELDS:
            acc = row.get("classify", {}).get(f, {}).get("accuracy")
            line += f" | {acc if acc is not None else '-':>12}"
        print(line)


if __name__ == "__main__":
    main()
