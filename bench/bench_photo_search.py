"""Search by photo: does a shopper's photo of a catalogue product bring that product first?

Runs the service's own code on a Vitrine home holding the whole fashion-small catalogue
(35k products, 60x80 photos), imported by ``vitrine import-catalog`` (the benchmark imports
it into ``--home`` first when that home is empty: about 12 minutes on an idle 2-core
machine). Queries are the higher-resolution photos of ``../shared/data/fashion-queries``
(``224x224``: squashed to squares, ``225x300``: aspect kept), as they are and perturbed
(random 85 % crop, 8 degree rotation, 0.8 brightness, JPEG; fixed seed). For each set it
prints hit@1/5/10 and MRR of

* ``baseline``: the plain approach, the pooled EfficientNet-Lite0 embedding of the photo as it
  comes, exact cosine over the whole catalogue;
* ``vitrine``: :class:`vitrine.index.photo_search.PhotoSearch` as ``/v1/search/image``
  runs it: the canonical query view (exposure, the catalogue's typical aspect), ANN top
  ``--candidates`` on its embedding plus the top ``--candidates`` of each exact aspect scan
  (colour layout; colour + pattern), re-ranked by the fused aspects
  (:mod:`vitrine.index.fusion`),

then the latency of the plain search by photo (decode + features + CNN + ANN) and of
Vitrine's (+ layout, scans, rerank): one request at a time (with CPU-ms per request, the
figure least disturbed by other work on the machine), and open-loop at ``--rps`` requests
per second through the service's micro-batched model. numpy's BLAS is limited to one
thread, as the service does.

    .venv/bin/python bench/bench_photo_search.py                  # everything
    .venv/bin/python bench/bench_photo_search.py --limit 300      # 300 queries per set
    .venv/bin/python bench/bench_photo_search.py --weights "embedding=1,layout_aligned=2"
"""

from __future__ import annotations

import argparse
import io
import json
import multiprocessing
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
CATALOG = DATA / "fashion-small" / "images"
QUERIES = DATA / "fashion-queries"
MODELS = ROOT / ".cache" / "models"
SEED = 1000
CROP, ANGLE, BRIGHTNESS = 0.85, 8.0, 0.8


# -- the catalogue ---------------------------------------------------------------------


def settings_for(home: Path, candidates: int, weights: str, **extra: Any) -> Any:
    from vitrine.config import load_settings

    return load_settings(env={}).with_overrides(
        home=home, search_candidates=candidates, search_aspect_weights=weights, **extra
    )


def ensure_catalog(home: Path) -> None:
    """Import fashion-small into ``home`` unless it is there already (resumable)."""
    from vitrine.jobs.bulk_import import import_catalog
    from vitrine.runtime import Runtime

    home.mkdir(parents=True, exist_ok=True)
    if not (home / "models").exists():
        (home / "models").symlink_to(MODELS.resolve(), target_is_directory=True)
    vitrine = Runtime(settings_for(home, 50, ""))
    if vitrine.store.count_products() < 35_000:
        print(f"importing fashion-small into {home} (resumable) ...", flush=True)
        import_catalog(vitrine, CATALOG.parent / "styles.csv", CATALOG)
    vitrine.close()


# -- queries ---------------------------------------------------------------------------


