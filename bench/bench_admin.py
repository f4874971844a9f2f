"""Admin UI latency on the H&M shop: every page's p50 / p95 as a signed-in admin, beside
the cheapest route of the same server (``/healthz``) measured in the same run.

    .venv/bin/python bench/bench_admin.py                 # imports the H&M catalog first
    .venv/bin/python bench/bench_admin.py --home HOME     # a home with H&M imported (kept)

The server runs in this process (uvicorn on loopback, warm: index and models loaded); the
requests are sequential, so the figures are a page's own cost, not a load test. The
target is p95 under 300 ms for every page. Besides the navigation pages it opens a
product page, a customer page and a classifier's model page when there are some.
"""

from __future__ import annotations

import argparse
import json
import re
import socket
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from bench_recommend import HM, ensure_catalog, ensure_events, open_home

USER, PASSWORD = "bench-admin", "bench admin password"
CLASSIFIED = ["product_type_name", "colour_group_name"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _serve(home: Path) -> tuple[str, Any, threading.Thread]:
    import uvicorn

    from vitrine.api.app import create_app
    from vitrine.config import load_settings

    settings = load_settings(env={}).with_overrides(
        home=home, recommend_retrain_minutes=0, admin_recall_check_minutes=0, api_rate_limit=0
    )
    app = create_app(settings)
    if app.state.admin.users.get(USER) is None:
        app.state.admin.users.create(USER, PASSWORD, "admin")
    port = _free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, access_log=False)
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.1)
    return f"http://127.0.0.1:{port}", server, thread


def _sign_in(client: httpx.Client) -> None:
    page = client.get("/admin/login")
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)  # type: ignore[union-attr]
    done = client.post(
        "/admin/login", data={"username": USER, "password": PASSWORD, "csrf_token": token}
    )
    if "/admin/login" in str(done.url):
        raise SystemExit("could not sign in to the admin UI")


def _pages(client: httpx.Client) -> list[str]:
    from vitrine.admin.templating import NAV

    pages = [href for _key, href, _label in NAV]
    catalog = client.get("/admin/catalog").text
    product = re.search(r'href="(/admin/catalog/(?!labels\.csv)[^"?]+)"', catalog)
    if product:
        pages.append(product.group(1))
    pages.append("/admin/catalog/labels.csv")  # a download of the whole catalog
    for listing, pattern in (
        ("/admin/customers", r'href="(/admin/customers/[^"?]+)"'),
        ("/admin/models", r'href="(/admin/models/\d+)"'),
    ):
        found = re.search(pattern, client.get(listing).text)
        if found:
            pages.append(found.group(1))
    return pages


def _time(client: httpx.Client, path: str, n: int) -> dict[str, Any]:
    client.get(path)  # warm
    times, statuses = [], set()
    for _ in range(n):
        started = time.perf_counter()
        response = client.get(path)
        times.append((time.perf_counter() - started) * 1000)
        statuses.add(response.status_code)
    return {
        "p50_ms": round(float(np.percentile(times, 50)), 1),
        "p95_ms": round(float(np.percentile(times, 95)), 1),
        "status": sorted(statuses),
    }


def _ensure_models(runtime: Any) -> None:
    """Two classifiers (the catalog labelled by them) and the recommendation models, as a
    shop has them after its first weeks, so that every page shows what it shows then.

    H&M gives every article its type and colour; a shop installs Vitrine for the products
    that come without. Every other product (by id) loses those two fields, so the
    classifiers learn from half the catalog and label the other half."""
    from vitrine.catalog.store import ProductRecord
    from vitrine.cli.jobs import run_queued_jobs

    if not runtime.classification.registry.active():
        stripped = [
            ProductRecord(
                pid,
                title,
                price=attributes.pop("price", None),
                available=attributes.pop("available", True),
                attributes={k: v for k, v in attributes.items() if k not in CLASSIFIED},
            )
            for n, (pid, title, attributes) in enumerate(runtime.store.iter_attributes())
            if n % 2
        ]
        runtime.store.upsert_products(stripped)
        runtime.classification.train(CLASSIFIED, activate="always")
        run_queued_jobs(runtime, progress=False)
    runtime.recommendations.load_or_train()  # trains and saves when none are saved


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", type=Path, help="a Vitrine home with H&M imported (kept)")
    parser.add_argument("--requests", type=int, default=40, help="requests per page")
    parser.add_argument("--out", type=Path, help="write the figures as JSON")
    args = parser.parse_args()
    if not (HM / "transactions.csv").is_file():
        raise SystemExit(f"H&M data not found at {HM}")
    home = args.home or Path(tempfile.mkdtemp(prefix="vitrine-bench-admin-"))
    runtime = open_home(home)
    catalog = ensure_catalog(runtime)
    if runtime.recommendations.events.count() == 0:
        ensure_events(runtime.recommendations)
    _ensure_models(runtime)
    runtime.close()
    url, server, thread = _serve(home)
    figures: dict[str, Any] = {"home": str(home), "catalog": catalog, "pages": {}}
    try:
        with httpx.Client(base_url=url, follow_redirects=True, timeout=120) as client:
            _sign_in(client)
            figures["baseline /healthz"] = _time(client, "/healthz", args.requests)
            for path in _pages(client):
                figures["pages"][path] = _time(client, path, args.requests)
    finally:
        server.should_exit = True
        thread.join(timeout=30)
    base = figures["baseline /healthz"]
    print(f"{'page':44} {'p50 ms':>8} {'p95 ms':>8}  status")
    print(
        f"{'/healthz (baseline)':44} {base['p50_ms']:8.1f} {base['p95_ms']:8.1f}  {base['status']}"
    )
    for path, f in figures["pages"].items():
        print(f"{path[:44]:44} {f['p50_ms']:8.1f} {f['p95_ms']:8.1f}  {f['status']}")
    worst = max(figures["pages"].values(), key=lambda f: f["p95_ms"])
    print(f"slowest page p95 {worst['p95_ms']} ms (target: under 300 ms)")
    if args.out:
        args.out.write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
