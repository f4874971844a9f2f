"""API load benchmark: a real `vitrine serve` over loopback, driven at fixed request rates.

    .venv/bin/python bench/bench_api_load.py --home /tmp/vitrine-35k   # a home with a catalog
    .venv/bin/python bench/bench_api_load.py --import-limit 35258       # import fashion-small first

Scenarios (open loop: requests are sent on schedule whether or not earlier ones returned):
single 1000x1000 JPEG uploads when idle; similar products at 200 requests/s; search by
uploaded photo at 20 requests/s. Prints requests/s, p50/p95/p99, errors and the server's
CPU milliseconds per request (all its processes, user + system) per endpoint.
The load generator shares the machine's cores with the server; similar products are
requested over raw keep-alive HTTP/1.1 (``RawHttp``), uploads and searches with httpx.
Each scenario set runs once per ``--workers`` count (default 1 then 2 API processes; 1 is
the baseline). With ``--tracing`` each set runs twice: untraced (the baseline), then with
every span exported over OTLP/HTTP to a stand-in collector on loopback (``SpanSink``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import json
import os
import random
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from PIL import Image

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
FASHION = DATA / "fashion-small"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def summary(name: str, latencies: list[float], errors: int, seconds: float) -> dict[str, Any]:
    arr = np.asarray(latencies) * 1000 if latencies else np.zeros(1)
    return {
        "endpoint": name,
        "requests": len(latencies) + errors,
        "rps": round((len(latencies) + errors) / seconds, 1),
        "p50_ms": round(float(np.percentile(arr, 50)), 2),
        "p95_ms": round(float(np.percentile(arr, 95)), 2),
        "p99_ms": round(float(np.percentile(arr, 99)), 2),
        "errors": errors,
    }


async def open_loop(
    client: httpx.AsyncClient, name: str, rate: float, seconds: float, make: Any
) -> dict[str, Any]:
    latencies: list[float] = []
    errors = 0

    async def one() -> None:
        nonlocal errors
        start = time.perf_counter()
        try:
            response = await make(client)
            if response.status_code >= 400:
                errors += 1
                return
        except httpx.HTTPError:
            errors += 1
            return
        latencies.append(time.perf_counter() - start)

    tasks = []
    started = time.perf_counter()
    n = int(rate * seconds)
    for i in range(n):
        delay = started + i / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one()))
    await asyncio.gather(*tasks)
    return summary(name, latencies, errors, time.perf_counter() - started)


@dataclass
class RawResponse:
    status_code: int
    body: bytes


class RawHttp:
    """Keep-alive HTTP/1.1 GETs and JSON POSTs over asyncio streams, for the open-loop
    scenarios: the load generator shares the 2 cores with the server, and httpx measured
    ~3x the server's CPU per request here (it could not send 200 requests/s itself)."""

    def __init__(self, host: str, port: int, key: str) -> None:
        self.host, self.port = host, port
        self.headers = f"Host: {host}:{port}\r\nX-API-Key: {key}\r\n\r\n".encode()
        self.idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []

    async def get(self, path: str) -> RawResponse:
        return await self.request(b"GET " + path.encode() + b" HTTP/1.1\r\n" + self.headers)

    async def post_json(self, path: str, body: bytes) -> RawResponse:
        return await self.request(
            b"POST "
            + path.encode()
            + b" HTTP/1.1\r\nContent-Type: application/json\r\n"
            + f"Content-Length: {len(body)}\r\n".encode()
            + self.headers
            + body
        )

    async def request(self, message: bytes) -> RawResponse:
        if self.idle:  # a kept connection the server may have closed meanwhile: retry once
            with contextlib.suppress(httpx.TransportError):
                return await self._send(message, self.idle.pop())
        return await self._send(message, await asyncio.open_connection(self.host, self.port))

    async def _send(
        self, message: bytes, conn: tuple[asyncio.StreamReader, asyncio.StreamWriter]
    ) -> RawResponse:
        reader, writer = conn
        try:
            writer.write(message)
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            body = await reader.readexactly(length)
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError) as exc:
            writer.close()
            raise httpx.TransportError(str(exc)) from exc
        self.idle.append(conn)
        return RawResponse(int(head[9:12]), body)

    def close(self) -> None:
        for _, writer in self.idle:
            writer.close()


