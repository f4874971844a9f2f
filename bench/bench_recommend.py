"""Recommendation benchmark on the H&M data: offline quality, serving latency, real time,
batch throughput; every figure beside a popularity baseline measured in the same run.

    .venv/bin/python bench/bench_recommend.py                      # imports the catalog first
    .venv/bin/python bench/bench_recommend.py --home /tmp/hm-home  # reuse an imported home

1. Imports the H&M catalog (6,116 photos) into a fresh home unless ``--home`` has it, and
   the purchase log with ``import-events``' code path (events per second).
2. Offline evaluation (time split, default 2020-06-01, test = the rest of the log):
   MAP@12, recall@12, NDCG@12, hit rate, coverage, cold-item recall, for every algorithm
   beside the last-4-weeks popularity baseline, in one table; several split dates give a
   mean and a spread (the test periods are small: a few hundred customers).
3. Serving: in-process latency of user recommendations per strategy (p50 / p99), both
   computed (a preview: no cache), a customer's first request (precomputed at training
   for the default strategy, else computed) and the same request again (cached), and the
   event-to-updated-recommendation delay. The load test over HTTP is
   bench/bench_recommend_load.py.
4. Batch: ``recommend_many`` throughput (customers per second) for the default strategy
   and the popularity baseline, extrapolated to 100k customers.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
HM = REPO.parent / "shared" / "data" / "hm"


# The benches' events are stamped at the end of the H&M log (events of today on a 2020
# log would move every recency and training window) and deleted afterwards, so a kept
# home's models still match its data at the next start.
LOG_END = "2020-06-30T12:00:00+00:00"
EVENT_PREFIX = "bench-"


def forget_bench_events(home: Path) -> None:
    from sqlalchemy import text

    vitrine = open_home(home)
    try:
        with vitrine.recommendations.engine.begin() as conn:
            gone = conn.execute(
                text("DELETE FROM events WHERE event_key LIKE :p"), {"p": f"id:{EVENT_PREFIX}%"}
            ).rowcount
        print(f"removed the bench's {gone} events", flush=True)
    finally:
        vitrine.close()


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


def open_home(home: Path) -> Any:
    from vitrine.config import load_settings
    from vitrine.runtime import Runtime

    home.mkdir(parents=True, exist_ok=True)
    models = home / "models"
    if not models.exists():
        models.symlink_to(REPO / ".cache" / "models", target_is_directory=True)
    return Runtime(load_settings(env={}).with_overrides(home=home, recommend_retrain_minutes=0))


def ensure_catalog(vitrine: Any) -> dict[str, Any]:
    from vitrine.catalog.csv_source import ColumnMapping
    from vitrine.jobs.bulk_import import import_catalog

    have = vitrine.store.count_products()
    if have >= 6000:
        return {"catalog": have, "imported_now": 0}
    started = time.perf_counter()
    mapping = ColumnMapping(
        id_column="article_id",
        title_column="prod_name",
        image_path="{article_id[:3]}/{article_id}.jpg",
    )
    report = import_catalog(vitrine, HM / "articles.csv", HM / "images", mapping, progress=False)
    return {
        "catalog": vitrine.store.count_products(),
        "imported_now": report.imported,
        "import_seconds": round(time.perf_counter() - started, 1),
    }


def ensure_events(service: Any) -> dict[str, Any]:
    from vitrine.recommend.event_store import EventColumns

    columns = EventColumns(
        user="customer_id", item="article_id", time="t_dat", type_value="purchase", price="price"
    )
    started = time.perf_counter()
    report = service.import_events(HM / "transactions.csv", columns)
    seconds = time.perf_counter() - started
    return {
        **report.to_json(),
        "seconds": round(seconds, 1),
        "rows_per_second": round(report.rows / seconds),
    }


def offline(
    service: Any, splits: list[str], algorithms: list[str] | None, whole_catalog: bool = False
) -> dict[str, Any]:
    from vitrine.recommend.evaluate import format_table
    from vitrine.recommend.events import parse_time

    runs = []
    for split in splits:
        run = service.evaluate(
            parse_time(split),
            12,
            algorithms,
            test_days=30,
            progress=lambda n, s=split: print(f"  {s}: {n}", flush=True),
            whole_catalog=whole_catalog,
        )
        print(f"\nsplit {split} (test: 30 days): {run['params']}")
        print(format_table(run.pop("_results"), 12), flush=True)
        runs.append(run)
    names = [r["algorithm"] for r in runs[0]["results"]]
    summary = {}
    for name in names:
        maps = [next(r for r in run["results"] if r["algorithm"] == name)["map@12"] for run in runs]
        colds = [
            next(r for r in run["results"] if r["algorithm"] == name)["cold_recall"] for run in runs
        ]
        summary[name] = {
            "map@12_mean": round(statistics.mean(maps), 5),
            "map@12_each": maps,
            "cold_recall_mean": round(statistics.mean(colds), 4),
        }
    base = summary["popularity_4w"]["map@12_mean"]
    singles = {n: v for n, v in summary.items() if n not in ("hybrid", "popularity_4w")}
    best = max(singles, key=lambda n: singles[n]["map@12_mean"])
    print(f"\nMAP@12 mean over {len(splits)} splits (baseline popularity_4w {base:.4f}):")
    for name, v in summary.items():
        ratio = v["map@12_mean"] / base if base else float("nan")
        print(
            f"  {name:<16} {v['map@12_mean']:.4f}  ({ratio:.2f}x baseline)  "
            f"cold recall {v['cold_recall_mean']:.4f}"
        )
    if "hybrid" in summary:
        h = summary["hybrid"]["map@12_mean"]
        b = singles[best]["map@12_mean"]
        print(f"  hybrid vs best single ({best}): {h / b:.2f}x" if b else "")
    return {"splits": splits, "summary": summary, "best_single": best}


def serving(service: Any, users: list[str], n: int) -> dict[str, Any]:
    rng = random.Random(0)
    sample = [rng.choice(users) for _ in range(n)]
    out = {}
    for strategy in ("trending", "als", "visual", "hybrid", "default"):
        chosen = service.strategy(strategy, sample[0])
        service.recommend_user(sample[0], 12, strategy)  # warm
        computed, first, again = [], [], []
        for user in sample:
            for times, kwargs in (
                (computed, {"preview": chosen}),  # always computed
                (first, {"strategy": strategy}),  # precomputed or computed
                (again, {"strategy": strategy}),
            ):  # cached: exact
                started = time.perf_counter()
                service.recommend_user(user, 12, **kwargs)
                times.append((time.perf_counter() - started) * 1000)
        o = out[strategy] = {
            name: {"p50_ms": round(percentile(t, 50), 3), "p99_ms": round(percentile(t, 99), 3)}
            for name, t in (("computed", computed), ("first", first), ("again", again))
        }
        print(
            f"  user recommendations, {strategy:<9} p50 / p99 ms: computed "
            f"{o['computed']['p50_ms']:.2f} / {o['computed']['p99_ms']:.2f}; first request "
            f"{o['first']['p50_ms']:.2f} / {o['first']['p99_ms']:.2f}; again (cache) "
            f"{o['again']['p50_ms']:.3f} / {o['again']['p99_ms']:.3f}",
            flush=True,
        )
    # event -> next recommendation: a new customer views three products
    data = service.models.data
    delays, changed = [], 0
    for i in range(50):
        user = f"bench-new-{i}-{time.time_ns()}"
        before = [x.product_id for x in service.recommend_user(user, 12, "visual").items]
        products = [data.items[j] for j in rng.sample(range(data.n_catalog), 3)]
        started = time.perf_counter()
        service.add_events(
            [
                {
                    "user_id": user,
                    "product_id": p,
                    "type": "view",
                    "timestamp": LOG_END,
                    "event_id": f"{EVENT_PREFIX}{user}-{p}",
                }
                for p in products
            ]
        )
        after = [x.product_id for x in service.recommend_user(user, 12, "visual").items]
        delays.append((time.perf_counter() - started) * 1000)
        changed += before != after
    out["event_to_recommendation_ms"] = {
        "p50": round(percentile(delays, 50), 2),
        "p99": round(percentile(delays, 99), 2),
        "changed": f"{changed}/50",
    }
    print(
        f"  event stored + next recommendation: p50 {percentile(delays, 50):.1f} ms, "
        f"p99 {percentile(delays, 99):.1f} ms, list changed {changed}/50",
        flush=True,
    )
    return out


def batch(service: Any, users: list[str], n: int) -> dict[str, Any]:
    ids = [users[i % len(users)] for i in range(n)]
    out = {}
    for strategy in ("trending", "default"):
        started = time.perf_counter()
        count = sum(1 for _ in service.recommend_many(ids, 12, strategy))
        seconds = time.perf_counter() - started
        rate = count / seconds
        out[strategy] = {
            "customers": count,
            "seconds": round(seconds, 1),
            "per_second": round(rate, 1),
            "100k_minutes": round(100_000 / rate / 60, 1),
        }
        print(
            f"  batch {strategy:<9} {count} customers with history in {seconds:.1f} s "
            f"({rate:.0f}/s; 100k customers: {100_000 / rate / 60:.1f} min)",
            flush=True,
        )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", type=Path, help="a Vitrine home to use (kept)")
    parser.add_argument(
        "--splits",
        default="2020-04-01,2020-05-01,2020-06-01",
        help="split dates of the offline evaluation ('' to skip it)",
    )
    parser.add_argument("--algorithms", help="comma-separated (default: all)")
    parser.add_argument(
        "--whole-catalog",
        action="store_true",
        help="offline: the catalog of now at every split (default: the catalog as of the split)",
    )
    parser.add_argument(
        "--offline-only",
        action="store_true",
        help="stop after the offline evaluation (no serving / batch part)",
    )
    parser.add_argument("--latency-requests", type=int, default=300)
    parser.add_argument("--batch-customers", type=int, default=2000)
    parser.add_argument("--out", type=Path, help="write the figures as JSON")
    args = parser.parse_args()
    if not (HM / "transactions.csv").is_file():
        raise SystemExit(f"H&M data not found at {HM}")
    home = args.home or Path(tempfile.mkdtemp(prefix="vitrine-bench-rec-"))
    vitrine = open_home(home)
    figures: dict[str, Any] = {"home": str(home)}
    print(f"home {home}", flush=True)
    figures["catalog"] = ensure_catalog(vitrine)
    print(f"catalog: {figures['catalog']}", flush=True)
    service = vitrine.recommendations
    figures["events"] = ensure_events(service)
    print(f"events: {figures['events']}", flush=True)
    algorithms = args.algorithms.split(",") if args.algorithms else None
    if args.splits:
        figures["offline"] = offline(
            service, args.splits.split(","), algorithms, args.whole_catalog
        )
    if args.offline_only:
        if args.out:
            args.out.write_text(json.dumps(figures, indent=2, default=str))
        vitrine.close()
        return
    started = time.perf_counter()
    models = service.load_or_train()
    figures["train_seconds"] = {
        "total": round(time.perf_counter() - started, 1),
        **models.train_seconds,
    }
    print(f"\ntraining every strategy's model: {figures['train_seconds']}", flush=True)
    service.start()
    users = [u for u in models.data.users if len(models.history(u))]
    figures["serving"] = serving(service, users, args.latency_requests)
    figures["batch"] = batch(service, users, args.batch_customers)
    service.stop()
    if args.out:
        args.out.write_text(json.dumps(figures, indent=2, default=str))
    vitrine.close()
    forget_bench_events(home)


if __name__ == "__main__":
    main()
