"""Aspect scans: the IVF indexes against the exact scans, on the real catalog and as it grows.

Search by photo takes candidates from two scans of cheap aspects beside the embedding's ANN
search (:data:`vitrine.index.fusion.DEFAULT_SCANS`). :mod:`vitrine.index.aspect_scan` runs
them exactly below ``scan_ann_min_products`` and through IVF indexes above. This benchmark:

1. on the whole fashion-small catalog (``--home``, as ``bench_photo_search.py`` imports it),
   for ``--limit`` query photos per set of ``fashion-queries`` (as they are and perturbed):
   hit@1 / hit@10 of search by photo with float32 aspects read from the database and exact
   scans (the baseline, same run), with the shared aspect snapshot (float16 rows but for
   the scanned kinds, :mod:`vitrine.index.aspect_snapshot`) and exact scans, and with
   the IVF scans forced on at each ``--nprobe``, and each scan's recall@N against the exact
   scan's top N (N = ``search_candidates``);
2. at growing catalog sizes (``--sizes``: the real rows plus noisy copies of them, as
   ``bench/scale_build.py`` makes them): the time to build the IVF indexes, and per query
   the exact scans' and the IVF scans' latency (one thread, both scans), with recall@N.

    .venv/bin/python bench/bench_aspect_scan.py --limit 150 --sizes 35k,100k,300k,1m
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_photo_search import query_bytes, query_sets, settings_for
from scale_build import noisy

ROOT = Path(__file__).resolve().parents[1]


def cpu_flags() -> str:
    text = Path("/proc/cpuinfo").read_text()
    flags = set(text.split("flags", 1)[1].split("\n", 1)[0].split())
    return ", ".join(
        f"{f} {'yes' if f in flags else 'no'}" for f in ("avx2", "avx512f", "avx512_vnni")
    )


def size_of(label: str) -> int:
    label = label.lower()
    return int(float(label[:-1]) * (1000 if label.endswith("k") else 1_000_000))


def recall(found: list[Any], exact: list[Any]) -> float:
    truth = {h.product_id for h in exact}
    return len(truth & {h.product_id for h in found}) / max(1, len(truth))


def real_catalog(
    args: argparse.Namespace,
) -> tuple[dict[str, Any], list[dict[str, np.ndarray]], Any]:
    """Part 1: hit@k with exact and IVF scans; the queries' scan aspects for part 2."""
    from vitrine.index.aspect_scan import AspectScans
    from vitrine.runtime import Runtime

    vitrine = Runtime(settings_for(args.home, 50, ""))
    # The same-run baseline of the shared float16 aspect snapshot: float32 rows read from
    # the database, as before the snapshot existed.
    full = Runtime(settings_for(args.home, 50, "", index_shared=False))
    search = vitrine.search
    n = search.settings.search_candidates
    out: dict[str, Any] = {"products": len(search.aspects), "sets": {}}
    exact_scans = search.scans
    t0 = time.perf_counter()
    ivf = AspectScans(search.aspects, min_products=0, nprobe=args.nprobe[0])
    ivf.rebuild()
    out["build_s"] = time.perf_counter() - t0
    scan_queries: list[dict[str, np.ndarray]] = []
    for name, tasks in query_sets(args.limit):
        queries = []
        for pid, path, perturbed, seed in tasks:
            query, _ = vitrine.photo_search(query_bytes(path, perturbed, seed), k=1)
            queries.append((pid, query))
            scan_queries.append(query.scan_aspects)
        row: dict[str, Any] = {"queries": len(queries)}
        row["float32, exact"] = hits_at(full.search, queries)
        search.scans = exact_scans
        row["exact"] = hits_at(search, queries)
        for nprobe in args.nprobe:
            for index in ivf._indexes:
                index.nprobe = nprobe
            search.scans = ivf
            figures = hits_at(search, queries)
            figures["recall"] = float(
                np.mean(
                    [
                        recall(
                            ivf._search_one(ivf._indexes[s], w, q.scan_aspects, n, None),
                            search.aspects.scan(q.scan_aspects, w, n),
                        )
                        for _, q in queries
                        for s, w in enumerate(ivf.scans)
                    ]
                )
            )
            row[f"ivf nprobe={nprobe}"] = figures
        search.scans = exact_scans
        out["sets"][name] = row
        print(name, json.dumps(row), flush=True)
    full.close()
    return out, scan_queries, vitrine