def perturb(data: bytes, seed: int) -> bytes:
    """Random 85 % crop, +-8 degree rotation (edges replicated), 0.8 brightness; JPEG q90."""
    import cv2
    from PIL import Image

    rng = np.random.default_rng(seed)
    rgb = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
    h, w = rgb.shape[:2]
    ch, cw = round(CROP * h), round(CROP * w)
    y = int(rng.integers(0, h - ch + 1))
    x = int(rng.integers(0, w - cw + 1))
    img = np.ascontiguousarray(rgb[y : y + ch, x : x + cw])
    angle = ANGLE * float(rng.choice([-1.0, 1.0]))
    m = cv2.getRotationMatrix2D((cw / 2, ch / 2), angle, 1.0)
    img = cv2.warpAffine(img, m, (cw, ch), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    img = np.clip(img.astype(np.float32) * BRIGHTNESS + 0.5, 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def query_sets(limit: int | None) -> list[tuple[str, list[tuple[str, Path, bool, int]]]]:
    out = []
    for folder in ("224x224", "225x300"):
        paths = sorted((QUERIES / folder).glob("*.jpg"), key=lambda p: p.stem)
        if limit:
            paths = paths[:: max(1, len(paths) // limit)][:limit]
        for perturbed in (False, True):
            name = folder + (" perturbed" if perturbed else "")
            out.append((name, [(p.stem, p, perturbed, SEED + i) for i, p in enumerate(paths)]))
    return out


def query_bytes(path: Path, perturbed: bool, seed: int) -> bytes:
    data = path.read_bytes()
    return perturb(data, seed) if perturbed else data


_worker: dict[str, Any] = {}


def _init_worker(home: Path, candidates: int, weights: str) -> None:
    import cv2
    from threadpoolctl import threadpool_limits

    cv2.setNumThreads(1)
    threadpool_limits(1, user_api="blas")
    from vitrine.runtime import Runtime

    settings = settings_for(home, candidates, weights, embedding_threads=1, batch_wait_ms=0)
    vitrine = Runtime(settings)
    vitrine.search  # noqa: B018 - load the index and aspects before the first query
    _worker["vitrine"] = vitrine


def _evaluate(task: tuple[str, Path, bool, int]) -> tuple[np.ndarray, int]:
    """The baseline embedding of one query, and the rank of its product in Vitrine's list."""
    from vitrine.vision.decode import decode_image
    from vitrine.vision.embedding import prepare_image

    pid, path, perturbed, seed = task
    data = query_bytes(path, perturbed, seed)
    vitrine = _worker["vitrine"]
    # The plain approach: the photo as it comes, as ImageAnalyzer.analyze embeds it.
    rgb = decode_image(data, max_side=320).rgb
    base = vitrine.embedder.embed_prepared(prepare_image(rgb)[None]).vectors[0]
    _, hits = vitrine.photo_search(data, k=1000)
    ranked = [h.product_id for h in hits]
    rank = ranked.index(pid) + 1 if pid in ranked else 10**9
    return base, rank


def metrics(ranks: np.ndarray) -> dict[str, float]:
    found = ranks < 10**9
    return {
        "hit@1": float(np.mean(ranks <= 1)),
        "hit@5": float(np.mean(ranks <= 5)),
        "hit@10": float(np.mean(ranks <= 10)),
        "mrr": float(np.mean(np.where(found, 1.0 / np.maximum(ranks, 1), 0.0))),
    }


def baseline_ranks(queries: np.ndarray, truth: np.ndarray, catalog: np.ndarray) -> np.ndarray:
    ranks = np.zeros(len(queries), np.int64)
    for s in range(0, len(queries), 512):
        scores = queries[s : s + 512] @ catalog.T
        own = scores[np.arange(len(scores)), truth[s : s + 512]]
        ranks[s : s + 512] = (scores > own[:, None]).sum(axis=1) + 1
    return ranks


# -- latency ---------------------------------------------------------------------------


def latency(tasks: list[tuple[str, Path, bool, int]], args: argparse.Namespace) -> dict[str, Any]:
    """p50/p99 of the plain search by photo and of Vitrine's, through the service's batcher."""
    from vitrine.runtime import Runtime
    from vitrine.vision.analyzer import prepare

    vitrine = Runtime(settings_for(args.home, args.candidates, args.weights))  # every core
    search = vitrine.search

    def plain(data: bytes) -> Any:
        analysis = vitrine.batcher.analyze([prepare(data, "<upload>")])[0]
        return search.search(analysis.embedding, 10)

    def service(data: bytes) -> Any:
        return vitrine.photo_search(data, k=10)

    payloads = [query_bytes(p, pert, seed) for _, p, pert, seed in tasks]
    out: dict[str, Any] = {}
    for method, run in (("plain", plain), ("vitrine", service)):
        for data in payloads[:10]:
            run(data)
        single = []
        cpu = time.process_time()
        for data in payloads[: args.latency_queries]:
            t0 = time.perf_counter()
            run(data)
            single.append(time.perf_counter() - t0)
        cpu_ms = 1000 * (time.process_time() - cpu) / len(single)
        loaded = _open_loop(run, payloads, args.rps, args.load_seconds)
        out[method] = {
            "one at a time": {**_percentiles(single), "cpu_ms": round(cpu_ms, 1)},
            f"{args.rps:g} req/s": _percentiles(loaded),
        }
    vitrine.close()
    return out


def _open_loop(
    run: Callable[[bytes], Any], payloads: list[bytes], rps: float, seconds: float
) -> list[float]:
    """Requests arrive every 1/rps seconds whatever the server's state; latency from arrival."""
    n = int(rps * seconds)
    latencies = [0.0] * n
    start = time.perf_counter() + 0.1

    def request(i: int) -> None:
        due = start + i / rps
        delay = due - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        run(payloads[i % len(payloads)])
        latencies[i] = time.perf_counter() - due

    with ThreadPoolExecutor(max_workers=16) as pool:
        list(pool.map(request, range(n)))
    return latencies


def _percentiles(values: list[float]) -> dict[str, float]:
    return {
        "p50_ms": round(1000 * float(np.percentile(values, 50)), 1),
        "p99_ms": round(1000 * float(np.percentile(values, 99)), 1),
        "n": len(values),
    }


# -- main ------------------------------------------------------------------------------


def main() -> int:
    from vitrine.index.fusion import DEFAULT_WEIGHTS, format_weights, parse_weights

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--home", type=Path, default=ROOT / ".cache" / "bench-fashion-home")
    parser.add_argument("--limit", type=int, default=None, help="queries per set (default all)")
    parser.add_argument("--candidates", type=int, default=50, help="per source (default 50)")
    parser.add_argument("--weights", default=format_weights(DEFAULT_WEIGHTS))
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--latency-queries", type=int, default=200)
    parser.add_argument("--rps", type=float, default=20.0)
    parser.add_argument("--load-seconds", type=float, default=30.0)
    parser.add_argument("--no-latency", action="store_true")
    parser.add_argument("--no-eval", action="store_true", help="only the latency part")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    parse_weights(args.weights, known=set(DEFAULT_WEIGHTS))  # fail early on a typo
    if not CATALOG.is_dir() or not QUERIES.is_dir():
        print(f"data not found under {DATA}", file=sys.stderr)
        return 1
    from threadpoolctl import threadpool_limits

    threadpool_limits(1, user_api="blas")
    started = time.perf_counter()
    ensure_catalog(args.home)
    from vitrine.runtime import Runtime

    vitrine = Runtime(settings_for(args.home, args.candidates, args.weights))
    ids, catalog = vitrine.store.primary_vectors("embedding", vitrine.embedder.model_version)
    pos = {pid: i for i, pid in enumerate(ids)}
    print(
        f"catalogue: {len(ids)} products, typical aspect "
        f"{vitrine.search.typical_aspect.value:.3f}; weights {args.weights}; "
        f"candidates: ANN {args.candidates} + 2 scans x {args.candidates}",
        flush=True,
    )
    vitrine.close()
    results: dict[str, Any] = {"sets": {}}
    sets = query_sets(args.limit)
    ctx = multiprocessing.get_context("spawn")
    init = (args.home, args.candidates, args.weights)
    header = f"{'query set':<20} {'method':<9} {'n':>5} " + " ".join(
        f"{c:>6}" for c in ("hit@1", "hit@5", "hit@10", "MRR")
    )
    lines = [header]
    pool = None if args.no_eval else ctx.Pool(args.workers, _init_worker, init)
    for name, tasks in sets if pool else []:
        t0 = time.perf_counter()
        tasks = [t for t in tasks if t[0] in pos]
        out = pool.map(_evaluate, tasks, chunksize=8)
        base = np.stack([b for b, _ in out])
        truth = np.array([pos[t[0]] for t in tasks])
        ranks = {
            "baseline": baseline_ranks(base, truth, catalog),
            "vitrine": np.array([r for _, r in out]),
        }
        results["sets"][name] = {}
        for method, r in ranks.items():
            m = metrics(r)
            results["sets"][name][method] = m
            lines.append(
                f"{name:<20} {method:<9} {len(r):>5} {m['hit@1']:>6.3f} {m['hit@5']:>6.3f} "
                f"{m['hit@10']:>6.3f} {m['mrr']:>6.3f}"
            )
        print(lines[-2], f"({time.perf_counter() - t0:.0f} s)", flush=True)
        print(lines[-1], flush=True)
    if pool:
        pool.close()
        pool.join()
    print()
    print("\n".join(lines))
    if not args.no_latency:
        tasks = [t for _, ts in sets for t in ts[::7]]
        rng = np.random.default_rng(SEED)
        tasks = [tasks[i] for i in rng.permutation(len(tasks))]
        results["latency"] = latency(tasks, args)
        print("\nsearch by photo latency (plain: decode + features + CNN + ANN;")
        print("                          vitrine: + layout + aspect scans + rerank)")
        for method, modes in results["latency"].items():
            for mode, v in modes.items():
                cpu = f", {v['cpu_ms']:.1f} CPU-ms each" if "cpu_ms" in v else ""
                print(
                    f"  {method:<8} {mode:<14} p50 {v['p50_ms']:6.1f} ms   "
                    f"p99 {v['p99_ms']:6.1f} ms   (n={v['n']}{cpu})"
                )
    print(f"\ntotal {time.perf_counter() - started:.0f} s")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
