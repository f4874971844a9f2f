"""End to end: a real `vitrine serve` process on a free loopback port, real photos."""

from __future__ import annotations

import csv
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

pytestmark = pytest.mark.integration


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture()
def server(tmp_path: Path, model_dir: Path) -> Iterator[tuple[str, str]]:
    home = tmp_path / "home"
    home.mkdir()
    (home / "models").symlink_to(model_dir, target_is_directory=True)
    env = {**os.environ, "VITRINE_HOME": str(home), "VITRINE_API_RATE_LIMIT": "0"}
    vitrine = [sys.executable, "-m", "vitrine.cli"]
    key = subprocess.run(
        [*vitrine, "keys", "create", "--name", "e2e", "--scope", "write"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    port = free_port()
    proc = subprocess.Popen(
        [*vitrine, "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        else:
            raise AssertionError("server did not become ready")
        yield base, key
    finally:
        proc.terminate()
        try:
            output, _ = proc.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            output, _ = proc.communicate()
        assert key not in (output or ""), "the API key must never be logged"


def test_serve_upload_and_search(server: tuple[str, str], data_dir: Path) -> None:
    base, key = server
    headers = {"X-API-Key": key}
    fashion = data_dir / "fashion-small"
    by_type: dict[str, list[dict[str, str]]] = {}
    with (fashion / "styles.csv").open(newline="") as handle:
        for row in csv.DictReader(handle):
            wanted = row["articleType"] in {"Watches", "Sports Shoes", "Handbags"}
            if wanted and (fashion / "images" / f"{row['id']}.jpg").is_file():
                by_type.setdefault(row["articleType"], []).append(row)
    uploaded: dict[str, str] = {}
    with httpx.Client(base_url=base, headers=headers, timeout=30) as client:
        for article_type, rows in by_type.items():
            for row in rows[:6]:
                data = (fashion / "images" / f"{row['id']}.jpg").read_bytes()
                r = client.post(
                    "/v1/products",
                    data={
                        "id": row["id"],
                        "title": row["productDisplayName"],
                        "attributes": f'{{"articleType": "{article_type}"}}',
                    },
                    files=[("images", (f"{row['id']}.jpg", data, "image/jpeg"))],
                )
                assert r.status_code == 201, r.text
                uploaded[row["id"]] = article_type
        # A different photo of the same kind finds neighbours of that kind.
        for article_type, rows in by_type.items():
            query = rows[10]
            data = (fashion / "images" / f"{query['id']}.jpg").read_bytes()
            r = client.post(
                "/v1/search/image", data={"k": "3"}, files={"image": ("q.jpg", data, "image/jpeg")}
            )
            assert r.status_code == 200
            kinds = [uploaded[x["product_id"]] for x in r.json()["results"]]
            assert kinds.count(article_type) >= 2, (article_type, kinds)
        metrics = client.get("/metrics").text
        assert 'route="/v1/products"' in metrics
