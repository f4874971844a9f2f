"""Tune the HNSW parameters of the visual index: recall@10 against exact search and latency.

Usage::

    python bench/tune_index.py                       # synthetic 100k x 1280 stand-in
    python bench/tune_index.py --vectors emb.npy     # real embeddings (n, d) float32
    python bench/tune_index.py --vectors emb.npy --ms 16,32 --efs 32,64,128 --json out.json
    python bench/tune_index.py --vectors emb.npy --ms 32 --storage float32,float16

With ``--vectors`` the queries are ``--queries`` rows held out of the file (so, like a
shopper's photo, they are not in the index). Without it, clustered vectors are
generated: ~500 clusters of very different sizes in a low-dimensional latent space,
projected to ``--dim`` and blurred with isotropic noise, then L2-normalised. That is a
stand-in for CNN embeddings, which are far from uniform on the sphere (uniform random
vectors are unrealistically hard for any ANN index); rerun on real embeddings.

For each M in ``--ms`` the HNSW index is built with all threads (build time reported);
for each efSearch in ``--efs``: recall@10 against ``IndexFlatIP`` and single-query
latency p50/p99 measured with ``faiss.omp_set_num_threads(1)``, one query at a time,
which is how the service searches. ``--wrapper`` also times
``vitrine.index.VectorIndex.search`` (with and without ``exclude`` / ``allowed``) for the
recommended setting, which includes one more build.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import faiss
import numpy as np

K = 10
TARGET_RECALL = 0.98


def normalise(x: np.ndarray) -> np.ndarray:
    x = np.ascontiguousarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    return x / norms


def synthetic(
    n: int, dim: int, *, clusters: int, latent_dim: int, spread: float, noise: float, seed: int
) -> np.ndarray:
    """Clustered, L2-normalised float32 vectors (see the module docstring)."""
    rng = np.random.default_rng(seed)
    sizes = rng.dirichlet(np.full(clusters, 0.7))  # very uneven cluster sizes
    labels = rng.choice(clusters, size=n, p=sizes)
    centres = rng.standard_normal((clusters, latent_dim)).astype(np.float32)
    projection = (rng.standard_normal((latent_dim, dim)) / np.sqrt(latent_dim)).astype(np.float32)
    out = np.empty((n, dim), dtype=np.float32)
    step = 20_000
    for start in range(0, n, step):
        lab = labels[start : start + step]
        z = centres[lab] + spread * rng.standard_normal((len(lab), latent_dim), dtype=np.float32)
        x = z @ projection
        x += noise * rng.standard_normal(x.shape, dtype=np.float32)
        out[start : start + step] = normalise(x)
    return out


def percentile_ms(samples: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(samples), q) * 1000.0)


def single_query_latency(search: Any, queries: np.ndarray, repeat: int = 1) -> tuple[float, float]:
    """p50 / p99 milliseconds of ``search(q)`` for one (1, d) query at a time, one thread."""
    threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    try:
        for q in queries[: min(50, len(queries))]:  # warm-up
            search(q[None, :])
        samples = []
        for _ in range(repeat):
            for q in queries:
                q2 = q[None, :]
                t0 = time.perf_counter()
                search(q2)
                samples.append(time.perf_counter() - t0)
    finally:
        faiss.omp_set_num_threads(threads)
    return percentile_ms(samples, 50), percentile_ms(samples, 99)


def recall_at_k(found: np.ndarray, truth: np.ndarray) -> float:
    hits = sum(len(set(f[f >= 0]) & set(t)) for f, t in zip(found, truth, strict=True))
    return hits / truth.size


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--vectors", type=Path, help=".npy of (n, d) embeddings")
    parser.add_argument("--n", type=int, default=100_000, help="synthetic vectors (indexed)")
    parser.add_argument("--dim", type=int, default=1280)
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--clusters", type=int, default=500)
    parser.add_argument("--latent-dim", type=int, default=64)
    parser.add_argument("--spread", type=float, default=0.6, help="within-cluster latent std")
    parser.add_argument("--noise", type=float, default=0.15, help="isotropic noise std")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--ms", default="16,32", help="HNSW M values")
    parser.add_argument("--efs", default="32,64,96,128,192,256", help="efSearch values")
    parser.add_argument("--ef-construction", type=int, default=200)
    parser.add_argument("--flat-sizes", default="20000", help="flat-index sizes to time too")
    parser.add_argument("--wrapper", action="store_true", help="also time VectorIndex.search")
    parser.add_argument("--storage", default="float32", help="float32,float16: HNSW vectors")
    parser.add_argument("--json", type=Path, help="write all results here")
    args = parser.parse_args(argv)

    ms = [int(v) for v in args.ms.split(",") if v]
    efs = [int(v) for v in args.efs.split(",") if v]
    rng = np.random.default_rng(args.seed + 1)

    t0 = time.perf_counter()
    if args.vectors:
        data = normalise(np.load(args.vectors, mmap_mode="r"))
        order = rng.permutation(len(data))
        queries = data[order[: args.queries]]
        base = np.ascontiguousarray(data[np.sort(order[args.queries :])])
        source = str(args.vectors)
    else:
        data = synthetic(
            args.n + args.queries,
            args.dim,
            clusters=args.clusters,
            latent_dim=args.latent_dim,
            spread=args.spread,
            noise=args.noise,
            seed=args.seed,
        )
        queries, base = data[: args.queries], data[args.queries :]
        source = (
            f"synthetic clusters={args.clusters} latent_dim={args.latent_dim} "
            f"spread={args.spread} noise={args.noise} seed={args.seed}"
        )
    n, dim = base.shape
    print(
        f"data: {source}; {n} x {dim} indexed, {len(queries)} held-out queries "
        f"({time.perf_counter() - t0:.1f} s); faiss {faiss.__version__}, "
        f"{faiss.omp_get_max_threads()} threads, {os.cpu_count()} cpus",
        flush=True,
    )

    flat = faiss.IndexFlatIP(dim)
    flat.add(base)
    _, truth = flat.search(queries, K)
    sims, _ = flat.search(queries[:200], 100)
    print(
        f"query->neighbour cosine: top1 mean {sims[:, 0].mean():.3f}, "
        f"top10 mean {sims[:, 9].mean():.3f}, top100 mean {sims[:, 99].mean():.3f}"
    )

    results: dict[str, Any] = {"source": source, "n": n, "dim": dim, "flat": [], "hnsw": []}
    p50, p99 = single_query_latency(lambda q: flat.search(q, K), queries[:300])
    results["flat"].append({"n": n, "p50_ms": p50, "p99_ms": p99})
    print(f"flat  n={n:>7}: p50 {p50:6.2f} ms  p99 {p99:6.2f} ms")
    for size in (int(v) for v in args.flat_sizes.split(",") if v):
        if size >= n:
            continue
        small = faiss.IndexFlatIP(dim)
        small.add(base[:size])
        p50, p99 = single_query_latency(lambda q, ix=small: ix.search(q, K), queries[:300])
        results["flat"].append({"n": size, "p50_ms": p50, "p99_ms": p99})
        print(f"flat  n={size:>7}: p50 {p50:6.2f} ms  p99 {p99:6.2f} ms")
        del small

    print(
        f"\n{'storage':>7} {'M':>3} {'efC':>4} {'build_s':>8} {'efS':>4} {'recall@10':>9} "
        f"{'p50_ms':>7} {'p99_ms':>7}"
    )
    storages = [v for v in args.storage.split(",") if v]
    for storage, m in ((st, m) for st in storages for m in ms):
        if storage == "float16":
            fp16 = faiss.ScalarQuantizer.QT_fp16
            index = faiss.IndexHNSWSQ(dim, fp16, m, faiss.METRIC_INNER_PRODUCT)
        else:
            index = faiss.IndexHNSWFlat(dim, m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = args.ef_construction
        t0 = time.perf_counter()
        index.add(base)
        build_s = time.perf_counter() - t0
        for ef in efs:
            params = faiss.SearchParametersHNSW()
            params.efSearch = ef
            _, found = index.search(queries, K, params=params)
            recall = recall_at_k(found, truth)
            p50, p99 = single_query_latency(
                lambda q, ix=index, p=params: ix.search(q, K, params=p), queries
            )
            row = {
                "storage": storage,
                "M": m,
                "ef_construction": args.ef_construction,
                "build_s": build_s,
                "ef_search": ef,
                "recall_at_10": recall,
                "p50_ms": p50,
                "p99_ms": p99,
            }
            results["hnsw"].append(row)
            print(
                f"{storage:>7} {m:>3} {args.ef_construction:>4} {build_s:>8.1f} {ef:>4} "
                f"{recall:>9.4f} {p50:>7.3f} {p99:>7.3f}",
                flush=True,
            )
        del index

    ok = [r for r in results["hnsw"] if r["recall_at_10"] >= TARGET_RECALL]
    best = min(ok, key=lambda r: r["p50_ms"]) if ok else None
    results["recommended"] = best
    if best is None:
        print(f"\nno setting reached recall@10 >= {TARGET_RECALL}; try larger efs / M")
    else:
        print(
            f"\nrecommended: M={best['M']} efSearch={best['ef_search']} "
            f"(recall@10 {best['recall_at_10']:.4f}, p50 {best['p50_ms']:.3f} ms)"
        )

    if args.wrapper and best is not None:
        results["wrapper"] = time_wrapper(base, queries, truth, best, args.ef_construction)

    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


def time_wrapper(
    base: np.ndarray, queries: np.ndarray, truth: np.ndarray, best: dict[str, Any], efc: int
) -> dict[str, Any]:
    """Latency of VectorIndex.search itself (Python overhead, exclude, filters)."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    from vitrine.index import VectorIndex

    n, dim = base.shape
    ids = [f"{i:010d}" for i in range(n)]
    index = VectorIndex(
        dim,
        hnsw_threshold=min(20_000, n),
        hnsw_m=best["M"],
        ef_construction=efc,
        ef_search=best["ef_search"],
    )
    t0 = time.perf_counter()
    index.upsert(ids, base)
    print(f"\nVectorIndex build ({index.kind}): {time.perf_counter() - t0:.1f} s")
    found = np.array([[int(h.product_id) for h in index.search(q, K)] for q in queries])
    print(f"VectorIndex recall@10: {recall_at_k(found, truth):.4f}")
    rng = np.random.default_rng(7)
    half = set(rng.choice(ids, n // 2, replace=False).tolist())
    half_frozen = frozenset(half)  # same object each call: id -> row mapping is cached
    tenth = set(rng.choice(ids, n // 10, replace=False).tolist())
    small = set(rng.choice(ids, 2000, replace=False).tolist())
    cases = {
        "search": lambda q: index.search(q, K),
        "search exclude=1": lambda q: index.search(q, K, exclude=("0000000000",)),
        "allowed 50%": lambda q: index.search(q, K, allowed=half),
        "allowed 50% (cached)": lambda q: index.search(q, K, allowed=half_frozen),
        "allowed 10%": lambda q: index.search(q, K, allowed=tenth),
        "allowed 2000 (exact)": lambda q: index.search(q, K, allowed=small),
    }
    out = {}
    for name, fn in cases.items():
        p50, p99 = single_query_latency(fn, queries[:300])
        out[name] = {"p50_ms": p50, "p99_ms": p99}
        print(f"VectorIndex {name:<22} p50 {p50:7.3f} ms  p99 {p99:7.3f} ms")
    fresh = [f"new{i:07d}" for i in range(len(queries))]
    for size in (64, 256):
        t0 = time.perf_counter()
        index.upsert(fresh[:size], queries[:size])
        seconds = time.perf_counter() - t0
        out[f"upsert {size}"] = {"seconds": seconds}
        print(f"VectorIndex upsert {size} new vectors into {n}: {seconds * 1000:.0f} ms")
        index.remove(fresh[:size])
    return out


if __name__ == "__main__":
    raise SystemExit(main())
