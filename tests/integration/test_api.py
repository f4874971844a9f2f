"""The HTTP API through FastAPI's test client: every route, its auth and its errors."""

from __future__ import annotations

import csv
import io
import json
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from backends import Backend
from vitrine.accounts.keys import KeyService
from vitrine.api.app import create_app
from vitrine.config import load_settings

pytestmark = pytest.mark.integration


def photo(
    color: tuple[int, int, int], size: tuple[int, int] = (120, 160), stripes: bool = False
) -> bytes:
    arr = np.full((size[1], size[0], 3), 255, np.uint8)
    arr[30:130, 25:95] = color
    if stripes:
        arr[30:130:8, 25:95] = (255, 255, 255)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="JPEG", quality=92)
    return buf.getvalue()


@pytest.fixture(scope="module")
def api(
    tmp_path_factory: pytest.TempPathFactory, model_dir: Path, module_backend: Backend
) -> Iterator[tuple[TestClient, dict[str, str]]]:
    home = tmp_path_factory.mktemp("home")
    (home / "models").symlink_to(model_dir, target_is_directory=True)
    settings = load_settings(env={}).with_overrides(
        home=home,
        max_image_bytes=200_000,
        api_rate_limit=0,
        import_workers=0,
        **module_backend.settings_overrides(),
    )
    app = create_app(settings)
    keys = KeyService(app.state.runtime.engine)
    headers = {
        scope: {"X-API-Key": keys.create(f"test-{scope}", scope)[1]}
        for scope in ("read", "write", "admin")
    }
    with TestClient(app) as client:
        yield client, {s: h["X-API-Key"] for s, h in headers.items()}


def h(key: str) -> dict[str, str]:
    return {"X-API-Key": key}


def create(client: TestClient, key: str, pid: str, data: bytes, **fields: str) -> dict:
    response = client.post(
        "/v1/products",
        headers=h(key),
        data={"id": pid, **fields},
        files=[("images", (f"{pid}.jpg", data, "image/jpeg"))],
    )
    assert response.status_code == 201, response.text
    return response.json()


def test_health_ready_metrics_need_no_key(api: tuple[TestClient, dict[str, str]]) -> None:
    client, _ = api
    assert client.get("/healthz").json()["status"] == "ok"
    assert client.get("/readyz").json()["status"] == "ready"
    text = client.get("/metrics").text
    assert "vitrine_http_requests_total" in text and "vitrine_index_size" in text


def test_auth_errors_are_problems(api: tuple[TestClient, dict[str, str]]) -> None:
    client, keys = api
    r = client.get("/v1/products")
    assert r.status_code == 401
    assert r.headers["content-type"].startswith("application/problem+json")
    assert "API key is required" in r.json()["detail"]
    assert client.get("/v1/products", headers=h("vtr_nope_nope")).status_code == 401
    r = client.post(
        "/v1/products",
        headers=h(keys["read"]),
        data={"id": "x"},
        files=[("images", ("x.jpg", photo((200, 0, 0)), "image/jpeg"))],
    )
    assert r.status_code == 403 and "needs 'write'" in r.json()["detail"]
    assert (
        client.get("/v1/products", headers={"Authorization": f"Bearer {keys['read']}"}).status_code
        == 200
    )


def test_product_lifecycle(api: tuple[TestClient, dict[str, str]]) -> None:
    client, keys = api
    body = create(
        client,
        keys["write"],
        "red-1",
        photo((210, 20, 30)),
        title="Red top",
        price="19.5",
        attributes=json.dumps({"category": "Tops"}),
    )
    assert body["product"]["id"] == "red-1"
    assert body["product"]["colors"][0]["name"] == "Red"
    assert body["analysis"][0]["embedding"]["dim"] == 1280
    # Searchable at once.
    r = client.get("/v1/products/red-1", headers=h(keys["read"]))
    assert r.status_code == 200 and r.json()["price"] == 19.5
    image_url = r.json()["images"][0]["url"]
    img = client.get(image_url, headers=h(keys["read"]))
    assert img.status_code == 200 and img.headers["content-type"] == "image/jpeg"
    # Duplicate id: 409; PUT replaces.
    r = client.post(
        "/v1/products",
        headers=h(keys["write"]),
        data={"id": "red-1"},
        files=[("images", ("a.jpg", photo((0, 0, 200)), "image/jpeg"))],
    )
    assert r.status_code == 409
    r = client.put(
        "/v1/products/red-1",
        headers=h(keys["write"]),
        data={"title": "Blue now", "attributes": json.dumps({"category": "Tops"})},
        files=[("images", ("a.jpg", photo((10, 20, 160)), "image/jpeg"))],
    )
    assert r.status_code == 200 and r.json()["product"]["title"] == "Blue now"
    assert len(r.json()["product"]["images"]) == 1
    # PATCH merges attributes.
    r = client.patch(
        "/v1/products/red-1",
        headers=h(keys["write"]),
        json={"price": 25, "attributes": {"season": "Summer"}},
    )
    assert r.status_code == 200
    assert r.json()["attributes"] == {"category": "Tops", "season": "Summer"}
    assert (
        client.patch("/v1/products/red-1", headers=h(keys["write"]), json={"colour": 1}).status_code
        == 422
    )
    assert client.patch("/v1/products/none", headers=h(keys["write"]), json={}).status_code == 404
    # DELETE: gone from store and index.
    assert client.delete("/v1/products/red-1", headers=h(keys["write"])).status_code == 204
    assert client.get("/v1/products/red-1", headers=h(keys["read"])).status_code == 404
    assert client.get("/v1/products/red-1/similar", headers=h(keys["read"])).status_code == 404
    assert client.delete("/v1/products/red-1", headers=h(keys["write"])).status_code == 404


