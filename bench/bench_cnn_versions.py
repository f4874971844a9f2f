"""The CNN versions a shop can serve, side by side on this CPU: the pretrained
EfficientNet-Lite0 (fp32, and int8 where calibrated), the whole network fine-tuned by
``bench_finetune_full.py --save`` (its cached checkpoint), and the fine-tuned network's
int8 twin.

For each: serving throughput (photos per second through :class:`Embedder`, batches of 32,
the threads the service uses), cosine of the int8 twins to their fp32 model, and search
by photo on ``fashion-queries`` with the embedding alone (exact cosine over every
fashion-small catalog photo; hit@1 and hit@10 per query set). The pretrained fp32 model
is the baseline of the same run. Catalog embeddings are cached per version under
``.cache/cnn-versions``.

    .venv/bin/python bench/bench_cnn_versions.py                      # everything
    .venv/bin/python bench/bench_cnn_versions.py --catalog 5000 --queries 500   # quicker
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from bench_finetune_speed import cpu_flags
from vitrine.classify.finetune import load_base_network
from vitrine.classify.finetune.export import base_version
from vitrine.classify.finetune.whole import WholeNet
from vitrine.vision.embedding import Embedder
from vitrine.vision.onnx_export import write_onnx
from vitrine.vision.quantize import quantize_finetuned, quantize_int8

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
CATALOG = DATA / "fashion-small" / "images"
QUERIES = DATA / "fashion-queries"
FINETUNED = ROOT / ".cache" / "finetuned"  # bench_finetune_full.py --save
CACHE = ROOT / ".cache" / "cnn-versions"
MODELS = ROOT / ".cache" / "models"
TWINS = {"pretrained int8": "pretrained fp32 (baseline)", "fine-tuned int8": "fine-tuned fp32"}


def rgb(path: Path) -> np.ndarray:
    with Image.open(path) as photo:
        return np.asarray(photo.convert("RGB"))


def export_checkpoint(model_dir: Path, checkpoint: Path) -> str:
    """The cached fine-tuned checkpoint as a model version in ``model_dir``."""
    cached = np.load(checkpoint / "test_predictions.npz")
    fields = [f[: -len("_classes")] for f in cached.files if f.endswith("_classes")]
    classes = {f: list(cached[f"{f}_classes"]) for f in fields}
    report = json.loads((checkpoint / "report.json").read_text())
    colour = [] if report["args"].get("no_region_colour") else ["baseColour"]
    net = WholeNet(
        load_base_network(),
        classes,
        input_size=report["args"].get("input_size", 112),
        colour_fields=colour,
        region_colour=bool(colour),
    )
    net.load_state_dict(torch.load(checkpoint / "network.pt", weights_only=True))
    stamp = int((checkpoint / "network.pt").stat().st_mtime)
    version = f"{base_version()}-ftbench{stamp:x}"[:80]
    if not (model_dir / f"{version}.onnx").exists():
        write_onnx(net.eval().serving_module(), model_dir / f"{version}.onnx")
    return version


def throughput(embedder: Embedder, photos: list[np.ndarray], rounds: int = 3) -> float:
    embedder.embed(photos[:32])  # warm up
    best = 0.0
    for _ in range(rounds):
        started = time.perf_counter()
        for i in range(0, len(photos), 32):
            embedder.embed(photos[i : i + 32])
        best = max(best, len(photos) / (time.perf_counter() - started))
    return best


def catalog_vectors(embedder: Embedder, ids: list[str]) -> np.ndarray:
    CACHE.mkdir(parents=True, exist_ok=True)
    path = CACHE / f"{embedder.model_version}-{len(ids)}.npy"
    if path.exists():
        return np.load(path)
    out = np.empty((len(ids), embedder.dim), np.float32)
    for i in range(0, len(ids), 256):
        batch = [rgb(CATALOG / f"{p}.jpg") for p in ids[i : i + 256]]
        out[i : i + len(batch)] = embedder.embed(batch).vectors
    np.save(path, out)
    return out


def search_scores(
    embedder: Embedder, catalog: np.ndarray, ids: list[str], limit: int
) -> dict[str, dict[str, float]]:
    position = {p: i for i, p in enumerate(ids)}
    out = {}
    for folder in ("224x224", "225x300"):
        files = sorted((QUERIES / folder).glob("*.jpg"))
        files = [f for f in files if f.stem in position][:limit]
        hits1 = hits10 = 0
        for i in range(0, len(files), 64):
            chunk = files[i : i + 64]
            q = embedder.embed([rgb(f) for f in chunk]).vectors
            scores = q @ catalog.T
            top = np.argsort(-scores, axis=1)[:, :10]
            for row, f in zip(top, chunk, strict=True):
                target = position[f.stem]
                hits1 += int(row[0] == target)
                hits10 += int(target in row)
        out[folder] = {
            "queries": len(files),
            "hit@1": round(hits1 / max(1, len(files)), 4),
            "hit@10": round(hits10 / max(1, len(files)), 4),
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--catalog", type=int, default=0, help="catalog photos (0: all)")
    parser.add_argument("--queries", type=int, default=0, help="queries per set (0: all)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--checkpoint", type=Path, default=FINETUNED)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    ids = sorted(p.stem for p in CATALOG.glob("*.jpg"))[: args.catalog or None]
    MODELS.mkdir(parents=True, exist_ok=True)
    calibration = [rgb(CATALOG / f"{p}.jpg") for p in ids[:: max(1, len(ids) // 256)][:256]]
    speed_photos = [rgb(CATALOG / f"{p}.jpg") for p in ids[-512:]]
    versions: dict[str, Embedder] = {
        "pretrained fp32 (baseline)": Embedder(MODELS, threads=args.threads, top_labels=0)
    }
    quantize_int8(MODELS, calibration)
    versions["pretrained int8"] = Embedder(
        MODELS, precision="int8", threads=args.threads, top_labels=0
    )
    if (args.checkpoint / "network.pt").exists():
        tuned = export_checkpoint(MODELS, args.checkpoint)
        versions["fine-tuned fp32"] = Embedder(MODELS, model=tuned, threads=args.threads)
        _, tuned8 = quantize_finetuned(MODELS, tuned, calibration)
        versions["fine-tuned int8"] = Embedder(MODELS, model=tuned8, threads=args.threads)
    results: dict[str, Any] = {"cpu_flags": cpu_flags(), "catalog": len(ids), "versions": {}}
    reference: dict[str, np.ndarray] = {}
    for name, embedder in versions.items():
        row: dict[str, Any] = {"version": embedder.model_version}
        row["photos_per_second"] = round(throughput(embedder, speed_photos), 1)
        vectors = embedder.embed(speed_photos[:256]).vectors
        fp32 = reference.get(TWINS.get(name, ""))
        if fp32 is not None:
            cos = (vectors * fp32).sum(axis=1)
            row["cosine_to_fp32"] = {
                "mean": round(float(cos.mean()), 4),
                "min": round(float(cos.min()), 4),
            }
        reference[name] = vectors
        catalog = catalog_vectors(embedder, ids)
        row["search"] = search_scores(embedder, catalog, ids, args.queries or 10**9)
        results["versions"][name] = row
        print(name, json.dumps(row), flush=True)
    flags = " ".join(results["cpu_flags"])
    print(f"\nCPU flags: {flags}; {args.threads} threads; catalog {len(ids)}")
    head = f"{'CNN':28s} {'photos/s':>9s} {'cos fp32':>9s} | {'224 hit@1':>9s} {'@10':>6s} | "
    head += f"{'225x300 hit@1':>13s} {'@10':>6s}"
    print(head)
    print("-" * len(head))
    for name, row in results["versions"].items():
        cos = row.get("cosine_to_fp32", {}).get("mean")
        a, b = row["search"]["224x224"], row["search"]["225x300"]
        print(
            f"{name:28s} {row['photos_per_second']:9.1f} {cos if cos is not None else '-':>9} | "
            f"{a['hit@1']:9.4f} {a['hit@10']:6.4f} | {b['hit@1']:13.4f} {b['hit@10']:6.4f}"
        )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
