"""Search by photo: does a shopper's photo of a catalogue product bring that product first?

The whole fashion-small catalogue (35k products, 60x80 photos) is described once as an
import would (CNN embedding, hand-crafted features, colour layout) and cached under
``.cache/photo-search/``. Queries are the higher-resolution photos of
``../shared/data/fashion-queries`` (``224x224``: squashed to squares, ``225x300``: aspect
kept), as they are and perturbed (random 85 % crop, 8 degree rotation, 0.8 brightness,
JPEG; fixed seed). For each set it prints hit@1/5/10 and MRR of

* ``baseline``: the plain approach, the pooled EfficientNet-Lite0 embedding of the photo as it
  comes, exact cosine over the whole catalogue;
* ``vitrine``: the canonical query view (exposure, the catalogue's typical aspect), ANN top
  ``--ann`` on its embedding plus the top ``--scan`` of each exact aspect scan (colour
  layout; colour + pattern), re-ranked by the fused aspects (:mod:`vitrine.index.rerank`),

then the query-side latency of today's plain search by photo (decode + features + CNN +
ANN) and of Vitrine's (+ layout, scans, rerank): one request at a time (with CPU-ms per
request, the figure least disturbed by other work on the machine), and open-loop at
``--rps`` requests per second through a micro-batched model as the service runs it.
numpy's BLAS is limited to one thread, as the service must do (see ``main``).

    .venv/bin/python bench/bench_photo_search.py                  # everything (~10 min warm)
    .venv/bin/python bench/bench_photo_search.py --limit 300      # 300 queries per set
    .venv/bin/python bench/bench_photo_search.py --weights "embedding=1,layout_aligned=2"
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import multiprocessing
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
CATALOG = DATA / "fashion-small" / "images"
QUERIES = DATA / "fashion-queries"
CACHE = ROOT / ".cache" / "photo-search"
MODELS = ROOT / ".cache" / "models"
FEATURE_KINDS = ("color", "texture", "shape", "pattern")
SEED = 1000
CROP, ANGLE, BRIGHTNESS = 0.85, 8.0, 0.8


# -- the catalogue ---------------------------------------------------------------------


def _describe_catalog_photo(path: str) -> tuple[Any, ...]:
    import cv2

    cv2.setNumThreads(1)
    from vitrine.vision.analyzer import WORKING_SIDE, prepare
    from vitrine.vision.decode import decode_image
    from vitrine.vision.layout import layout_vector

    data = Path(path).read_bytes()
    prepared = prepare(data, path)
    vectors = prepared.features.vectors()
    layout = layout_vector(decode_image(data, max_side=WORKING_SIDE).rgb)
    size = (prepared.width, prepared.height)
    return prepared.model_input, [vectors[k] for k in FEATURE_KINDS], layout, size


def _layout_only(path: str) -> np.ndarray:
    from vitrine.vision.analyzer import WORKING_SIDE
    from vitrine.vision.decode import decode_image
    from vitrine.vision.layout import layout_vector

    return layout_vector(decode_image(Path(path), max_side=WORKING_SIDE).rgb)


def catalog_arrays(model_version: str) -> dict[str, np.ndarray]:
    """ids, sizes, embedding, the four feature kinds and layout of every catalogue photo."""
    from vitrine.vision.embedding import Embedder
    from vitrine.vision.features import FEATURE_VERSION
    from vitrine.vision.layout import LAYOUT_VERSION

    names = {
        "ids": "ids.npy",
        "sizes": "sizes.npy",
        "embedding": f"embedding-{model_version}.npy",
        **{k: f"{k}-{FEATURE_VERSION}.npy" for k in FEATURE_KINDS},
        "layout": f"layout-{LAYOUT_VERSION}.npy",
    }
    paths = sorted(CATALOG.glob("*.jpg"), key=lambda p: p.stem)
    ids = np.array([p.stem for p in paths])
    if (CACHE / "ids.npy").exists() and not np.array_equal(np.load(CACHE / "ids.npy"), ids):
        for f in CACHE.glob("*.npy"):
            f.unlink()
    missing = [k for k, f in names.items() if not (CACHE / f).exists()]
    CACHE.mkdir(parents=True, exist_ok=True)
    ctx = multiprocessing.get_context("spawn")
    if set(missing) - {"layout"}:
        print(f"describing {len(paths)} catalogue photos (cached afterwards) ...", flush=True)
        n = len(paths)
        emb = np.zeros((n, 1280), np.float32)
        feats: dict[str, np.ndarray] = {}
        layouts = np.zeros((n, 300), np.float32)
        sizes = np.zeros((n, 2), np.int32)
        embedder = Embedder(MODELS, threads=1, top_labels=0)
        batch: list[np.ndarray] = []
        rows: list[int] = []
        t0 = time.perf_counter()
        with ctx.Pool(2) as pool:
            results = pool.imap(_describe_catalog_photo, map(str, paths), chunksize=32)
            for i, (model_input, vectors, layout, size) in enumerate(results):
                for k, v in zip(FEATURE_KINDS, vectors, strict=True):
                    feats.setdefault(k, np.zeros((n, v.shape[0]), np.float32))[i] = v
                layouts[i], sizes[i] = layout, size
                batch.append(model_input)
                rows.append(i)
                if len(batch) == 32 or i == n - 1:
                    emb[rows] = embedder.embed_prepared(np.stack(batch)).vectors
                    batch, rows = [], []
                if i and i % 5000 == 0:
                    print(f"  {i} photos, {time.perf_counter() - t0:.0f} s", flush=True)
        arrays = {"ids": ids, "sizes": sizes, "embedding": emb, **feats, "layout": layouts}
        for k, f in names.items():
            np.save(CACHE / f, arrays[k])
    elif missing:
        print("computing catalogue layouts (cached afterwards) ...", flush=True)
        with ctx.Pool(2) as pool:
            layouts = np.stack(pool.map(_layout_only, map(str, paths), chunksize=256))
        np.save(CACHE / names["layout"], layouts)
    return {k: np.load(CACHE / f) for k, f in names.items()}


def build_index(arrays: dict[str, np.ndarray], model_version: str) -> Any:
    """The service's VectorIndex (default parameters: HNSW at this size), cached on disk."""
    from vitrine.index import VectorIndex

    emb = arrays["embedding"]
    digest = hashlib.sha256(emb.tobytes()[::97] + arrays["ids"].tobytes()).hexdigest()[:16]
    path = CACHE / f"index-{model_version}.faiss"
    if path.exists() and VectorIndex.stored_fingerprint(path) == digest:
        return VectorIndex.load(path)
    print("building the vector index (cached afterwards) ...", flush=True)
    index = VectorIndex(emb.shape[1])
    index.upsert([str(i) for i in arrays["ids"]], emb)
    index.save(path, fingerprint=digest)
    return index


