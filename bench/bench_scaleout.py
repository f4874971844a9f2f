"""Scale-out benchmark: the embedded default beside PostgreSQL + S3, in one run.

For each backend: bulk import throughput (fashion-small photos, end to end), a slice
of the real H&M catalog with its buyers' purchases (imported, then the recommenders
trained once), then two `vitrine serve` processes on the same database and blob store:
request latency of similar-product search, photo search, recommendations for a
customer (the default strategy), product reads (database) and photo reads (blob
store), and the time until a product added or deleted through one process is visible
through the other.

The servers (PostgreSQL 15, Swift s3api) are started by tests/servers/servers.sh, as
for the tests, and stopped at the end.

    .venv/bin/python bench/bench_scaleout.py                 # 1,000 photos
    .venv/bin/python bench/bench_scaleout.py --limit 3000 --requests 500
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import numpy as np

REPO = Path(__file__).resolve().parents[1]
FASHION = REPO.parent / "shared" / "data" / "fashion-small"
HM = REPO.parent / "shared" / "data" / "hm"
sys.path.insert(0, str(REPO / "tests"))

from serve_process import create_key, process_env, serving  # noqa: E402

BUCKET = "vitrine-bench"


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q)) * 1000


def start_servers() -> tuple[Path, dict[str, str]]:
    state = Path(tempfile.mkdtemp(prefix="vitrine-bench-servers-"))
    state.chmod(0o755)
    out = subprocess.run(
        ["bash", str(REPO / "tests" / "servers" / "servers.sh"), "start", str(state)],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return state, dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


def backend_env(name: str, work: Path, servers: dict[str, str]) -> dict[str, str]:
    """The VITRINE_* settings every process of one backend shares."""
    if name == "embedded":
        shared = work / "shared"
        shared.mkdir(parents=True)
        return {
            "VITRINE_DATABASE_URL": f"sqlite:///{shared / 'vitrine.db'}",
            "VITRINE_BLOB_URL": (shared / "blobs").as_uri(),
        }
    import psycopg
    from sqlalchemy.engine import make_url

    url = make_url(servers["VITRINE_TEST_PG_URL"])
    database = f"bench_{uuid.uuid4().hex[:8]}"
    dsn = url.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{database}"')
    return {
        "VITRINE_DATABASE_URL": url.set(database=database).render_as_string(hide_password=False),
        "VITRINE_BLOB_URL": f"s3://{BUCKET}/{database}",
        "VITRINE_S3_ENDPOINT_URL": servers["VITRINE_TEST_S3_ENDPOINT"],
        "VITRINE_S3_REGION": servers["VITRINE_TEST_S3_REGION"],
        "VITRINE_S3_PATH_STYLE": "true",
    }


def bench_import(env: dict[str, str], limit: int) -> dict[str, Any]:
    """`vitrine import-catalog` as a user runs it, in its own process."""
    out = subprocess.run(
        [
            *(sys.executable, "-m", "vitrine.cli", "import-catalog"),
            str(FASHION / "styles.csv"),
            *("--images", str(FASHION / "images"), "--image-path", "{id}.jpg"),
            *("--limit", str(limit), "--no-progress"),
        ],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return json.loads(out)


def hm_slice(work: Path, articles: int, customers: int) -> tuple[Path, Path, list[str]]:
    """The most bought H&M articles with a photo, and all purchases of some of their buyers."""
    with (HM / "articles.csv").open(newline="") as f:
        reader = csv.DictReader(f)
        fields = reader.fieldnames or []
        catalog = {r["article_id"]: r for r in reader}
    with (HM / "transactions.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    sold: dict[str, int] = {}
    for r in rows:
        if r["article_id"] in catalog:
            sold[r["article_id"]] = sold.get(r["article_id"], 0) + 1
    chosen = sorted(sold, key=lambda a: (-sold[a], a))[:articles]
    buyers = sorted({r["customer_id"] for r in rows if r["article_id"] in set(chosen)})
    buyers = buyers[:customers]
    work.mkdir(parents=True, exist_ok=True)
    with (work / "articles.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(catalog[a] for a in chosen)
    keep = set(buyers)
    with (work / "transactions.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(r for r in rows if r["customer_id"] in keep)
    return work / "articles.csv", work / "transactions.csv", buyers


def vitrine_cli(env: dict[str, str], *args: str) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, "-m", "vitrine.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return json.loads(out)


def bench_recommend_setup(env_a: dict, env_b: dict, work: Path, args: Any) -> dict[str, Any]:
    """Import the H&M slice and its purchases, train once; both processes load the models."""
    catalog, log, buyers = hm_slice(work / "hm", args.hm_articles, args.hm_customers)
    vitrine_cli(
        env_a,
        "import-catalog",
        str(catalog),
        "--images",
        str(HM / "images"),
        "--id-column",
        "article_id",
        "--title-column",
        "prod_name",
        "--image-path",
        "{article_id[:3]}/{article_id}.jpg",
        "--no-progress",
    )
    events = vitrine_cli(
        env_a,
        "import-events",
        str(log),
        "--user",
        "customer_id",
        "--item",
        "article_id",
        "--time",
        "t_dat",
        "--type",
        "purchase",
        "--price",
        "price",
    )
    started = time.perf_counter()
    vitrine_cli(env_a, "train-recommendations")
    seconds = time.perf_counter() - started
    # Same database, same fingerprint: B loads A's models instead of training again.
    saved = Path(env_a["VITRINE_HOME"]) / "recommend"
    shutil.copytree(saved, Path(env_b["VITRINE_HOME"]) / "recommend", dirs_exist_ok=True)
    return {"customers": buyers, "events": events["added"], "train_seconds": seconds}


def ready(client: httpx.Client, timeout: float = 300.0) -> None:
    """Until the process has loaded its recommendation models."""
    start = time.perf_counter()
    while time.perf_counter() - start < timeout:
        if client.get("/v1/recommendations/status").json().get("ready"):
            return
        time.sleep(0.2)
    raise TimeoutError("recommendation models not loaded")


def timed(call: Any, n: int) -> list[float]:
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        response = call()
        times.append(time.perf_counter() - t0)
        assert response.status_code == 200, response.text
    return times


def visible_after(check: Any, timeout: float = 10.0) -> float:
    start = time.perf_counter()
    while time.perf_counter() - start < timeout:
        if check():
            return time.perf_counter() - start
        time.sleep(0.005)
    return float("inf")


def bench_processes(
    env_a: dict, env_b: dict, key: str, requests: int, changes: int, customers: list[str]
) -> dict:
    ids = sorted(p.stem for p in FASHION.glob("images/*.jpg"))
    with (
        serving(env_a, [key]) as base_a,
        serving(env_b, [key]) as base_b,
        httpx.Client(base_url=base_a, headers={"X-API-Key": key}, timeout=30) as a,
        httpx.Client(base_url=base_b, headers={"X-API-Key": key}, timeout=30) as b,
    ):
        page = b.get("/v1/products", params={"limit": 50}).json()["items"]
        pids = [p["id"] for p in page]
        product = b.get(f"/v1/products/{pids[0]}").json()
        image_url = product["images"][0]["url"]
        photo = b.get(image_url).content
        rng = np.random.default_rng(0)
        ready(b)

        def pick() -> str:
            return pids[int(rng.integers(len(pids)))]

        def customer() -> str:
            return customers[int(rng.integers(len(customers)))]

        out: dict[str, Any] = {}
        for name, call in (
            ("similar k=10", lambda: b.get(f"/v1/products/{pick()}/similar", params={"k": 10})),
            (
                "search by photo k=10",
                lambda: b.post(
                    "/v1/search/image",
                    data={"k": "10"},
                    files={"image": ("q.jpg", photo, "image/jpeg")},
                ),
            ),
            (
                "recommend for a customer k=12",
                lambda: b.get(f"/v1/users/{customer()}/recommendations", params={"k": 12}),
            ),
            ("read product (database)", lambda: b.get(f"/v1/products/{pick()}")),
            ("read photo (blob store)", lambda: b.get(image_url)),
        ):
            call()  # warm
            t = timed(call, requests)
            out[name] = {"p50_ms": pct(t, 50), "p95_ms": pct(t, 95), "p99_ms": pct(t, 99)}

        # Changes through A, seen through B.
        unused = [i for i in ids if i not in set(pids)][-changes:]
        added, deleted = [], []
        for pid in unused:
            data = (FASHION / "images" / f"{pid}.jpg").read_bytes()
            r = a.put(f"/v1/products/{pid}", files=[("images", (f"{pid}.jpg", data, "image/jpeg"))])
            assert r.status_code == 200, r.text
            added.append(
                visible_after(lambda p=pid: b.get(f"/v1/products/{p}/similar").status_code == 200)
            )
        for pid in unused:
            assert a.delete(f"/v1/products/{pid}").status_code == 204
            deleted.append(
                visible_after(lambda p=pid: b.get(f"/v1/products/{p}/similar").status_code == 404)
            )
        for name, t in (("added, visible through B", added), ("deleted, gone from B", deleted)):
            out[name] = {"p50_ms": pct(t, 50), "p95_ms": pct(t, 95), "max_ms": max(t) * 1000}
    return out


def run_backend(name: str, work: Path, servers: dict[str, str], args: Any) -> dict[str, Any]:
    shared = backend_env(name, work, servers)
    env_a = process_env(work / "a", shared)
    env_b = process_env(work / "b", shared)
    result: dict[str, Any] = {"import": bench_import(env_a, args.limit)}
    recommend = bench_recommend_setup(env_a, env_b, work, args)
    result["recommend"] = {k: v for k, v in recommend.items() if k != "customers"}
    key = create_key(env_a)
    result |= bench_processes(
        env_a, env_b, key, args.requests, args.changes, recommend["customers"]
    )
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=1000, help="photos to import")
    parser.add_argument("--requests", type=int, default=300, help="requests per latency figure")
    parser.add_argument("--changes", type=int, default=20, help="adds and deletes to time")
    parser.add_argument(
        "--hm-articles",
        type=int,
        default=300,
        help="most bought H&M articles imported for recommendations",
    )
    parser.add_argument(
        "--hm-customers", type=int, default=400, help="their buyers whose purchases are imported"
    )
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()

    state, servers = start_servers()
    os.environ["AWS_ACCESS_KEY_ID"] = servers["VITRINE_TEST_S3_ACCESS_KEY"]
    os.environ["AWS_SECRET_ACCESS_KEY"] = servers["VITRINE_TEST_S3_SECRET_KEY"]
    try:
        from vitrine.catalog.s3 import S3Options, make_s3_client

        options = S3Options(servers["VITRINE_TEST_S3_ENDPOINT"], "us-east-1", True)
        make_s3_client(options).create_bucket(Bucket=BUCKET)
        figures = {}
        with tempfile.TemporaryDirectory(prefix="vitrine-bench-") as work:
            for name in ("embedded", "server"):
                figures[name] = run_backend(name, Path(work) / name, servers, args)
                print(f"{name}: done", file=sys.stderr, flush=True)
    finally:
        subprocess.run(
            ["bash", str(REPO / "tests" / "servers" / "servers.sh"), "stop", str(state)],
            check=False,
        )

    emb, srv = figures["embedded"], figures["server"]
    print(f"\nScale-out benchmark, {args.limit} photos, {args.requests} requests per figure")
    print(f"{'measure':44} {'embedded (SQLite+files)':>24} {'PostgreSQL + S3':>18}")
    emb_ips, srv_ips = emb["import"]["images_per_second"], srv["import"]["images_per_second"]
    print(f"{'import, images/s end to end':44} {emb_ips:>24.1f} {srv_ips:>18.1f}")
    emb_rec, srv_rec = emb["recommend"], srv["recommend"]
    label = f"train recommenders ({emb_rec['events']} events), s"
    print(f"{label:44} {emb_rec['train_seconds']:>24.1f} {srv_rec['train_seconds']:>18.1f}")
    for measure, value in emb.items():
        if measure in ("import", "recommend"):
            continue
        for stat in value:
            label = f"{measure}, {stat.replace('_ms', '')} ms"
            print(f"{label:44} {value[stat]:>24.2f} {srv[measure][stat]:>18.2f}")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
