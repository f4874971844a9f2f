"""Scale benchmark: how every cost grows with the catalog and the event log.

    .venv/bin/python bench/bench_scale.py --sizes 10k,100k       # make bench-scale
    .venv/bin/python bench/bench_scale.py --sizes 1m --seconds 20
    .venv/bin/python bench/bench_scale.py --docs                 # docs only, from the figures

For each size ``n`` (``10k``, ``100k``, ``1m``; any ``<number>[k|m]``) it builds once,
cached under ``.cache/scale/<size>``, a home of ``n`` synthetic products, ``10 n``
purchase events and ``n`` customers (:mod:`scale_build`: features sampled around the real
fashion-small catalog's, long-tailed popularity and repeat buying; written in bulk, no
photo decoded), then measures

* in process: the vector index build from the database (``VisualSearch.load_or_rebuild``
  without a saved index), the training of every recommendation model (the hybrid's
  share apart; wall and CPU seconds), batch recommendation throughput
  (``recommend_many``, default strategy: in this process, customers per wall and per
  CPU second, then on the default worker processes);
* a real ``vitrine serve`` (1 API process): start-up to ``/readyz`` 200 (index loaded),
  to recommendation models loaded, search by photo p50 / p99 at 20 requests/s, similar
  products p99 at 200 requests/s, user recommendations p99 at 200 requests/s (a share
  of the customers cold), then memory: PSS (shared pages counted once) of its processes;
* ``vitrine serve --workers 2``: start-up to ready and the PSS of all its processes.

``--only memory`` measures just start-up to ready and PSS (1 and 2 workers, after a
start that is not measured: it builds and saves the index and the aspect snapshot when
they are missing), without models, load scenarios or the in-process part. ``--only
train`` measures just the training of the models and batch recommendations, in process.

Figures go to ``.cache/scale/<size>/scale-figures.json`` and ``bench/out/scale.json``;
the table with the growth exponent of each figure between sizes,
``log(f_b / f_a) / log(b / a)``, is printed, and ``--docs`` writes it to
``docs/benchmarks.md`` (section "Scale") with the curve ``docs/scale.svg``. A size that
does not fit the machine is reported with the resource that ran out (memory, disk, the
``--budget-minutes`` of time), not as a failure.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_api_load import FASHION, RawHttp, RawResponse, free_port, open_loop
from scale_build import REPO, customer_id, ensure_home, open_home, product_id, sizes_of
from scale_report import print_table, write_docs

CACHE = REPO / ".cache" / "scale"
OUT = REPO / "bench" / "out" / "scale.json"


# -- in process ------------------------------------------------------------------------


def in_process(
    home: Path,
    customers: int,
    batch_customers: int,
    windows: int,
    out: dict[str, Any],
    index: bool = True,
) -> None:
    """Index build (unless not ``index``), model training and batch throughput, measured
    in this process."""
    from threadpoolctl import threadpool_limits

    from vitrine.index.visual_search import VisualSearch
    from vitrine.recommend.hybrid import WINDOWS

    vitrine = open_home(home)
    try:
        if index:
            version = vitrine.embedder.model_version
            for saved in vitrine.settings.index_dir.glob("*.faiss"):
                saved.unlink()
            started = time.perf_counter()
            search = VisualSearch(vitrine.store, vitrine.settings, version)
            how = search.load_or_rebuild()
            out["index_build_s"] = time.perf_counter() - started
            assert how == "rebuilt", how
            del search
        service = vitrine.recommendations
        for strategy in service.strategies.list():  # the ranker on fewer past windows
            if strategy.algorithm == "hybrid" and windows != WINDOWS:
                strategy.params["windows"] = windows
                service.strategies.put(strategy)
        started, cpu = time.perf_counter(), time.process_time()
        models = service.train()
        out["train_s"] = time.perf_counter() - started
        out["train_cpu_s"] = time.process_time() - cpu  # steadier than wall on shared cores
        out["hybrid_train_s"] = sum(
            float(v) for k, v in models.train_seconds.items() if k.startswith("hybrid")
        )
        out["models_fit_s"] = sum(float(v) for v in models.train_seconds.values())
        print(f"  trained: {models.train_seconds}", flush=True)
        rng = random.Random(1)
        ids = [customer_id(rng.randrange(customers)) for _ in range(batch_customers)]
        with threadpool_limits(1, user_api="blas"):
            started, cpu = time.perf_counter(), time.process_time()
            count = sum(1 for _ in service.recommend_many(ids, 12, None, workers=1))
            out["batch_1_per_s"] = count / (time.perf_counter() - started)
            out["batch_1_per_cpu_s"] = count / (time.process_time() - cpu)
            started = time.perf_counter()
            count = sum(1 for _ in service.recommend_many(ids, 12, None))
            out["batch_per_s"] = count / (time.perf_counter() - started)
    finally:
        vitrine.close()


# -- a real server ---------------------------------------------------------------------


def server_env(home: Path) -> dict[str, str]:
    return {
        **os.environ,
        "VITRINE_HOME": str(home),
        "VITRINE_API_RATE_LIMIT": "0",
        "VITRINE_LOG_LEVEL": "WARNING",
        "VITRINE_RECOMMEND_RETRAIN_MINUTES": "0",
    }


CLI = [sys.executable, "-m", "vitrine.cli"]


def api_key(home: Path) -> str:
    return subprocess.run(
        [*CLI, "keys", "create", "--name", "bench-scale", "--scope", "write"],
        env=server_env(home),
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()


class Server:
    """``vitrine serve --workers N`` on a free port: start-up times and memory."""

    def __init__(
        self, home: Path, key: str, workers: int, timeout: float = 900, models: bool = True
    ) -> None:
        self.base = f"http://127.0.0.1:{free_port()}"
        self.key = key
        started = time.monotonic()
        self.log = (home / f"serve-{workers}.log").open("w")
        self.process = subprocess.Popen(
            [*CLI, "serve", "--port", self.base.rsplit(":", 1)[1], "--workers", str(workers)],
            env=server_env(home),
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        deadline = started + timeout
        self.ready_s = self._wait(lambda: self._get("/readyz") == 200, deadline) - started
        self.models_s = float("nan")
        if models:
            self._wait_models(workers, started, deadline)

    def _wait_models(self, workers: int, started: float, deadline: float) -> None:
        settled = 0  # every worker answers that its models are loaded (new connections)

        def models_loaded() -> bool:
            nonlocal settled
            with contextlib.suppress(httpx.HTTPError, ValueError):
                ready = httpx.get(
                    f"{self.base}/v1/recommendations/status", headers=self.headers, timeout=5
                ).json()
                settled = settled + 1 if ready.get("ready") else 0
            return settled >= 10 * workers

        self.models_s = self._wait(models_loaded, deadline) - started

    @property
    def headers(self) -> dict[str, str]:
        return {"X-API-Key": self.key}

    def _get(self, path: str) -> int:
        try:
            return httpx.get(self.base + path, timeout=5).status_code
        except httpx.HTTPError:
            return 0

    def _wait(self, done: Any, deadline: float) -> float:
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the server exited ({self.process.returncode})")
            if done():
                return time.monotonic()
            time.sleep(0.1)
        raise TimeoutError("the server was not ready in time")

    def pss(self) -> int:
        """PSS of every process of the server (shared pages counted once), bytes."""
        import psutil

        root = psutil.Process(self.process.pid)
        total = 0
        for proc in [root, *root.children(recursive=True)]:
            with contextlib.suppress(psutil.Error):
                total += proc.memory_full_info().pss
        return total

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.log.close()


async def load(server: Server, products: int, customers: int, seconds: float) -> dict[str, Any]:
    """The three open-loop scenarios against one server; p50 / p99 of each."""
    rng = random.Random(0)
    photos = sorted((FASHION / "images").glob("*.jpg"))
    queries = [p.read_bytes() for p in rng.sample(photos, 50)]
    host, port = server.base.removeprefix("http://").split(":")
    raw = RawHttp(host, int(port), server.key)
    limits = httpx.Limits(max_connections=256, max_keepalive_connections=256)

    async def similar(_: Any) -> RawResponse:
        return await raw.get(f"/v1/products/{product_id(rng.randrange(products))}/similar?k=10")

    async def recommend(_: Any) -> RawResponse:
        user = (
            customer_id(rng.randrange(customers))
            if rng.random() > 0.2
            else "cold-" + str(rng.randrange(10**9))
        )
        return await raw.get(f"/v1/users/{user}/recommendations?k=12")

    async def search(client: httpx.AsyncClient) -> httpx.Response:
        files = {"image": ("q.jpg", rng.choice(queries), "image/jpeg")}
        return await client.post("/v1/search/image", data={"k": "10"}, files=files)

    out: dict[str, Any] = {}
    async with httpx.AsyncClient(
        base_url=server.base, headers=server.headers, timeout=30, limits=limits
    ) as client:
        for make, rate in ((similar, 50), (recommend, 50), (search, 5)):  # warm-up
            await open_loop(client, "warm-up", rate, 2, make)
        for name, make, rate in (
            ("photo", search, 20),
            ("similar", similar, 200),
            ("recs", recommend, 200),
        ):
            row = await open_loop(client, name, rate, seconds, make)
            print(f"  {name} @{rate}/s: {row}", flush=True)
            out[f"{name}_p50_ms"], out[f"{name}_p99_ms"] = row["p50_ms"], row["p99_ms"]
            out[f"{name}_errors"] = row["errors"]
            out[f"{name}_rps"] = row["rps"]
    raw.close()
    return out


def served(home: Path, products: int, customers: int, seconds: float, out: dict[str, Any]) -> None:
    """Start-up, latency under load and memory of 1 API process, then of 2 workers."""
    key = api_key(home)
    server = Server(home, key, 1)
    try:
        out["ready_s"], out["models_ready_s"] = server.ready_s, server.models_s
        print(f"  1 worker: ready {server.ready_s:.1f} s, models {server.models_s:.1f} s")
        for name, value in asyncio.run(load(server, products, customers, seconds)).items():
            out[name] = value
        out["pss_1_mb"] = server.pss() / 2**20
    finally:
        server.stop()
    server = Server(home, key, 2)
    try:
        out["ready_2_s"] = server.ready_s

        for n in range(100):  # every worker touches its index and models (new connections)
            httpx.get(
                f"{server.base}/v1/products/{product_id(n * 7 % products)}/similar",
                headers=server.headers,
                timeout=30,
            )
            httpx.get(
                f"{server.base}/v1/users/{customer_id(n * 7 % customers)}/recommendations",
                headers=server.headers,
                timeout=30,
            )
        out["pss_2_mb"] = server.pss() / 2**20
        print(f"  2 workers: ready {server.ready_s:.1f} s, PSS {out['pss_2_mb']:.0f} MB")
    finally:
        server.stop()


def memory(home: Path, products: int, out: dict[str, Any]) -> None:
    """Start-up to ready and PSS of 1 and of 2 workers, each having searched."""
    key = api_key(home)
    Server(home, key, 1, models=False).stop()  # builds what is missing; not measured
    rng = random.Random(0)
    photos = sorted((FASHION / "images").glob("*.jpg"))
    for workers in (1, 2):
        server = Server(home, key, workers, models=False)
        try:
            out[f"mem_ready_{workers}_s"] = server.ready_s
            for n in range(50 * workers):  # every worker touches its index and aspects
                httpx.get(
                    f"{server.base}/v1/products/{product_id(n * 7 % products)}/similar",
                    headers=server.headers,
                    timeout=30,
                )
                if n % 5 == 0:
                    image = ("q.jpg", rng.choice(photos).read_bytes(), "image/jpeg")
                    httpx.post(
                        f"{server.base}/v1/search/image",
                        headers=server.headers,
                        data={"k": "10"},
                        files={"image": image},
                        timeout=60,
                    )
            out[f"mem_pss_{workers}_mb"] = server.pss() / 2**20
            out[f"mem_load_avg_{workers}"] = os.getloadavg()[0]
        finally:
            server.stop()


# -- sizes -----------------------------------------------------------------------------


class Figures(dict[str, Any]):
    """One size's figures, saved (and printed) as each one is measured: a run stopped
    half-way keeps what it measured."""

    def __init__(self, path: Path, results: dict[str, Any], label: str) -> None:
        super().__init__()
        self.path, self.results, self.label = path, results, label

    def __setitem__(self, key: str, value: Any) -> None:
        super().__setitem__(key, value)
        print(f"  {key} = {value}", flush=True)
        self.path.write_text(json.dumps(self, indent=2))
        self.results[self.label] = dict(self)
        OUT.parent.mkdir(parents=True, exist_ok=True)
        OUT.write_text(json.dumps(self.results, indent=2))

    def update(self, *args: Any, **kwargs: Any) -> None:
        for key, value in dict(*args, **kwargs).items():
            self[key] = value


def measure_size(label: str, args: argparse.Namespace, results: dict[str, Any]) -> dict[str, Any]:
    products = sizes_of(label)
    events, customers = 10 * products, products
    home = CACHE / label
    free = shutil.disk_usage(CACHE.parent).free
    need = products * 9_500  # ~9.5 kB a product in the database, plus the event log
    if not (home / "scale-build.json").exists() and free < need * 1.2:
        return {"size": label, "products": products, "skipped": f"disk: {free >> 30} GiB free"}
    started = time.perf_counter()
    build = ensure_home(home, products, events, customers)
    figures = Figures(home / "scale-figures.json", results, label)
    figures.update({**build, "size": label, "hybrid_windows": args.hybrid_windows})
    figures["date"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    if args.only == "memory":
        memory(home, products, figures)
        return figures
    batch = min(customers, args.batch_customers)
    in_process(home, customers, batch, args.hybrid_windows, figures, args.only == "all")
    if args.only == "train":
        return figures
    served(home, products, customers, args.seconds, figures)
    figures["wall_s"] = time.perf_counter() - started
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="10k,100k", help="comma-separated, e.g. 10k,100k,1m")
    parser.add_argument("--seconds", type=float, default=15, help="per load scenario")
    parser.add_argument("--batch-customers", type=int, default=2000)
    parser.add_argument(
        "--hybrid-windows",
        type=int,
        default=22,
        help="past windows the default strategy's ranker trains on (product default: 22)",
    )
    parser.add_argument(
        "--only",
        choices=["all", "memory", "train"],
        default="all",
        help="memory: start-up and PSS only; train: model training and batch only",
    )
    parser.add_argument("--docs", action="store_true", help="write docs/benchmarks.md + svg")
    parser.add_argument("--notes", default="", help="a line for the docs (what did not run)")
    args = parser.parse_args()
    results: dict[str, Any] = json.loads(OUT.read_text()) if OUT.exists() else {}
    for label in [s.strip().lower() for s in args.sizes.split(",") if s.strip()]:
        if label == "none":
            continue
        print(f"size {label}", flush=True)
        CACHE.mkdir(parents=True, exist_ok=True)
        try:
            results[label] = measure_size(label, args, results)
        except MemoryError:
            results[label] = {"size": label, "products": sizes_of(label), "skipped": "memory"}
        OUT.parent.mkdir(parents=True, exist_ok=True)
        OUT.write_text(json.dumps(results, indent=2))
    rows = sorted((r for r in results.values() if "skipped" not in r), key=lambda r: r["products"])
    print_table(rows)
    if args.docs:
        options = f"--seconds {args.seconds:g} --hybrid-windows {args.hybrid_windows} "
        write_docs(rows, [r for r in results.values() if "skipped" in r], args.notes, options)


if __name__ == "__main__":
    main()