def build_store(arrays: dict[str, np.ndarray]) -> Any:
    from vitrine.index.rerank import AspectStore
    from vitrine.vision.query import catalog_aspects

    store = AspectStore()
    ids = [str(i) for i in arrays["ids"]]
    step = 8192
    for s in range(0, len(ids), step):
        stored = {k: arrays[k][s : s + step] for k in (*FEATURE_KINDS, "layout")}
        store.upsert(ids[s : s + step], catalog_aspects(stored))
    return store


def typical_aspect(arrays: dict[str, np.ndarray]) -> float:
    from vitrine.vision.query import TypicalAspect

    tracker = TypicalAspect()
    tracker.add_many(arrays["sizes"])
    value = tracker.value
    assert value is not None
    return value


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


class Searcher:
    """Vitrine's search by photo, as VisualSearch should run it."""

    def __init__(
        self,
        index: Any,
        store: Any,
        aspect: float,
        complete: Callable[[Sequence[Any]], list[Any]],
        weights: dict[str, float],
        n_ann: int,
        n_scan: int,
        extra_view: bool = False,
    ) -> None:
        self.index, self.store, self.aspect = index, store, aspect
        self.complete, self.weights = complete, weights
        self.n_ann, self.n_scan, self.extra_view = n_ann, n_scan, extra_view

    def embeddings_of(self, ids: Sequence[str]) -> np.ndarray:
        """Stored embeddings of ``ids``; a zero row where one is missing (as rerank wants).

        The service should get these with one batched VectorIndex call.
        """
        out = np.zeros((len(ids), self.index.dim), np.float32)
        for i, pid in enumerate(ids):
            v = self.index.vector(pid)
            if v is not None:
                out[i] = v
        return out

    def search(self, data: bytes, k: int) -> list[Any]:
        from vitrine.index import Hit
        from vitrine.index.rerank import DEFAULT_SCANS
        from vitrine.vision.query import describe_query

        q = describe_query(data, self.complete, self.aspect, extra_view=self.extra_view)
        # 1. candidates: the embedding's ANN neighbours and the best of each exact scan.
        ann = self.index.search(q.embeddings[0], max(k, self.n_ann))
        scanned = [
            hit
            for weights in DEFAULT_SCANS
            for hit in self.store.scan(q.scan_aspects, weights, self.n_scan)
        ]
        if len(q.embeddings) > 1:  # several query views: look every embedding up
            hits = ann + scanned
            for row in q.embeddings[1:]:
                hits += self.index.search(row, max(k, self.n_ann))
            return self.store.rerank(
                q.aspects,
                q.embeddings,
                hits,
                self.weights,
                k,
                candidate_embeddings=self.embeddings_of,
            )
        # 2. one view: an ANN hit's score already is its embedding cosine; look up only
        # the scan's own finds (their scan score is not an embedding similarity).
        seen = {h.product_id for h in ann}
        extra = list(dict.fromkeys(h.product_id for h in scanned if h.product_id not in seen))
        vectors = self.embeddings_of(extra)
        sims = np.where(vectors.any(axis=1), vectors @ q.embeddings[0], np.nan)  # nan: unknown
        hits = ann + [Hit(pid, float(s)) for pid, s in zip(extra, sims, strict=True)]
        return self.store.rerank(q.aspects, q.embeddings[0], hits, self.weights, k)


