"""End to end: a real `vitrine serve` process on a free loopback port, real photos."""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from backends import Backend
from serve_process import create_key, process_env, serving

pytestmark = pytest.mark.integration


@pytest.fixture()
def server(tmp_path: Path, backend: Backend) -> Iterator[tuple[str, str]]:
    env = process_env(tmp_path / "home", backend.env)
    key = create_key(env)
    with serving(env, secrets=[key, *backend.secrets()]) as base:
        yield base, key


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
