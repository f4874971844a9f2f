"""Recommendation load benchmark: a real `vitrine serve` over loopback with the H&M catalog
and purchase log, GET /v1/users/{id}/recommendations driven open-loop at a fixed rate.

    .venv/bin/python bench/bench_recommend_load.py \\
        --home HM_HOME                 # a home with the H&M catalog and log imported
    .venv/bin/python bench/bench_recommend_load.py   # imports both into a new home first

Customers are drawn at random from every customer of the log plus a share of new ones
(cold: no history). Scenarios, each ``--seconds`` long, in one run:

1. baseline: the ``trending`` strategy (time-decayed popularity: no per-customer work);
2. the default strategy (the hybrid), the same customers at the same rate;
3. the default strategy while customers send events (``--event-rate`` per second): each
   event's customer asks for their list right after, and the list must have changed
   ("event -> updated list" delay, measured over HTTP);
4. the default strategy while new products arrive (``--product-rate`` per second, each
   with the photo of an existing product): the uploads' latency, and the delay until
   each new product is among its look-alike's recommended look-alikes (the
   recommendation models' catalog, not the search index; no retraining). The
   new products are deleted at the end.

Prints requests/s, p50/p95/p99 and errors per scenario, and the server's list statistics
(served from the cache / precomputed / computed). The load generator shares the
machine's cores with the server.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import csv
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_api_load import RawHttp, RawResponse, free_port, open_loop, summary
from bench_recommend import (
    EVENT_PREFIX,
    HM,
    LOG_END,
    REPO,
    ensure_catalog,
    ensure_events,
    forget_bench_events,
    open_home,
)


def prepare(home: Path) -> None:
    """The H&M catalog and log in ``home`` (imported unless there), models trained."""
    vitrine = open_home(home)
    try:
        print(f"catalog: {ensure_catalog(vitrine)}", flush=True)
        print(f"events: {ensure_events(vitrine.recommendations)}", flush=True)
        started = time.perf_counter()
        vitrine.recommendations.load_or_train()
        print(f"models ready in {time.perf_counter() - started:.1f} s", flush=True)
    finally:
        vitrine.close()


def customers() -> list[str]:
    with (HM / "transactions.csv").open(newline="") as f:
        return sorted({row["customer_id"] for row in csv.DictReader(f)})


def products() -> list[str]:
    with (HM / "articles.csv").open(newline="") as f:
        return [row["article_id"] for row in csv.DictReader(f)]


async def event_to_list(
    raw: RawHttp,
    users: list[str],
    items: list[str],
    rate: float,
    seconds: float,
    rng: random.Random,
) -> list[dict[str, Any]]:
    """Events at ``rate``/s; after each, that customer's next list: delay and change.

    The delay runs from sending the POST to having the next list (both over HTTP, the
    GET sent when the POST is answered); the POST's own share is reported beside it."""
    delays: list[float] = []
    posts: list[float] = []
    changed = errors = 0

    async def one(user: str) -> None:
        nonlocal changed, errors
        url = f"/v1/users/{user}/recommendations?k=12"
        before = await raw.get(url)
        started = time.perf_counter()
        events = [
            {
                "user_id": user,
                "product_id": p,
                "type": "add_to_cart",
                "timestamp": LOG_END,
                "event_id": f"{EVENT_PREFIX}{time.time_ns()}-{p}",
            }
            for p in rng.sample(items, 3)
        ]
        posted = await raw.post_json("/v1/events", json.dumps({"events": events}).encode())
        answered = time.perf_counter()
        after = await raw.get(url)
        if before.status_code >= 400 or posted.status_code >= 400 or after.status_code >= 400:
            errors += 1
            return
        delays.append(time.perf_counter() - started)
        posts.append(answered - started)
        ids = [[i["product_id"] for i in json.loads(r.body)["items"]] for r in (before, after)]
        changed += ids[0] != ids[1]

    tasks = []
    started = time.perf_counter()
    for i in range(int(rate * seconds)):
        delay = started + i / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(rng.choice(users))))
    await asyncio.gather(*tasks)
    elapsed = time.perf_counter() - started
    out = summary("POST /v1/events -> next list", delays, errors, elapsed)
    out["changed"] = f"{changed}/{len(delays)}"
    return [out, summary("... of which the POST /v1/events", posts, errors, elapsed)]