class SpanSink:
    """A stand-in OTLP/HTTP collector in a process of its own (as a real one would be: not
    competing for this process's GIL): it answers every export at once and keeps the
    bodies, decoded only at :meth:`close` to count the spans by name."""

    def __init__(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, __file__, "--span-sink"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None and self.process.stdin is not None
        self.url = self.process.stdout.readline().strip()

    def close(self) -> dict[str, int]:
        """Stop the collector; how many spans of each name it received."""
        assert self.process.stdout is not None and self.process.stdin is not None
        self.process.stdin.close()
        spans = json.loads(self.process.stdout.readline())
        self.process.wait(timeout=30)
        return spans


def serve_span_sink() -> None:
    """The collector of :class:`SpanSink`: prints its URL, serves until stdin closes,
    then prints how many spans of each name it received (a JSON object)."""
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
    )

    bodies: list[bytes] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            bodies.append(self.rfile.read(int(self.headers["Content-Length"])))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    print(f"http://127.0.0.1:{server.server_address[1]}", flush=True)
    sys.stdin.read()
    server.shutdown()
    names: dict[str, int] = {}
    for body in bodies:
        for resource in ExportTraceServiceRequest.FromString(body).resource_spans:
            for scope in resource.scope_spans:
                for span in scope.spans:
                    names[span.name] = names.get(span.name, 0) + 1
    print(json.dumps(names), flush=True)


def big_jpeg(path: Path) -> bytes:
    img = Image.open(path).convert("RGB").resize((1000, 1000), Image.Resampling.BICUBIC)
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def server_cpu(pid: int) -> Callable[[], float]:
    """The CPU seconds (user + system) the server's processes have used so far: a cost per
    request that other load on the machine disturbs far less than latency."""
    import psutil

    root = psutil.Process(pid)

    def used() -> float:
        total = 0.0
        for process in [root, *root.children(recursive=True)]:
            with contextlib.suppress(psutil.Error):
                times = process.cpu_times()
                total += times.user + times.system
        return total

    return used


async def run(
    base: str,
    key: str,
    product_ids: list[str],
    seconds: float,
    similar_rates: list[float],
    cpu: Callable[[], float],
) -> list[dict[str, Any]]:
    headers = {"X-API-Key": key}
    photos = sorted((FASHION / "images").glob("*.jpg"))
    rng = random.Random(0)
    query_photos = [p.read_bytes() for p in rng.sample(photos, 50)]
    upload = big_jpeg(photos[0])
    limits = httpx.Limits(max_connections=256, max_keepalive_connections=256)
    results = []
    async with httpx.AsyncClient(
        base_url=base, headers=headers, timeout=30, limits=limits
    ) as client:
        # Idle single uploads, one at a time, after one that warms the analysis path up.
        await client.post(
            "/v1/products",
            data={"id": "bench-warm-up"},
            files=[("images", ("big.jpg", upload, "image/jpeg"))],
        )
        await client.delete("/v1/products/bench-warm-up")
        latencies = []
        cpu_before = cpu()
        for i in range(30):
            t0 = time.perf_counter()
            pid = f"bench-upload-{i}-{time.time_ns()}"
            r = await client.post(
                "/v1/products",
                data={"id": pid},
                files=[("images", ("big.jpg", upload, "image/jpeg"))],
            )
            r.raise_for_status()
            latencies.append(time.perf_counter() - t0)
            # Leave the catalog as it was: a changed catalog makes the next start retrain
            # the recommendation models in the background, which skews the next run.
            (await client.delete(f"/v1/products/{pid}")).raise_for_status()
        row = summary("POST /v1/products (1000x1000, idle)", latencies, 0, sum(latencies))
        results.append(row | {"cpu_ms": round((cpu() - cpu_before) * 1000 / len(latencies), 2)})

        host, port = base.removeprefix("http://").split(":")
        raw = RawHttp(host, int(port), key)

        async def similar(_: httpx.AsyncClient) -> RawResponse:
            return await raw.get(f"/v1/products/{rng.choice(product_ids)}/similar?k=10")

        async def search(c: httpx.AsyncClient) -> httpx.Response:
            data = rng.choice(query_photos)
            return await c.post(
                "/v1/search/image", data={"k": "10"}, files={"image": ("q.jpg", data, "image/jpeg")}
            )

        async def costed(name: str, rate: float, seconds: float, make: Any) -> dict[str, Any]:
            """An open-loop scenario and the server's CPU per request in it."""
            before = cpu()
            row = await open_loop(client, name, rate, seconds, make)
            return row | {"cpu_ms": round((cpu() - before) * 1000 / row["requests"], 2)}

        await open_loop(client, "warm-up", 50, 2, similar)
        for rate in similar_rates:
            name = f"GET /v1/products/{{id}}/similar @{rate:g}/s"
            results.append(await costed(name, rate, seconds, similar))
        results.append(await costed("POST /v1/search/image @20/s", 20, seconds, search))
        raw.close()
    return results