def test_bad_uploads_leave_nothing(api: tuple[TestClient, dict[str, str]]) -> None:
    client, keys = api
    w = h(keys["write"])
    r = client.post(
        "/v1/products",
        headers=w,
        data={"id": "bad"},
        files=[
            ("images", ("a.jpg", photo((1, 2, 3)), "image/jpeg")),
            ("images", ("b.jpg", b"PK\x03\x04zip", "image/jpeg")),
        ],
    )
    assert r.status_code == 415 and "b.jpg" in r.json()["detail"]
    big = np.random.default_rng(0).integers(0, 255, (600, 600, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(big).save(buf, format="PNG")
    r = client.post(
        "/v1/products",
        headers=w,
        data={"id": "bad"},
        files=[("images", ("big.png", buf.getvalue(), "image/png"))],
    )
    assert r.status_code == 413
    r = client.post(
        "/v1/products",
        headers=w,
        data={"id": "bad"},
        files=[("images", ("t.jpg", photo((9, 9, 9))[:200], "image/jpeg"))],
    )
    assert r.status_code == 422 and "truncated" in r.json()["detail"]
    r = client.post(
        "/v1/products",
        headers=w,
        data={"id": "bad", "price": "-1"},
        files=[("images", ("a.jpg", photo((1, 2, 3)), "image/jpeg"))],
    )
    assert r.status_code == 422
    r = client.post(
        "/v1/products",
        headers=w,
        data={"id": "bad", "attributes": "[1]"},
        files=[("images", ("a.jpg", photo((1, 2, 3)), "image/jpeg"))],
    )
    assert r.status_code == 422
    r = client.post(
        "/v1/products",
        headers=w,
        data={"title": "no id"},
        files=[("images", ("a.jpg", photo((1, 2, 3)), "image/jpeg"))],
    )
    assert r.status_code == 422 and r.json()["errors"]
    assert client.get("/v1/products/bad", headers=h(keys["read"])).status_code == 404


def test_search_similar_analyze_and_list(api: tuple[TestClient, dict[str, str]]) -> None:
    client, keys = api
    w, rd = keys["write"], keys["read"]
    colors = {
        "s-red": (200, 20, 20),
        "s-green": (20, 160, 40),
        "s-blue": (20, 40, 190),
        "s-red2": (180, 30, 40),
    }
    for pid, color in colors.items():
        create(
            client,
            w,
            pid,
            photo(color, stripes=pid == "s-green"),
            attributes=json.dumps({"group": "a" if pid != "s-blue" else "b"}),
        )
    r = client.post(
        "/v1/search/image",
        headers=h(rd),
        data={"k": "2"},
        files={"image": ("q.jpg", photo((205, 25, 25)), "image/jpeg")},
    )
    assert r.status_code == 200
    ids = [x["product_id"] for x in r.json()["results"]]
    assert set(ids) == {"s-red", "s-red2"}
    r = client.post("/v1/search/image", headers=h(rd), data={"product_id": "s-red", "k": "1"})
    assert r.json()["results"][0]["product_id"] == "s-red2"
    r = client.post(
        "/v1/search/image",
        headers=h(rd),
        data={"product_id": "s-red", "k": "5", "filter": "group=b"},
    )
    assert [x["product_id"] for x in r.json()["results"]] == ["s-blue"]
    assert client.post("/v1/search/image", headers=h(rd), data={"k": "2"}).status_code == 422
    for bad in ("sparkle=1", "embedding=-1", "color"):
        r = client.post(
            "/v1/search/image",
            headers=h(rd),
            data={"weights": bad},
            files={"image": ("q.jpg", photo((205, 25, 25)), "image/jpeg")},
        )
        assert r.status_code == 422 and r.json()["type"].endswith("invalid-weights"), r.text
    r = client.post(
        "/v1/search/image",
        headers=h(rd),
        data={"k": "2", "weights": "color=1"},
        files={"image": ("q.jpg", photo((205, 25, 25)), "image/jpeg")},
    )
    assert {x["product_id"] for x in r.json()["results"]} == {"s-red", "s-red2"}
    r = client.post(
        "/v1/search/image", headers=h(rd), data={"product_id": "s-red", "filter": "bad"}
    )
    assert r.status_code == 422
    r = client.get("/v1/products/s-red/similar?k=1", headers=h(rd))
    assert r.json()["results"][0]["product_id"] == "s-red2"
    r = client.post(
        "/v1/analyze", headers=h(rd), files={"image": ("x.png", photo((0, 0, 128)), "image/jpeg")}
    )
    assert r.status_code == 200 and r.json()["colors"]["primary"] == "Navy Blue"
    # Cursor pagination walks every product once.
    seen: list[str] = []
    cursor = None
    while True:
        params = {"limit": 2} | ({"cursor": cursor} if cursor else {})
        page = client.get("/v1/products", headers=h(rd), params=params).json()
        seen += [p["id"] for p in page["items"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert sorted(seen) == sorted(set(seen)) and set(colors) <= set(seen)
    page = client.get("/v1/products", headers=h(rd), params={"filter": "group=b"}).json()
    assert [p["id"] for p in page["items"]] == ["s-blue"]


def test_import_job_with_zip(api: tuple[TestClient, dict[str, str]]) -> None:
    client, keys = api
    rows = [("imp-1", (200, 0, 0)), ("imp-2", (0, 200, 0)), ("imp-3", None)]
    csv_buf = io.StringIO()
    writer = csv.writer(csv_buf)
    writer.writerow(["id", "title", "kind"])
    zbuf = io.BytesIO()
    with zipfile.ZipFile(zbuf, "w") as zf:
        for pid, color in rows:
            writer.writerow([pid, f"Item {pid}", "test"])
            zf.writestr(f"{pid}.jpg", photo(color) if color else b"not an image")
    r = client.post(
        "/v1/imports",
        headers=h(keys["write"]),
        data={"image_path": "{id}.jpg"},
        files={
            "csv": ("p.csv", csv_buf.getvalue().encode(), "text/csv"),
            "images": ("i.zip", zbuf.getvalue(), "application/zip"),
        },
    )
    assert r.status_code == 202, r.text
    job_id = r.json()["id"]
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        job = client.get(f"/v1/imports/{job_id}", headers=h(keys["read"])).json()
        if job["status"] in {"done", "failed"}:
            break
        time.sleep(0.2)
    assert job["status"] == "done", job
    assert job["imported"] == 2 and job["rejected"] == 1
    assert job["rejects"][0]["product_id"] == "imp-3"
    assert client.get("/v1/products/imp-1", headers=h(keys["read"])).status_code == 200
    assert client.get("/v1/imports/nope", headers=h(keys["read"])).status_code == 404
    r = client.post("/v1/imports", headers=h(keys["write"]), data={"csv_path": "x.csv"})
    assert r.status_code == 422 and "VITRINE_IMPORT_ROOT" in r.json()["detail"]


def test_rate_limit_and_body_limit(tmp_path: Path, model_dir: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / "models").symlink_to(model_dir, target_is_directory=True)
    settings = load_settings(env={}).with_overrides(
        home=home, api_rate_limit=1, api_rate_burst=2, max_request_bytes=1000
    )
    app = create_app(settings, warm=False)
    key = KeyService(app.state.runtime.engine).create("limited", "write")[1]
    with TestClient(app) as client:
        codes = [client.get("/v1/products", headers=h(key)).status_code for _ in range(3)]
        assert codes == [200, 200, 429]
        r = client.post(
            "/v1/analyze",
            headers=h(key),
            files={"image": ("a.jpg", photo((1, 1, 1)), "image/jpeg")},
        )
        assert r.status_code == 413 and "exceeds the limit" in r.json()["detail"]


def test_photos_referenced_by_blob_key(api: tuple[TestClient, dict[str, str]]) -> None:
    client, keys = api
    blobs = client.app.state.runtime.blobs  # type: ignore[attr-defined]
    data = photo((30, 140, 60))
    blobs.put("incoming/green shirt.jpg", data, "image/jpeg")
    r = client.post(
        "/v1/products",
        headers=h(keys["write"]),
        data={"id": "by-key", "image_keys": "incoming/green shirt.jpg"},
    )
    assert r.status_code == 201, r.text
    product = client.get("/v1/products/by-key", headers=h(keys["read"])).json()
    stored = client.app.state.runtime.store.get_product("by-key")  # type: ignore[attr-defined]
    assert stored["images"][0]["blob_key"] == "incoming/green shirt.jpg"  # not copied
    assert client.get(product["images"][0]["url"], headers=h(keys["read"])).content == data
    r = client.post(
        "/v1/search/image", headers=h(keys["read"]), data={"product_id": "by-key", "k": "1"}
    )
    assert r.status_code == 200
    for bad, status in (("incoming/none.jpg", 422), ("../etc/passwd", 422)):
        r = client.put("/v1/products/by-key", headers=h(keys["write"]), data={"image_keys": bad})
        assert r.status_code == status and bad in r.json()["detail"], r.text
    assert (
        client.post("/v1/products", headers=h(keys["write"]), data={"id": "x"}).status_code == 422
    )