async def product_arrivals(
    client: httpx.AsyncClient,
    items: list[str],
    rate: float,
    seconds: float,
    rng: random.Random,
) -> list[dict[str, Any]]:
    """New products at ``rate``/s while serving, each with the photo of an existing one:
    the upload's latency, and the delay until the new product is among that existing
    product's recommended look-alikes (``/similar/weighted``: the recommendation models'
    catalog, which takes new products without retraining). Deleted afterwards."""
    uploads: list[float] = []
    visible: list[float] = []
    added: list[str] = []
    errors = missing = 0

    async def one(n: int) -> None:
        nonlocal errors, missing
        original = rng.choice(items)
        photo = (HM / "images" / original[:3] / f"{original}.jpg").read_bytes()
        pid = f"bench-new-{n}-{time.time_ns()}"
        started = time.perf_counter()
        r = await client.post(
            "/v1/products",
            data={"id": pid, "title": "bench new arrival"},
            files=[("images", (f"{pid}.jpg", photo, "image/jpeg"))],
        )
        if r.status_code >= 400:
            errors += 1
            return
        added.append(pid)
        uploads.append(time.perf_counter() - started)
        deadline = started + 60
        while time.perf_counter() < deadline:
            similar = await client.get(
                f"/v1/products/{original}/similar/weighted", params={"k": 10}
            )
            if pid in [i["product_id"] for i in similar.json().get("items", [])]:
                visible.append(time.perf_counter() - started)
                return
            await asyncio.sleep(0.25)
        missing += 1

    tasks = []
    started = time.perf_counter()
    for n in range(max(1, int(rate * seconds))):
        delay = started + n / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(n)))
    await asyncio.gather(*tasks)
    elapsed = time.perf_counter() - started
    for pid in added:  # leave the catalog as it was
        (await client.delete(f"/v1/products/{pid}")).raise_for_status()
    out = summary("... of which POST /v1/products (new arrival)", uploads, errors, elapsed)
    seen = summary("new product -> recommended beside its look-alike", visible, missing, elapsed)
    return [out, seen]