_worker: dict[str, Any] = {}


def _init_worker(weights: dict[str, float], n_ann: int, n_scan: int, extra: bool) -> None:
    import cv2
    from threadpoolctl import threadpool_limits

    cv2.setNumThreads(1)
    threadpool_limits(1, user_api="blas")
    from vitrine.vision.analyzer import ImageAnalyzer
    from vitrine.vision.embedding import Embedder

    embedder = Embedder(MODELS, threads=1, top_labels=0)
    arrays = catalog_arrays(embedder.model_version)
    analyzer = ImageAnalyzer(embedder)
    _worker["embedder"] = embedder
    _worker["searcher"] = Searcher(
        build_index(arrays, embedder.model_version),
        build_store(arrays),
        typical_aspect(arrays),
        analyzer.complete,
        weights,
        n_ann,
        n_scan,
        extra,
    )


def _evaluate(task: tuple[str, Path, bool, int]) -> tuple[np.ndarray, int]:
    """The baseline embedding of one query, and the rank of its product in Vitrine's list."""
    from vitrine.vision.decode import decode_image
    from vitrine.vision.embedding import prepare_image

    pid, path, perturbed, seed = task
    data = query_bytes(path, perturbed, seed)
    # The plain approach: the photo as it comes, as ImageAnalyzer.analyze embeds it.
    rgb = decode_image(data, max_side=320).rgb
    base = _worker["embedder"].embed_prepared(prepare_image(rgb)[None]).vectors[0]
    hits = _worker["searcher"].search(data, k=1000)
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


