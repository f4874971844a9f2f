"""Crash safety: real processes killed with SIGKILL mid-work, then started again.

Three points: a CLI import, an API import job, and a stream of event posts. After the
restart, what must hold is checked exactly: every row imported once, the saved vector
index equal to the database, no acknowledged event lost and none stored twice.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
import tempfile
import threading
import time
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select

from serve_process import VITRINE, _wait_ready, create_key, free_port, process_env
from vitrine.catalog.blob_stores import open_blob_store
from vitrine.catalog.database import make_engine
from vitrine.catalog.models import Event, Image
from vitrine.catalog.store import EMBEDDING_KIND, CatalogStore
from vitrine.config import load_settings
from vitrine.index.vector_index import VectorIndex
from vitrine.index.visual_search import VisualSearch

pytestmark = pytest.mark.integration

ROWS = 40
KILL_AT = int(ROWS * 0.4)
# Small CNN chunks and database batches: the catalog grows a few rows at a time, so the
# kill lands partway through, with some rows stored and some not.
SLOW_STEPS = {"VITRINE_EMBEDDING_BATCH_SIZE": "4", "VITRINE_IMPORT_DB_BATCH": "4"}


def catalog_slice(data_dir: Path, tmp: Path, n: int = ROWS) -> tuple[Path, Path, list[str]]:
    """The first n fashion-small rows that have a photo: (CSV, photo folder, ids)."""
    src = data_dir / "fashion-small"
    lines = (src / "styles.csv").read_text().splitlines()
    images = tmp / "images"
    images.mkdir()
    kept, ids = [lines[0]], []
    for line in lines[1:]:
        pid = line.split(",", 1)[0]
        if (src / "images" / f"{pid}.jpg").is_file():
            shutil.copy(src / "images" / f"{pid}.jpg", images / f"{pid}.jpg")
            kept.append(line)
            ids.append(pid)
        if len(ids) == n:
            break
    csv_path = tmp / "styles.csv"
    csv_path.write_text("\n".join(kept) + "\n")
    return csv_path, images, ids


def db_count(home: Path, sql: str) -> int:
    """A count read beside the running process (0 while the table does not exist yet)."""
    try:
        db = sqlite3.connect(f"file:{home / 'vitrine.db'}?mode=ro", uri=True, timeout=5)
    except sqlite3.Error:
        return 0
    try:
        return int(db.execute(sql).fetchone()[0])
    except sqlite3.Error:
        return 0
    finally:
        db.close()


def wait_for(
    condition: Callable[[], bool], what: str, proc: subprocess.Popen[str], timeout: float = 120
) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if proc.poll() is not None:
            raise AssertionError(f"the process ended (rc {proc.returncode}) before {what}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def killed_partway(home: Path) -> int:
    """Photos stored when the import was killed (a product row may be stored without its
    photo yet: the kill can land between the two transactions of a batch)."""
    products = db_count(home, "SELECT count(*) FROM products")
    stored = db_count(home, "SELECT count(*) FROM images")
    assert products >= KILL_AT and stored <= products, (products, stored)
    assert stored < ROWS, "the kill must land partway"
    return stored


def sigkill(proc: subprocess.Popen[str]) -> None:
    proc.kill()  # SIGKILL: no handler, no clean-up, no index save
    assert proc.wait(timeout=30) == -9


@contextmanager
def serve(env: dict[str, str]) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """`vitrine serve` until the block ends (or the test kills it); yields (process, URL)."""
    with tempfile.TemporaryFile(mode="w+") as log:
        port = free_port()
        proc = subprocess.Popen(
            [*VITRINE, "serve", "--port", str(port)],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            text=True,
        )
        base = f"http://127.0.0.1:{port}"
        try:
            _wait_ready(proc, base, log)
            yield proc, base
        finally:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()


def check_catalog(home: Path, ids: list[str]) -> None:
    """Each row once (one photo per product, its blob present), and the saved index,
    which the next start loads as is, holds exactly the products that have a photo."""
    settings = load_settings(env={}).with_overrides(home=home)
    engine = make_engine(settings.resolved_database_url)
    try:
        store = CatalogStore(engine)
        products = store.product_ids()
        assert products == set(ids) and store.count_products() == len(ids)
        with engine.connect() as conn:
            query = select(Image.product_id, func.count()).group_by(Image.product_id)
            per_product = {pid: n for pid, n in conn.execute(query)}
            keys = list(conn.scalars(select(Image.blob_key)))
        assert per_product == {pid: 1 for pid in ids}, "a product has no photo, or two"
        blobs = open_blob_store(settings.resolved_blob_url)
        assert all(blobs.exists(key) for key in keys)

        [saved] = list(settings.index_dir.glob("*.faiss"))
        version = saved.stem
        index = VectorIndex.load(saved)
        assert sorted(index.ids()) == sorted(products) and len(index) == len(ids)
        embedded, _ = store.primary_vectors(EMBEDDING_KIND, version)
        assert set(embedded) == products
        assert VectorIndex.stored_fingerprint(saved) == store.fingerprint(version)
        search = VisualSearch(store, settings, version)
        assert search.load_or_rebuild() == "loaded"  # not silently repaired on start
        assert set(search.vectors.ids()) == products
    finally:
        engine.dispose()


def test_cli_import_killed_partway_then_rerun(
    data_dir: Path, model_dir: Path, tmp_path: Path
) -> None:
    csv_path, images, ids = catalog_slice(data_dir, tmp_path)
    home = tmp_path / "home"
    env = process_env(home, SLOW_STEPS)
    command = [*VITRINE, "import-catalog", str(csv_path), "--images", str(images)]
    command += ["--workers", "0", "--no-progress"]

    with tempfile.TemporaryFile(mode="w+") as log:
        proc = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, text=True)
        try:
            wait_for(
                lambda: db_count(home, "SELECT count(*) FROM products") >= KILL_AT,
                f"{KILL_AT} imported products",
                proc,
            )
        except AssertionError:
            log.seek(0)
            raise AssertionError(log.read()[-3000:]) from None
        finally:
            if proc.poll() is None:
                sigkill(proc)
    stored = killed_partway(home)

    rerun = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    summary = json.loads(rerun.stdout)
    assert summary["rows"] == ROWS and summary["rejected"] == 0
    assert summary["skipped_already_imported"] == stored
    assert summary["imported"] == ROWS - stored
    check_catalog(home, ids)


def test_api_import_job_resumes_after_the_server_is_killed(
    data_dir: Path, model_dir: Path, tmp_path: Path
) -> None:
    csv_path, images, ids = catalog_slice(data_dir, tmp_path)
    archive = tmp_path / "images.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for photo in sorted(images.iterdir()):
            zf.write(photo, photo.name)
    home = tmp_path / "home"
    env = process_env(home, SLOW_STEPS)
    key = create_key(env)
    headers = {"X-API-Key": key}

    with serve(env) as (proc, base):
        with csv_path.open("rb") as c, archive.open("rb") as z:
            files = {
                "csv": ("styles.csv", c, "text/csv"),
                "images": ("i.zip", z, "application/zip"),
            }
            r = httpx.post(f"{base}/v1/imports", headers=headers, files=files, timeout=60)
        assert r.status_code == 202, r.text
        job_id = r.json()["id"]
        wait_for(
            lambda: db_count(home, "SELECT count(*) FROM products") >= KILL_AT,
            f"{KILL_AT} imported products",
            proc,
        )
        sigkill(proc)
    stored = killed_partway(home)
    assert db_count(home, "SELECT count(*) FROM import_jobs WHERE status = 'running'") == 1

    with serve(env) as (proc, base):

        def finished() -> bool:
            job = httpx.get(f"{base}/v1/imports/{job_id}", headers=headers, timeout=10).json()
            return job["status"] in {"done", "failed"}

        wait_for(finished, "the resumed job to finish", proc)
        job = httpx.get(f"{base}/v1/imports/{job_id}", headers=headers, timeout=10).json()
        assert job["status"] == "done" and job["error"] is None, job
        assert job["total"] == ROWS and job["rejected"] == 0
        assert job["skipped"] == stored and job["imported"] == ROWS - stored, job
        # What a finished job leaves on disk is whole without a clean shutdown too.
        sigkill(proc)
    check_catalog(home, ids)


def test_events_acknowledged_before_a_kill_are_kept_once(tmp_path: Path) -> None:
    home = tmp_path / "home"
    env = process_env(home, {})
    key = create_key(env)
    headers = {"X-API-Key": key}
    events = [
        {"event_id": f"e{n}", "user_id": f"u{n % 17}", "product_id": f"p{n % 23}", "type": "view"}
        for n in range(400)
    ]
    # Small batches go through the event loop, large ones (> 50) through a worker thread.
    sizes = [10, 10, 60, 10, 10] * 4
    batches, start = [], 0
    for size in sizes:
        batches.append(events[start : start + size])
        start += size
    assert start == len(events)

    acked: dict[int, dict[str, int]] = {}  # batch -> the answer that acknowledged it
    streaming = threading.Event()  # set at the fourth acknowledgement

    with serve(env) as (proc, base):

        def post_all() -> None:
            with httpx.Client(base_url=base, headers=headers, timeout=10) as client:
                for n, batch in enumerate(batches):
                    try:
                        r = client.post("/v1/events", json={"events": batch})
                    except httpx.HTTPError:
                        continue  # not acknowledged: re-sent after the restart
                    if r.status_code == 200:
                        acked[n] = r.json()
                        if len(acked) == 4:
                            streaming.set()

        client = threading.Thread(target=post_all)
        client.start()
        assert streaming.wait(timeout=60), "four batches were not acknowledged"
        sigkill(proc)  # mid-stream: the client is sending the next batches
        client.join(timeout=60)
    assert 4 <= len(acked) < len(batches), sorted(acked)
    acked_events = sum(len(batches[n]) for n in acked)
    stored_at_kill = db_count(home, "SELECT count(*) FROM events")
    acked_keys = ",".join(f"'id:{e['event_id']}'" for n in acked for e in batches[n])
    kept = db_count(home, f"SELECT count(*) FROM events WHERE event_key IN ({acked_keys})")
    assert kept == acked_events, "an acknowledged event was lost"

    unacked = [n for n in range(len(batches)) if n not in acked]
    again = sorted(acked)[:2]  # idempotency: acknowledged ones sent a second time
    with serve(env) as (proc, base), httpx.Client(base_url=base, headers=headers) as client:
        answers = {}
        for n in unacked + again:
            r = client.post("/v1/events", json={"events": batches[n]})
            assert r.status_code == 200, r.text
            answers[n] = r.json()
    for n in again:
        assert answers[n] == {"accepted": 0, "duplicates": len(batches[n])}
    for n in unacked:
        assert answers[n]["accepted"] + answers[n]["duplicates"] == len(batches[n])
    # Each event counted as accepted exactly once, unless its first answer was lost.
    accepted = sum(a["accepted"] for a in acked.values())
    accepted += sum(answers[n]["accepted"] for n in unacked)
    lost_answers = sum(answers[n]["duplicates"] for n in unacked)
    assert lost_answers == stored_at_kill - acked_events
    assert accepted + lost_answers == len(events)

    engine = make_engine(load_settings(env={}).with_overrides(home=home).resolved_database_url)
    try:
        with engine.connect() as conn:
            keys = list(conn.scalars(select(Event.event_key)))
    finally:
        engine.dispose()
    assert len(keys) == len(events), "an event lost or stored twice"
    assert set(keys) == {f"id:{e['event_id']}" for e in events}
