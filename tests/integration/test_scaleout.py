"""Several `vitrine serve` processes on one database and one blob store stay in step."""

from __future__ import annotations

import io
import json
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from backends import Backend
from serve_process import create_key, process_env, serving

pytestmark = pytest.mark.integration
VISIBLE_WITHIN_S = 1.0


def photo(color: tuple[int, int, int], stripes: int = 0) -> bytes:
    arr = np.full((160, 120, 3), 255, np.uint8)
    arr[30:130, 25:95] = color
    if stripes:
        arr[30:130:stripes, 25:95] = (255, 255, 255)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="JPEG", quality=92)
    return buf.getvalue()


def shared_env(backend: Backend, tmp_path: Path) -> dict[str, str]:
    """Database and blob settings every process shares (each has its own home and index)."""
    if backend.name == "embedded":
        shared = tmp_path / "shared"
        shared.mkdir()
        return {
            "VITRINE_DATABASE_URL": f"sqlite:///{shared / 'vitrine.db'}",
            "VITRINE_BLOB_URL": (shared / "blobs").as_uri(),
        }
    return dict(backend.env)


def wait_until(check: Callable[[], bool], timeout: float = 10.0) -> float:
    """Seconds until ``check()`` held (fails after ``timeout``)."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if check():
            return time.monotonic() - start
        time.sleep(0.02)
    raise AssertionError(f"not visible after {timeout} s")


def found_by_search(client: httpx.Client, pid: str, query: bytes, *filters: str) -> bool:
    r = client.post(
        "/v1/search/image",
        data={"k": "3", "filter": list(filters)},
        files={"image": ("q.jpg", query, "image/jpeg")},
    )
    assert r.status_code == 200, r.text
    return pid in [x["product_id"] for x in r.json()["results"]]


def indexed(client: httpx.Client, pid: str) -> bool:
    """The product's embedding is in the process's index (photo search may find a product
    through its re-ranking descriptors a moment before)."""
    return client.get(f"/v1/products/{pid}/similar", params={"k": 1}).status_code == 200


def test_processes_see_each_others_changes(backend: Backend, tmp_path: Path) -> None:
    shared = shared_env(backend, tmp_path)
    env_a = process_env(tmp_path / "a", shared)
    env_b = process_env(tmp_path / "b", shared)
    key = create_key(env_a)
    secrets = [key, *backend.secrets()]
    red, blue = photo((200, 30, 30)), photo((30, 40, 190), stripes=6)
    with (
        serving(env_a, secrets) as base_a,
        serving(env_b, secrets) as base_b,
        httpx.Client(base_url=base_a, headers={"X-API-Key": key}, timeout=30) as a,
        httpx.Client(base_url=base_b, headers={"X-API-Key": key}, timeout=30) as b,
    ):
        # Added through A: searchable through B within a second.
        for pid, data, group in (("red", red, "x"), ("blue", blue, "y")):
            r = a.post(
                "/v1/products",
                data={"id": pid, "attributes": json.dumps({"group": group})},
                files=[("images", (f"{pid}.jpg", data, "image/jpeg"))],
            )
            assert r.status_code == 201, r.text
            seconds = wait_until(lambda p=pid, d=data: indexed(b, p) and found_by_search(b, p, d))
            assert seconds < VISIBLE_WITHIN_S, f"{pid} visible through B after {seconds:.2f} s"
        similar = b.get("/v1/products/red/similar?k=1").json()["results"]
        assert [x["product_id"] for x in similar] == ["blue"]
        # Changed through B: A's filters follow.
        assert b.patch("/v1/products/red", json={"attributes": {"group": "y"}}).status_code == 200
        seconds = wait_until(lambda: found_by_search(a, "red", red, "group=y"))
        assert seconds < VISIBLE_WITHIN_S
        # Replaced through A with another photo: B's vector follows.
        green = photo((20, 170, 40))
        r = a.put("/v1/products/red", files=[("images", ("g.jpg", green, "image/jpeg"))])
        assert r.status_code == 200
        wait_until(lambda: found_by_search(b, "red", green))
        # Deleted through A: gone from B within a second.
        assert a.delete("/v1/products/blue").status_code == 204
        seconds = wait_until(lambda: b.get("/v1/products/blue/similar").status_code == 404)
        assert seconds < VISIBLE_WITHIN_S
        assert not found_by_search(b, "blue", blue)

    # A process started later rebuilds from the database and holds the same catalog.
    with (
        serving(process_env(tmp_path / "c", shared), secrets) as base_c,
        httpx.Client(base_url=base_c, headers={"X-API-Key": key}, timeout=30) as c,
    ):
        assert c.get("/readyz").json()["indexed"] == 1
        assert found_by_search(c, "red", green)
