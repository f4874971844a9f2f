"""Foundation benchmark: import throughput, analyze latency, search latency and recall.

Prints Vitrine's figures beside the common tutorial baseline measured in the same run
(ResNet-50 in torch eager mode + scikit-learn brute-force NearestNeighbors).

    make bench                                   # the whole fashion-small catalog
    .venv/bin/python bench/bench_foundation.py --limit 3000   # a quick run
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
FASHION = DATA / "fashion-small"
HM = DATA / "hm"


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


def fresh_vitrine(home: Path, precision: str, model_dir: Path) -> Any:
    from vitrine.config import load_settings
    from vitrine.runtime import Runtime

    settings = load_settings(env={}).with_overrides(home=home, embedding_precision=precision)
    home.mkdir(parents=True, exist_ok=True)
    (home / "models").symlink_to(model_dir, target_is_directory=True)
    return Runtime(settings)


def bench_import(home: Path, precision: str, model_dir: Path, limit: int) -> dict[str, Any]:
    """Each stage alone, then the end-to-end import, on the same rows (fresh homes)."""
    from import_stages import measure_stages
    from vitrine.jobs.bulk_import import import_catalog

    staged = fresh_vitrine(home.with_name(home.name + "-stages"), precision, model_dir)
    stages = measure_stages(staged, FASHION / "styles.csv", FASHION / "images", limit)
    staged.close()
    vitrine = fresh_vitrine(home, precision, model_dir)
    vitrine.embedder  # load the model outside the timed import  # noqa: B018
    report = import_catalog(
        vitrine, FASHION / "styles.csv", FASHION / "images", limit=limit, progress=False
    )
    vitrine.close()
    out = report.to_json()
    out["precision"] = precision
    out["model_version"] = stages["model_version"]
    out["stages"] = stages
    slowest = stages["photos_per_second"][stages["slowest"]]
    out["ratio_to_slowest_stage"] = round(report.images_per_second / slowest, 3)
    out["ratio_to_pipeline_bound"] = round(report.images_per_second / stages["pipeline_bound"], 3)
    return out


def ensure_int8(model_dir: Path) -> None:
    from vitrine.vision.decode import decode_image
    from vitrine.vision.embedding import quantize_int8

    photos = sorted((FASHION / "images").glob("*.jpg"))[::97][:160]
    photos += sorted((HM / "images").rglob("*.jpg"))[::37][:96]
    quantize_int8(model_dir, (decode_image(p, max_side=320).rgb for p in photos), max_images=256)


def bench_analyze(model_dir: Path, runs: int) -> dict[str, Any]:
    from PIL import Image

    from vitrine.vision.analyzer import ImageAnalyzer
    from vitrine.vision.embedding import Embedder

    source = sorted((HM / "images").rglob("*.jpg"))[0]
    big = Image.open(source).convert("RGB").resize((1000, 1000), Image.Resampling.BICUBIC)
    buf = io.BytesIO()
    big.save(buf, format="JPEG", quality=90)
    data = buf.getvalue()
    analyzer = ImageAnalyzer(Embedder(model_dir, precision="fp32"))
    for _ in range(5):
        analyzer.analyze(data)
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        analyzer.analyze(data)
        times.append((time.perf_counter() - t0) * 1000)
    return {
        "image": "1000x1000 JPEG",
        "runs": runs,
        "p50_ms": percentile(times, 50),
        "p95_ms": percentile(times, 95),
    }


def synthetic_extra(real: np.ndarray, n: int, seed: int = 0) -> np.ndarray:
    """Plausible extra catalog vectors: blends of two real products plus noise."""
    rng = np.random.default_rng(seed)
    a = real[rng.integers(0, len(real), n)]
    b = real[rng.integers(0, len(real), n)]
    w = rng.uniform(0.55, 0.95, (n, 1)).astype(np.float32)
    x = w * a + (1 - w) * b + rng.normal(0, 0.02, a.shape).astype(np.float32)
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def bench_search(vectors: np.ndarray, queries: np.ndarray, label: str) -> dict[str, Any]:
    import faiss
    from sklearn.neighbors import NearestNeighbors

    from vitrine.config import Settings
    from vitrine.index import VectorIndex

    s = Settings()
    ids = [str(i) for i in range(len(vectors))]
    t0 = time.perf_counter()
    index = VectorIndex(
        vectors.shape[1],
        hnsw_threshold=s.index_hnsw_threshold,
        hnsw_m=s.index_hnsw_m,
        ef_construction=s.index_ef_construction,
        ef_search=s.index_ef_search,
    )
    index.upsert(ids, vectors)
    build_s = time.perf_counter() - t0

    exact = faiss.IndexFlatIP(vectors.shape[1])
    exact.add(vectors)
    _, truth = exact.search(queries, 10)

    faiss.omp_set_num_threads(1)
    times, hits = [], 0
    for qi, q in enumerate(queries):
        t0 = time.perf_counter()
        result = index.search(q, 10)
        times.append((time.perf_counter() - t0) * 1000)
        hits += len({int(h.product_id) for h in result} & set(truth[qi].tolist()))
    faiss.omp_set_num_threads(os.cpu_count() or 1)

    nn = NearestNeighbors(n_neighbors=10, algorithm="brute", metric="cosine").fit(vectors)
    base = []
    for q in queries[:100]:
        t0 = time.perf_counter()
        nn.kneighbors(q[None, :])
        base.append((time.perf_counter() - t0) * 1000)
    return {
        "catalog": label,
        "n": len(vectors),
        "index": index.kind,
        "build_s": round(build_s, 1),
        "p50_ms": percentile(times, 50),
        "p99_ms": percentile(times, 99),
        "recall_at_10": hits / (10 * len(queries)),
        "baseline_sklearn_brute_p50_ms": percentile(base, 50),
        "baseline_sklearn_brute_p99_ms": percentile(base, 99),
    }


def bench_baseline_embedding(n_images: int) -> dict[str, Any]:
    """ResNet-50 (torch eager, random weights) on the same photos, batch 32."""
    import torch

    from vitrine.vision.decode import decode_image
    from vitrine.vision.embedding import prepare_image

    torch.set_num_threads(os.cpu_count() or 1)
    model = _resnet50().eval()
    paths = sorted((FASHION / "images").glob("*.jpg"))[:n_images]
    t0 = time.perf_counter()
    batch: list[np.ndarray] = []
    with torch.inference_mode():
        for p in paths:
            batch.append(prepare_image(decode_image(p).rgb))
            if len(batch) == 32:
                x = torch.from_numpy(np.stack(batch)).permute(0, 3, 1, 2).float() / 255
                model(x)
                batch = []
    elapsed = time.perf_counter() - t0
    return {
        "model": "ResNet-50 torch eager",
        "images": len(paths),
        "images_per_second": len(paths) / elapsed,
    }


def _resnet50() -> Any:
    from torch import nn

    class Bottleneck(nn.Module):
        def __init__(self, cin: int, mid: int, stride: int) -> None:
            super().__init__()
            cout = mid * 4
            self.body = nn.Sequential(
                nn.Conv2d(cin, mid, 1, bias=False),
                nn.BatchNorm2d(mid),
                nn.ReLU(inplace=True),
                nn.Conv2d(mid, mid, 3, stride, 1, bias=False),
                nn.BatchNorm2d(mid),
                nn.ReLU(inplace=True),
                nn.Conv2d(mid, cout, 1, bias=False),
                nn.BatchNorm2d(cout),
            )
            self.skip = (
                nn.Identity()
                if stride == 1 and cin == cout
                else nn.Sequential(
                    nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout)
                )
            )
            self.relu = nn.ReLU(inplace=True)

        def forward(self, x: Any) -> Any:
            return self.relu(self.body(x) + self.skip(x))

    layers: list[nn.Module] = [
        nn.Conv2d(3, 64, 7, 2, 3, bias=False),
        nn.BatchNorm2d(64),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(3, 2, 1),
    ]
    cin = 64
    for mid, blocks, stride in [(64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2)]:
        for i in range(blocks):
            layers.append(Bottleneck(cin, mid, stride if i == 0 else 1))
            cin = mid * 4
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
    return nn.Sequential(*layers)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--limit", type=int, default=4000, help="rows of fashion-small to import")
    parser.add_argument(
        "--precisions",
        default="fp32,auto",
        help="imports to run (fp32, int8, auto: what the service chooses on this CPU)",
    )
    parser.add_argument(
        "--catalog-vectors",
        type=Path,
        help="an .npy of the whole catalog's fp32 embeddings for the search part "
        "(default: the vectors of the import)",
    )
    parser.add_argument("--out", type=Path, default=Path("bench/out/foundation.json"))
    args = parser.parse_args()
    if not FASHION.is_dir():
        raise SystemExit(f"benchmark data not found at {FASHION}")

    from vitrine.catalog.store import EMBEDDING_KIND
    from vitrine.vision.cpu import reported_flags

    model_dir = Path(".cache/models").resolve()
    model_dir.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {"cpus": os.cpu_count(), "cpu_flags": reported_flags()}
    work = Path(tempfile.mkdtemp(prefix="vitrine-bench-"))
    try:
        results["analyze"] = bench_analyze(model_dir, runs=100)
        print("analyze", json.dumps(results["analyze"]), flush=True)

        precisions = args.precisions.split(",")
        if "int8" in precisions or "auto" in precisions:
            ensure_int8(model_dir)
        for precision in precisions:
            key = f"import_{precision}"
            results[key] = bench_import(work / precision, precision, model_dir, args.limit)
            print(key, json.dumps(results[key]), flush=True)

        n_base = min(1024, args.limit)
        results["baseline_embedding"] = bench_baseline_embedding(n_base)
        print("baseline", json.dumps(results["baseline_embedding"]), flush=True)

        from vitrine.catalog.database import make_engine
        from vitrine.catalog.store import CatalogStore

        first = f"import_{precisions[0]}"
        store = CatalogStore(make_engine(f"sqlite:///{work / precisions[0] / 'vitrine.db'}"))
        _, real = store.primary_vectors(EMBEDDING_KIND, results[first]["model_version"])
        if args.catalog_vectors is not None:
            real = np.load(args.catalog_vectors).astype(np.float32)
        rng = np.random.default_rng(1)
        queries = real[rng.choice(len(real), 500, replace=False)] + rng.normal(
            0, 0.01, (500, real.shape[1])
        )
        queries = (queries / np.linalg.norm(queries, axis=1, keepdims=True)).astype(np.float32)
        results["search_real"] = bench_search(real, queries, "fashion-small")
        print("search", json.dumps(results["search_real"]), flush=True)
        big = np.vstack([real, synthetic_extra(real, max(0, 100_000 - len(real)))])
        results["search_100k"] = bench_search(big, queries, "fashion-small + synthetic to 100k")
        print("search", json.dumps(results["search_100k"]), flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2))
    print_table(results)


def print_table(r: dict[str, Any]) -> None:
    base = r["baseline_embedding"]["images_per_second"]
    lines = [
        "",
        f"Vitrine foundation benchmark ({r['cpus']} cores; CPU flags: "
        f"{' '.join(r['cpu_flags']) or 'none reported'})",
        f"{'measure':44} {'vitrine':>12} {'baseline':>12} {'ratio':>7}",
    ]
    for key in [k for k in r if k.startswith("import_")]:
        imp = r[key]
        ips, st = imp["images_per_second"], imp["stages"]
        lines.append(
            f"{'import ' + imp['precision'] + ', images/s (end to end)':44} {ips:12.1f} "
            f"{base:12.1f} {ips / base:7.1f}x"
        )
        lines.append(
            f"{'  after start-up (' + str(imp['first_result_seconds']) + ' s), images/s':44} "
            f"{imp['steady_images_per_second']:12.1f}"
        )
        lines.append(f"{'  CNN version':44} {imp['model_version']}")
        for stage, value in st["photos_per_second"].items():
            lines.append(f"{'  ' + stage + ' alone, photos/s':44} {value:12.1f}")
        lines.append(
            f"{'  end to end / slowest stage (' + st['slowest'] + ')':44} "
            f"{imp['ratio_to_slowest_stage']:12.3f}"
        )
        lines.append(
            f"{'  pipeline bound 1/sum(1/stage), photos/s':44} {st['pipeline_bound']:12.1f}"
            f" (end to end / bound {imp['ratio_to_pipeline_bound']:.3f})"
        )
    a = r["analyze"]
    lines.append(
        f"{'analyze 1000x1000 JPEG p50 / p95, ms':44} {a['p50_ms']:6.1f} / {a['p95_ms']:.1f}"
    )
    for key in ("search_real", "search_100k"):
        s = r[key]
        lines.append(
            f"{'search ' + str(s['n']) + ' ' + s['index'] + ' p50 / p99, ms':44} "
            f"{s['p50_ms']:5.2f} / {s['p99_ms']:5.2f} "
            f"{s['baseline_sklearn_brute_p50_ms']:6.2f} / "
            f"{s['baseline_sklearn_brute_p99_ms']:5.2f} "
            f"{s['baseline_sklearn_brute_p50_ms'] / s['p50_ms']:6.1f}x"
        )
        lines.append(f"{'  recall@10 vs exact':44} {s['recall_at_10']:12.4f}")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