def latency(
    arrays: dict[str, np.ndarray],
    tasks: list[tuple[str, Path, bool, int]],
    args: argparse.Namespace,
    weights: dict[str, float],
) -> dict[str, Any]:
    """p50/p99 of the plain search by photo (today's path) and of Vitrine's, same harness."""
    from vitrine.services.batcher import MicroBatcher
    from vitrine.vision.analyzer import ImageAnalyzer, prepare
    from vitrine.vision.embedding import Embedder

    embedder = Embedder(MODELS)  # every core, as the service
    analyzer = ImageAnalyzer(embedder)
    batcher = MicroBatcher(analyzer.complete, max_batch=32, max_wait=0.005)
    index = build_index(arrays, embedder.model_version)
    searcher = Searcher(
        index,
        build_store(arrays),
        typical_aspect(arrays),
        batcher.analyze,
        weights,
        args.ann,
        args.scan,
        args.extra_view,
    )

    def plain(data: bytes) -> Any:
        return index.search(batcher.analyze([prepare(data, "<upload>")])[0].embedding, 10)

    def vitrine(data: bytes) -> Any:
        return searcher.search(data, 10)

    payloads = [query_bytes(p, pert, seed) for _, p, pert, seed in tasks]
    out: dict[str, Any] = {}
    for method, run in (("plain", plain), ("vitrine", vitrine)):
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
    batcher.close()
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
    from vitrine.index.rerank import DEFAULT_WEIGHTS, format_weights, parse_weights

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--limit", type=int, default=None, help="queries per set (default all)")
    parser.add_argument("--ann", type=int, default=50, help="ANN candidates (default 50)")
    parser.add_argument("--scan", type=int, default=50, help="candidates per aspect scan (50)")
    parser.add_argument("--weights", default=format_weights(DEFAULT_WEIGHTS))
    parser.add_argument("--extra-view", action="store_true", help="also the photo as it is")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--latency-queries", type=int, default=200)
    parser.add_argument("--rps", type=float, default=20.0)
    parser.add_argument("--load-seconds", type=float, default=30.0)
    parser.add_argument("--no-latency", action="store_true")
    parser.add_argument("--no-eval", action="store_true", help="only the latency part")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    weights = parse_weights(args.weights)
    if not CATALOG.is_dir() or not QUERIES.is_dir():
        print(f"data not found under {DATA}", file=sys.stderr)
        return 1
    # Small matrix products from many request threads: numpy's BLAS must not spawn its own
    # threads (under load they spin against each other; see the report). The service
    # must do the same at start.
    from threadpoolctl import threadpool_limits

    threadpool_limits(1, user_api="blas")
    started = time.perf_counter()
    from vitrine.vision.embedding import Embedder

    model_version = Embedder(MODELS, threads=1, top_labels=0).model_version
    arrays = catalog_arrays(model_version)
    build_index(arrays, model_version)  # build and cache it once, before the workers load it
    pos = {str(pid): i for i, pid in enumerate(arrays["ids"])}
    print(
        f"catalogue: {len(arrays['ids'])} products, typical aspect "
        f"{typical_aspect(arrays):.3f}; weights {format_weights(weights)}; "
        f"candidates: ANN {args.ann} + 2 scans x {args.scan}",
        flush=True,
    )
    results: dict[str, Any] = {"sets": {}}
    sets = query_sets(args.limit)
    ctx = multiprocessing.get_context("spawn")
    init = (weights, args.ann, args.scan, args.extra_view)
    header = f"{'query set':<20} {'method':<9} {'n':>5} " + " ".join(
        f"{c:>6}" for c in ("hit@1", "hit@5", "hit@10", "MRR")
    )
    lines = [header]
    pool = None if args.no_eval else ctx.Pool(args.workers, _init_worker, init)
    for name, tasks in sets if pool else []:
        t0 = time.perf_counter()
        out = pool.map(_evaluate, tasks, chunksize=8)
        base = np.stack([b for b, _ in out])
        truth = np.array([pos[t[0]] for t in tasks])
        ranks = {
            "baseline": baseline_ranks(base, truth, arrays["embedding"]),
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
        results["latency"] = latency(arrays, tasks, args, weights)
        print("\nsearch by photo latency (plain: decode + features + CNN + ANN, today's path;")
        print("                          vitrine: + layout + aspect scan + rerank)")
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
