"""The hybrid's per-customer cost against the catalog's size: candidates by exact scoring
of the whole catalog (baseline) beside candidates by top-k retrieval, in one run.

    PYTHONPATH=src .venv/bin/python bench/bench_candidates.py --sizes 100k,1m

For each size a synthetic shop is built in memory (no database, no photos): products that
are noisy copies of ``--models`` base products (128-d unit embeddings at cosine ~0.93 of
their base, bases clustered in 40 categories; a title and a category per base, so copies
are variants), and purchases drawn
as ``bench/scale_build.py`` draws them (long-tailed activity and popularity, repeat buying,
baskets over a year). The hybrid's stage 1 (:class:`CandidateSources`) is fitted once;
then, for the same sample of customers with a history, it prints per customer: the
candidates and features (ms), the candidate overlap of retrieval with the exact baseline,
and what that means for batch throughput (candidates only; the ranker adds its own cost,
which does not depend on the catalog's size).
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import time
from typing import Any

import numpy as np

from vitrine.recommend.candidates import DEFAULT_SOURCES, CandidateSources
from vitrine.recommend.data import CatalogProduct, Dataset
from vitrine.recommend.retrieval import ItemRetrieval
from vitrine.vision.cpu import cpu_flags

try:
    from scale_build import event_arrays
except ImportError:  # run from the repository root
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from scale_build import event_arrays

DAY = 86_400.0
DIM = 128
CATEGORIES = 40


def size_of(label: str) -> int:
    label = label.lower()
    return int(float(label[:-1]) * (1_000_000 if label.endswith("m") else 1_000))


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def synthetic_shop(products: int, events: int, customers: int, models: int) -> Dataset:
    rng = np.random.default_rng(3)
    # A shop's CNN space is clustered: categories, then models, then a model's variants.
    centres = _unit(rng.normal(size=(CATEGORIES, DIM)))
    of = np.arange(products) % models
    base = _unit(centres[np.arange(models) % CATEGORIES] + _unit(rng.normal(size=(models, DIM))))
    emb = _unit(base[of] + 0.4 * _unit(rng.normal(size=(products, DIM))))
    category = of % CATEGORIES
    data = Dataset.from_catalog(
        [
            CatalogProduct(f"p{i}", f"model {m}", {"category": f"c{c}", "price": 10.0 + m % 90})
            for i, (m, c) in enumerate(zip(of.tolist(), category.tolist(), strict=True))
        ],
        {},
        embedding_dims=0,
    )
    data.embeddings = emb
    data.has_embedding = np.ones(products, bool)
    users, items, seconds = event_arrays(models, products, events, customers)
    order = np.argsort(-seconds, kind="stable")  # oldest first: seconds before the end
    end = 20_000.0
    data.users = [f"u{i}" for i in range(customers)]
    data.user_index = {u: i for i, u in enumerate(data.users)}
    data.ev_user = users[order].astype(np.int32)
    data.ev_item = items[order].astype(np.int32)
    data.ev_day = end - seconds[order] / DAY
    data.ev_weight = np.ones(events, np.float32)
    data.ev_purchase = np.ones(events, bool)
    data.ev_price = np.full(events, 20.0, np.float32)
    return data


def timed_candidates(
    sources: CandidateSources, histories: list[Any], now: float, valid: np.ndarray
) -> tuple[list[np.ndarray], list[float]]:
    out, times = [], []
    for history in histories:
        t = time.perf_counter()
        items, _ = sources.candidates(history, now, valid)
        times.append(time.perf_counter() - t)
        out.append(items)
    return out, times


def measure(label: str, args: argparse.Namespace) -> dict[str, Any]:
    products = size_of(label)
    customers = max(1_000, products // args.products_per_customer)
    events = customers * args.events_per_customer
    t = time.perf_counter()
    data = synthetic_shop(products, events, customers, args.models)
    built = time.perf_counter() - t
    now = data.last_day + 1.0
    users = np.unique(data.ev_user)
    sample = np.random.default_rng(5).choice(users, min(args.customers, len(users)), False)
    histories = data.histories_of(np.sort(sample))
    valid = data.recommendable
    out: dict[str, Any] = {"products": products, "customers": customers, "events": events}
    out["build_s"] = round(built, 1)
    print(label, f"{products} products, {customers} customers, {events} events", flush=True)
    t = time.perf_counter()
    retrieval_sources = CandidateSources(data, DEFAULT_SOURCES, {"iterations": 8})
    out["fit_s"] = round(time.perf_counter() - t, 1)
    # the baseline: the same fitted sources, every retrieval exact (the whole catalog
    # scored per request)
    exact_sources = copy.copy(retrieval_sources)
    exact_sources.photos = ItemRetrieval(*data.photos, ann_min=0)
    als_items = retrieval_sources.als.retrievable_items(data.n_catalog)
    exact_sources.als_retrieval = ItemRetrieval(
        als_items, retrieval_sources.als.item_matrix(als_items), ann_min=0
    )
    lists = {}
    for mode, sources in (("exact", exact_sources), ("retrieval", retrieval_sources)):
        timed_candidates(sources, histories[:20], now, valid)  # warm
        lists[mode], times = timed_candidates(sources, histories, now, valid)
        ms = np.array(times) * 1000
        out[mode] = {
            "p50_ms": round(float(np.percentile(ms, 50)), 2),
            "p99_ms": round(float(np.percentile(ms, 99)), 2),
            "customers_per_s": round(float(len(ms) / (ms.sum() / 1000)), 1),
            "approximate": sources.photos.approximate,
        }
        print(label, mode, out[mode], flush=True)
    overlap = [
        len(np.intersect1d(a, b)) / max(len(a), 1)
        for a, b in zip(lists["exact"], lists["retrieval"], strict=True)
    ]
    out["candidate_overlap"] = round(float(np.mean(overlap)), 4)
    print(label, "overlap with exact", out["candidate_overlap"], flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="100k,1m")
    parser.add_argument("--customers", type=int, default=300, help="timed per size")
    parser.add_argument("--models", type=int, default=35_000, help="base products")
    parser.add_argument("--products-per-customer", type=int, default=1)
    parser.add_argument("--events-per-customer", type=int, default=10)
    parser.add_argument("--json", help="write the figures here")
    args = parser.parse_args()
    flags = sorted(cpu_flags() & {"avx2", "avx512f", "avx512_vnni", "amx_tile"})
    print(f"CPU: {platform.processor() or platform.machine()}, flags {', '.join(flags)}")
    results = {label: measure(label, args) for label in args.sizes.split(",")}
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"flags": flags, "results": results}, f, indent=1)


if __name__ == "__main__":
    main()
