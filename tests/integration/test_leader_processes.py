"""Leader election on each backend: a PostgreSQL advisory lock, or a file lock beside
SQLite; and a `vitrine serve --workers 2` runs an import job exactly once."""

from __future__ import annotations

import csv
import io
import time
import zipfile
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from backends import Backend
from serve_process import create_key, process_env, serving
from vitrine.catalog.database import make_engine
from vitrine.cluster.leader import AdvisoryLock, FileLock, Leadership, lock_for

pytestmark = pytest.mark.integration


def test_one_leader_per_catalog(backend: Backend, tmp_path: Path) -> None:
    settings = backend.settings(tmp_path / "a")
    engine = make_engine(settings.resolved_database_url)
    try:
        locks = [lock_for(engine, settings.home), lock_for(engine, settings.home)]
        expected = AdvisoryLock if backend.name == "server" else FileLock
        assert all(isinstance(lock, expected) for lock in locks)
        leaders = [Leadership(lock, [], retry_s=60) for lock in locks]
        for leader in leaders:
            leader.start()
        try:
            assert [leader.leading for leader in leaders] == [True, False]
            leaders[0].stop()  # the process ends: its lock goes with it
            leaders[1].step()
            assert leaders[1].leading
        finally:
            for leader in leaders:
                leader.stop()
    finally:
        engine.dispose()


def photo(seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    arr = np.full((120, 90, 3), 255, np.uint8)
    arr[20:100, 15:75] = rng.integers(0, 255, 3)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="JPEG")
    return buf.getvalue()


def test_two_workers_run_an_import_job_once(tmp_path: Path) -> None:
    env = process_env(tmp_path / "home", {"VITRINE_WORKERS": "2"})
    key = create_key(env, "admin")
    rows = [{"id": f"p{n}", "title": f"Product {n}", "image": f"p{n}.jpg"} for n in range(6)]
    table = io.StringIO()
    writer = csv.DictWriter(table, fieldnames=["id", "title", "image"])
    writer.writeheader()
    writer.writerows(rows)
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as zf:
        for n, row in enumerate(rows):
            zf.writestr(row["image"], photo(n))
    with serving(env) as base, httpx.Client(base_url=base, headers={"X-API-Key": key}) as client:
        r = client.post(
            "/v1/imports",
            files={
                "csv": ("products.csv", table.getvalue().encode(), "text/csv"),
                "images": ("images.zip", archive.getvalue(), "application/zip"),
            },
        )
        assert r.status_code == 202, r.text
        job_url = f"/v1/imports/{r.json()['id']}"
        deadline = time.monotonic() + 60
        while (job := client.get(job_url).json())["status"] not in {"done", "failed"}:
            assert time.monotonic() < deadline, job
            time.sleep(0.2)
        assert job["status"] == "done" and job["imported"] == 6 and job["skipped"] == 0, job
        listed = client.get("/v1/products", params={"limit": 50}).json()["items"]
        assert sorted(p["id"] for p in listed) == [f"p{n}" for n in range(6)]
        # Either worker may answer; the one that did not import learns the products from
        # the change feed within a poll interval.
        deadline = time.monotonic() + 5
        answered = 0
        while answered < 8:
            status = client.get("/v1/products/p3/similar").status_code
            answered = answered + 1 if status == 200 else 0
            assert time.monotonic() < deadline, f"similar answered {status}"
    lock = tmp_path / "home" / "vitrine.db.leader"
    assert lock.exists()