def measure(
    cli: list[str], env: dict[str, str], key: str, workers: int, seconds: float, rates: list[float]
) -> list[dict[str, Any]]:
    """Start `vitrine serve --workers N`, run every scenario against it, stop it."""
    port = free_port()
    server = subprocess.Popen(
        [*cli, "serve", "--port", str(port), "--workers", str(workers)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                ready = httpx.get(f"{base}/readyz", timeout=2)
                if ready.status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        print(f"ready ({workers} worker(s)):", ready.json(), flush=True)
        with httpx.Client(base_url=base, headers={"X-API-Key": key}) as c:
            # "Idle" means after the start-up work: every worker has loaded (or trained)
            # its recommendation models, which holds the GIL for a while.
            # A new connection per poll: a kept one would always reach the same worker.
            settled = 0
            while settled < 10 * workers and time.monotonic() < deadline + 300:
                status = httpx.get(
                    f"{base}/v1/recommendations/status", headers={"X-API-Key": key}
                ).json()
                settled = settled + 1 if status.get("ready") else 0
                time.sleep(0.2)
            print("recommendation models loaded:", bool(settled), flush=True)
            time.sleep(2)
            ids: list[str] = []
            cursor = None
            while len(ids) < 5000:
                page = c.get(
                    "/v1/products", params={"limit": 500} | ({"cursor": cursor} if cursor else {})
                ).json()
                ids += [p["id"] for p in page["items"]]
                cursor = page["next_cursor"]
                if not cursor:
                    break
        return asyncio.run(run(base, key, ids, seconds, rates, server_cpu(server.pid)))
    finally:
        server.terminate()
        server.wait(timeout=30)


def main() -> None:
    if sys.argv[1:] == ["--span-sink"]:
        serve_span_sink()
        return
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--home", type=Path, help="VITRINE_HOME with a catalog already imported")
    parser.add_argument("--import-limit", type=int, default=35_258)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument(
        "--similar-rates", default="200", help="comma-separated request rates for similar"
    )
    parser.add_argument(
        "--tracing",
        action="store_true",
        help="run every scenario set untraced, then traced (OTLP/HTTP to a local collector)",
    )
    parser.add_argument(
        "--workers",
        default="1,2",
        help="comma-separated API process counts to measure, one after the other "
        "(1 is the baseline)",
    )
    args = parser.parse_args()

    import tempfile

    home = args.home or Path(tempfile.mkdtemp(prefix="vitrine-load-"))
    env = {
        **os.environ,
        "VITRINE_HOME": str(home),
        "VITRINE_API_RATE_LIMIT": "0",
        "VITRINE_LOG_LEVEL": "WARNING",
    }
    models = home / "models"
    if not models.exists():
        home.mkdir(parents=True, exist_ok=True)
        models.symlink_to(Path(".cache/models").resolve(), target_is_directory=True)
    cli = [sys.executable, "-m", "vitrine.cli"]
    if args.home is None:
        subprocess.run(
            [
                *cli,
                "import-catalog",
                str(FASHION / "styles.csv"),
                "--images",
                str(FASHION / "images"),
                "--limit",
                str(args.import_limit),
            ],
            env=env,
            check=True,
        )
    key = subprocess.run(
        [*cli, "keys", "create", "--name", "bench", "--scope", "write"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    rates = [float(r) for r in args.similar_rates.split(",") if r.strip()]
    results = []
    spans: dict[int, dict[str, int]] = {}
    for workers in [int(w) for w in args.workers.split(",") if w.strip()]:
        for traced in (False, True) if args.tracing else (False,):
            sink = SpanSink() if traced else None
            run_env = env if sink is None else {**env, "VITRINE_OTLP_ENDPOINT": sink.url}
            for row in measure(cli, run_env, key, workers, args.seconds, rates):
                results.append({"workers": workers, "traced": traced, **row})
            if sink is not None:  # the servers have stopped: every span was sent
                spans[workers] = sink.close()
                print(f"spans received ({workers} worker(s)):", spans[workers], flush=True)
    print(
        f"\n{'workers':>7} {'traced':>6} {'endpoint':44} {'req':>6} {'rps':>7} {'p50':>8} "
        f"{'p95':>8} {'p99':>8} {'err':>5} {'cpu/req':>8}"
    )
    for r in results:
        print(
            f"{r['workers']:7d} {'yes' if r['traced'] else 'no':>6} {r['endpoint']:44} "
            f"{r['requests']:6d} {r['rps']:7.1f} {r['p50_ms']:8.2f} {r['p95_ms']:8.2f} "
            f"{r['p99_ms']:8.2f} {r['errors']:5d} {r['cpu_ms']:8.2f}"
        )
    for workers, names in spans.items():
        print(f"spans exported ({workers} worker(s), traced run): {sum(names.values())}")
    out = Path("bench/out/api_load.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
