"""The hybrid's training sample: training time and offline quality per customers per window.

    .venv/bin/python bench/bench_hybrid_sampling.py --size 10k --caps 0,500,1000,2000

On a scale benchmark home (``bench/scale_build.py``, cached under ``.cache/scale/<size>``)
the log is split ``--test-days`` before its end; the hybrid is trained on the events
before the split once per cap (``customers_per_window``: the customers who bought in each
training window that the ranker learns from, a seeded sample; 0: all of them) and
evaluated as ``vitrine evaluate recommendations`` does (MAP@12, recall@12, hit rate,
beside the last-4-weeks popularity baseline), all in the same run.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from functools import partial
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from scale_build import REPO, ensure_home, open_home, sizes_of
from vitrine.recommend.evaluate import BASELINE, default_algorithms, evaluate
from vitrine.recommend.hybrid import Hybrid
from vitrine.recommend.loading import load_dataset


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", default="10k")
    parser.add_argument("--caps", default="0,500,1000,2000", help="0: every customer")
    parser.add_argument("--test-days", type=float, default=30.0)
    parser.add_argument("--windows", type=int, default=22)
    args = parser.parse_args()
    products = sizes_of(args.size)
    home = REPO / ".cache" / "scale" / args.size
    ensure_home(home, products, 10 * products, products)
    vitrine = open_home(home)
    try:
        service = vitrine.recommendations
        data = load_dataset(vitrine.store, service.events, service.weights)
    finally:
        vitrine.close()
    split = data.last_day + 1.0 - args.test_days
    algorithms = {BASELINE: default_algorithms()[BASELINE]}
    for cap in [int(c) for c in args.caps.split(",")]:
        algorithms[f"hybrid, {cap or 'all'}"] = partial(
            Hybrid, windows=args.windows, customers_per_window=cap
        )
    started = time.perf_counter()
    results, facts = evaluate(data, split, 12, algorithms, args.test_days)
    print(f"{args.size}: {facts['test_users']} test customers, {facts['train_events']} events")
    base = results[0].metrics["map@12"]
    print("| customers per window | groups | fit s | MAP@12 | vs baseline | recall@12 | hit rate |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for r in results:
        m = r.metrics
        groups = r.extra.get("training", {}).get("groups", "")
        print(
            f"| {r.name} | {groups} | {r.fit_seconds:.1f} | {m['map@12']:.4f} | "
            f"{m['map@12'] / base if base else 0:.2f}x | {m['recall@12']:.4f} | "
            f"{m['hit_rate']:.4f} |"
        )
    print(json.dumps({"wall_s": round(time.perf_counter() - started, 1)}))


if __name__ == "__main__":
    main()