async def run(base: str, key: str, args: argparse.Namespace) -> list[dict[str, Any]]:
    rng = random.Random(0)
    known = customers()
    items = products()
    limits = httpx.Limits(max_connections=256, max_keepalive_connections=256)
    results = []
    async with httpx.AsyncClient(
        base_url=base, headers={"X-API-Key": key}, timeout=30, limits=limits
    ) as client:

        def draw() -> str:
            if rng.random() < args.cold_share:
                return f"cold-{rng.randrange(10**9)}"
            return rng.choice(known)

        host, port = base.removeprefix("http://").split(":")
        raw = RawHttp(host, int(port), key)

        def recommend(strategy: str | None) -> Any:
            query = "?k=12" + (f"&strategy={strategy}" if strategy else "")

            async def call(_: Any) -> RawResponse:
                return await raw.get(f"/v1/users/{draw()}/recommendations{query}")

            return call

        # the server's start-up work (index load, background threads) settles first
        await open_loop(client, "warm-up", 50, args.warm_up, recommend("trending"))
        # one request at a time: the floor of a request over loopback (/healthz) beside
        # a customer's list (precomputed / cached, or computed for a cold customer)
        for label, path in (
            ("GET /healthz, one at a time", lambda: "/healthz"),
            (
                "GET .../recommendations default, one at a time",
                lambda: f"/v1/users/{draw()}/recommendations",
            ),
        ):
            latencies: list[float] = []
            for _ in range(200):
                started = time.perf_counter()
                if (await raw.get(path())).status_code != 200:
                    raise SystemExit(f"GET {path()} failed")
                latencies.append(time.perf_counter() - started)
            results.append(summary(label, latencies, 0, sum(latencies)))
        for name, strategy in (("trending (baseline)", "trending"), ("default", None)):
            label = f"GET /v1/users/{{id}}/recommendations {name} @{args.rate:g}/s"
            results.append(
                await open_loop(client, label, args.rate, args.seconds, recommend(strategy))
            )
            results[-1]["lists"] = (
                (await client.get("/v1/recommendations/status")).json().get("lists")
            )
            print(results[-1], flush=True)
        if args.event_rate > 0:
            label = f"... default @{args.rate:g}/s with events @{args.event_rate:g}/s"
            load, events = await asyncio.gather(
                open_loop(client, label, args.rate, args.seconds, recommend(None)),
                event_to_list(raw, known, items, args.event_rate, args.seconds, rng),
            )
            load["lists"] = (await client.get("/v1/recommendations/status")).json().get("lists")
            results += [load, *events]
        if args.product_rate > 0:
            label = f"... default @{args.rate:g}/s with new products @{args.product_rate:g}/s"
            load, arrivals = await asyncio.gather(
                open_loop(client, label, args.rate, args.seconds, recommend(None)),
                product_arrivals(client, items, args.product_rate, args.seconds, rng),
            )
            load["lists"] = (await client.get("/v1/recommendations/status")).json().get("lists")
            results += [load, *arrivals]
        raw.close()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", type=Path, help="a Vitrine home with H&M imported (kept)")
    parser.add_argument("--rate", type=float, default=200)
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument(
        "--cold-share",
        type=float,
        default=0.2,
        help="share of requests for customers with no history",
    )
    parser.add_argument("--event-rate", type=float, default=5)
    parser.add_argument(
        "--product-rate",
        type=float,
        default=0.5,
        help="new products per second in the catalog-change scenario",
    )
    parser.add_argument("--warm-up", type=float, default=10, help="seconds at 50/s first")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "out" / "recommend_load.json")
    args = parser.parse_args()
    home = args.home or Path(tempfile.mkdtemp(prefix="vitrine-rec-load-"))
    prepare(home)
    env = {
        **os.environ,
        "VITRINE_HOME": str(home),
        "VITRINE_API_RATE_LIMIT": "0",
        "VITRINE_LOG_LEVEL": "WARNING",
        "VITRINE_RECOMMEND_RETRAIN_MINUTES": "0",
    }
    cli = [sys.executable, "-m", "vitrine.cli"]
    key = subprocess.run(
        [*cli, "keys", "create", "--name", "bench-rec", "--scope", "write"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    port = free_port()
    server = subprocess.Popen(
        [*cli, "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 300
        status: dict[str, Any] = {}
        while time.monotonic() < deadline and not status.get("ready"):
            time.sleep(1)
            if server.poll() is not None:
                raise SystemExit(
                    f"the server exited ({server.returncode}); run `vitrine serve`"
                    " on this home to see why"
                )
            with contextlib.suppress(httpx.HTTPError, json.JSONDecodeError):
                status = httpx.get(
                    f"{base}/v1/recommendations/status", headers={"X-API-Key": key}, timeout=2
                ).json()
        if not status.get("ready"):
            raise SystemExit(f"the recommendation models did not load: {status}")
        print(f"ready: {status}", flush=True)
        results = asyncio.run(run(base, key, args))
    finally:
        server.terminate()
        server.wait(timeout=30)
        forget_bench_events(home)
    print(f"\n{'scenario':64} {'req':>6} {'rps':>7} {'p50':>8} {'p95':>8} {'p99':>8} {'err':>5}")
    for r in results:
        print(
            f"{r['endpoint']:64} {r['requests']:6d} {r['rps']:7.1f} {r['p50_ms']:8.2f} "
            f"{r['p95_ms']:8.2f} {r['p99_ms']:8.2f} {r['errors']:5d}"
            + (f"  changed {r['changed']}" if "changed" in r else "")
            + (f"  lists {r['lists']}" if r.get("lists") else "")
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2))
    print(f"p99 of each: {[float(np.round(r['p99_ms'], 1)) for r in results]}")


if __name__ == "__main__":
    main()