def hits_at(search: Any, queries: list[tuple[str, Any]]) -> dict[str, float]:
    ranks = []
    for pid, query in queries:
        ids = [h.product_id for h in search.search_photo(query, k=10)]
        ranks.append(ids.index(pid) if pid in ids else 99)
    r = np.asarray(ranks)
    return {"hit@1": float(np.mean(r < 1)), "hit@10": float(np.mean(r < 10))}


def growing(
    args: argparse.Namespace, vitrine: Any, scan_queries: list[dict[str, np.ndarray]]
) -> list[dict[str, Any]]:
    """Part 2: build time, latency and recall of the IVF scans against exact, by size."""
    from vitrine.index.aspect_scan import AspectScans
    from vitrine.index.aspect_store import AspectStore

    source = vitrine.search.aspects
    kinds = sorted({k for w in vitrine.search.scans.scans for k in w})
    ids, rows = source.rows(kinds)
    n_candidates = vitrine.search.settings.search_candidates
    rng = np.random.default_rng(7)
    rows_out = []
    for label in args.sizes:
        size = size_of(label)
        store = AspectStore()
        store.upsert(ids, rows)
        made = len(ids)
        while made < size:
            take = min(len(ids), size - made, 100_000)
            pick = rng.integers(0, len(ids), take)
            store.upsert(
                [f"s{made + i:07d}" for i in range(take)],
                {k: noisy(rows[k][pick], rng) for k in kinds},
            )
            made += take
        t0 = time.perf_counter()
        scans = AspectScans(store, min_products=0, nprobe=args.nprobe[0])
        scans.rebuild()
        build = time.perf_counter() - t0
        exact_ms, ivf_ms, recalls = [], [], []
        for q in scan_queries[: args.timed]:
            t0 = time.perf_counter()
            exact = [store.scan(q, w, n_candidates) for w in scans.scans]
            t1 = time.perf_counter()
            found = [
                scans._search_one(scans._indexes[s], w, q, n_candidates, None)
                for s, w in enumerate(scans.scans)
            ]
            t2 = time.perf_counter()
            exact_ms.append(1000 * (t1 - t0))
            ivf_ms.append(1000 * (t2 - t1))
            recalls += [recall(f, e) for f, e in zip(found, exact, strict=True)]
        row = {
            "size": label,
            "products": len(store),
            "lists": [scans._indexes[0]._index.nlist, scans._indexes[1]._index.nlist],
            "build_s": build,
            "exact_p50_ms": float(np.percentile(exact_ms, 50)),
            "exact_p99_ms": float(np.percentile(exact_ms, 99)),
            "ivf_p50_ms": float(np.percentile(ivf_ms, 50)),
            "ivf_p99_ms": float(np.percentile(ivf_ms, 99)),
            "recall": float(np.mean(recalls)),
        }
        rows_out.append(row)
        print(json.dumps(row), flush=True)
        del store, scans
    return rows_out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--home", type=Path, default=ROOT / ".cache" / "bench-fashion-home")
    parser.add_argument("--limit", type=int, default=150, help="queries per set")
    parser.add_argument("--nprobe", default="24,8,48", help="first: the one timed by size")
    parser.add_argument("--sizes", default="35k,100k,300k,1m")
    parser.add_argument("--timed", type=int, default=200, help="queries timed per size")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    args.nprobe = [int(x) for x in args.nprobe.split(",")]
    args.sizes = [s for s in args.sizes.split(",") if s]
    from vitrine.index.concurrency import omp_threads

    print(f"CPU: {cpu_flags()}", flush=True)
    with omp_threads(1):
        import threadpoolctl

        with threadpoolctl.threadpool_limits(1):
            real, scan_queries, vitrine = real_catalog(args)
            sizes = growing(args, vitrine, scan_queries)
    vitrine.close()
    result = {"cpu": cpu_flags(), "real": real, "sizes": sizes}
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
