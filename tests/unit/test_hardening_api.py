"""Hardening of the HTTP API: bad input is a 4xx problem naming the field, never a 500.

Nulls for non-nullable fields, ids beyond int64, absurd event times, non-finite numbers,
and one status per kind of bad image on every upload route. The app runs without its
lifespan (no training, no CNN): the routes under test refuse before either is needed.
"""

from __future__ import annotations

import io
import re
import zipfile
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from image_bytes import png_claiming
from vitrine.accounts.keys import KeyService
from vitrine.api.app import create_app
from vitrine.catalog.store import FeatureRecord, ImageRecord, ProductRecord
from vitrine.config import load_settings

PASSWORD = "correct horse battery"
BIG = 165226113688522424320  # beyond int64


class _NoSearch:
    """The index, without the CNN: the bad-input paths never reach it."""

    typical_aspect = SimpleNamespace(value=None)

    def __len__(self) -> int:
        return 0

    def upsert(self, *args: Any, **kwargs: Any) -> None:
        pass

    def remove(self, ids: Any) -> None:
        pass


class _NoCNN:
    def analyze(self, prepared: Any) -> Any:
        raise AssertionError("the CNN must not run for a refused upload")


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TestClient, dict[str, str]]]:
    home = tmp_path_factory.mktemp("home")
    settings = load_settings(env={}).with_overrides(
        home=home, api_rate_limit=0, recommend_retrain_minutes=0, max_image_bytes=200_000
    )
    app = create_app(settings, warm=False)
    vitrine = app.state.runtime
    vitrine.override(search=_NoSearch(), batcher=_NoCNN())
    rng = np.random.default_rng(0)
    for pid in ("p1", "p2"):
        vitrine.store.save_product(
            ProductRecord(pid, f"title {pid}", price=5.0, attributes={"colour": "red"}),
            [
                ImageRecord(
                    pid,
                    f"h{pid}",
                    f"k{pid}",
                    "jpeg",
                    9,
                    9,
                    9,
                    features=[FeatureRecord("embedding", "m", vector=rng.normal(size=8))],
                )
            ],
            replace_images=True,
        )
    keys = KeyService(vitrine.engine)
    tokens = {s: keys.create(f"t-{s}", s)[1] for s in ("read", "write", "admin")}
    app.state.admin.users.create("alice", PASSWORD, "admin")
    yield TestClient(app), tokens  # no lifespan: nothing trains in the background


def h(key: str) -> dict[str, str]:
    return {"X-API-Key": key}


def problem(r: Any, status: int, *words: str) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/problem+json", r.text
    body = r.json()
    for word in words:
        assert word in body["detail"], body
    assert "/tmp" not in r.text and "/work" not in r.text  # no server paths
    return body


# -- 1. nulls for non-nullable product fields -------------------------------------------------


def test_patch_null_for_a_non_nullable_field_is_422_naming_it(shop: Any) -> None:
    client, keys = shop
    for field in ("available", "attributes"):
        r = client.patch("/v1/products/p1", json={field: None}, headers=h(keys["write"]))
        problem(r, 422, field)
    r = client.patch(
        "/v1/products/p1", json={"title": None, "price": None}, headers=h(keys["write"])
    )
    assert r.status_code == 200, r.text  # nullable columns: null clears them
    assert r.json()["title"] is None and r.json()["price"] is None
    assert r.json()["available"] is True and r.json()["attributes"] == {"colour": "red"}
    r = client.patch(
        "/v1/products/p1", json={"attributes": {"colour": None}}, headers=h(keys["write"])
    )
    assert r.status_code == 200 and r.json()["attributes"] == {}  # a null key removes it
    r = client.patch("/v1/products/p1", json={"title": "x" * 513}, headers=h(keys["write"]))
    problem(r, 422, "title")


# -- 2. integer path parameters beyond int64 --------------------------------------------------


def test_ids_beyond_int64_are_422_not_500(shop: Any) -> None:
    client, keys = shop
    r = client.get(f"/v1/models/{BIG}", headers=h(keys["read"]))
    problem(r, 422, "model_id")
    r = client.post(f"/v1/models/{BIG}/activate", headers=h(keys["admin"]))
    problem(r, 422, "model_id")
    r = client.get(f"/v1/models/{2**63 - 1}", headers=h(keys["read"]))
    problem(r, 404)
    r = client.get(f"/v1/products/p1/images/{BIG}", headers=h(keys["read"]))
    problem(r, 422, "image_id")
    r = client.get("/v1/products/p1/images/0", headers=h(keys["read"]))
    problem(r, 422, "image_id")


# -- 3. absurd event timestamps ---------------------------------------------------------------


def test_event_times_outside_1970_to_tomorrow_are_refused_naming_the_event(shop: Any) -> None:
    client, keys = shop
    ok = {"user_id": "u1", "product_id": "p1", "type": "view"}
    for ts, words in [
        ("0001-01-01T00:00:00", ("event 1", "0001-01-01T00:00:00", "before 1970-01-01")),
        ("9999-12-31T23:59:59Z", ("event 1", "9999-12-31", "future")),
        ("1969-12-31T23:59:59", ("event 1", "before 1970-01-01")),
        ("0001-01-01T00:00:00+01:00", ("event 1", "before 1970-01-01")),
        ("9999-12-31T23:59:59-05:00", ("event 1", "future")),
    ]:
        r = client.post("/v1/events", json=[ok, {**ok, "timestamp": ts}], headers=h(keys["write"]))
        problem(r, 422, *words)
    r = client.post(
        "/v1/events", json={**ok, "timestamp": "1970-01-01T00:00:00Z"}, headers=h(keys["write"])
    )
    assert r.status_code == 200 and r.json()["accepted"] == 1, r.text


# -- 4. non-finite numbers --------------------------------------------------------------------


def _photo() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (64, 64), (200, 0, 0)).save(buf, format="PNG")
    return buf.getvalue()


@pytest.mark.parametrize("value", ["nan", "NaN", "inf", "-inf", "Infinity", "1e400"])
def test_non_finite_product_prices_are_refused(shop: Any, value: str) -> None:
    client, keys = shop
    files = [("images", ("a.png", _photo(), "image/png"))]
    r = client.post(
        "/v1/products", data={"id": "nanny", "price": value}, files=files, headers=h(keys["write"])
    )
    problem(r, 422, "price")
    r = client.put(
        "/v1/products/nanny", data={"price": value}, files=files, headers=h(keys["write"])
    )
    problem(r, 422, "price")


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/v1/models/train", {"fields": ["articleType"], "min_support": True}, "min_support"),
        ("/v1/cnn/finetune", {"fields": ["articleType"], "epochs": True}, "epochs"),
        ("/v1/cnn/finetune", {"fields": ["articleType"], "budget_minutes": False}, "budget"),
        ("/v1/sessions/recommendations", {"product_ids": ["p1"], "k": True}, "k"),
        (
            "/v1/events",
            {"user_id": "u", "product_id": "p1", "type": "view", "price": True},
            "price",
        ),
        ("/v1/recommendations/evaluations", {"split": "2026-01-01", "k": True}, "k"),
    ],
)
def test_a_boolean_is_not_a_number(shop: Any, path: str, body: dict[str, Any], field: str) -> None:
    """JSON true is not the integer 1 (pydantic's lax mode would read it so); 5.0 is 5."""
    client, keys = shop
    r = client.post(path, json=body, headers=h(keys["admin"]))
    problem(r, 422, field)
    whole = {k: 2.0 if v is True or v is False else v for k, v in body.items()}
    assert client.post(path, json=whole, headers=h(keys["admin"])).status_code != 422


def test_non_finite_numbers_in_json_are_refused(shop: Any) -> None:
    client, keys = shop
    body = '{"price": 1e400}'
    r = client.patch(
        "/v1/products/p2",
        content=body,
        headers={**h(keys["write"]), "content-type": "application/json"},
    )
    problem(r, 422, "price")
    event = '{"user_id": "u", "product_id": "p1", "type": "view", "price": 1e400}'
    r = client.post(
        "/v1/events",
        content=event,
        headers={**h(keys["write"]), "content-type": "application/json"},
    )
    problem(r, 422, "price")
    for field, value in [
        ("weights", '{"color": 1e400}'),
        ("variants", '{"x": -1e400}'),
        ("params", '{"label_days": 1e400}'),
        ("rules", '{"price_max": 1e400}'),
    ]:
        body = f'{{"algorithm": "hybrid", "{field}": {value}}}'
        for path in ("/v1/strategies/s1", "/v1/strategies/s1/preview?user_id=u"):
            method = client.put if path == "/v1/strategies/s1" else client.post
            r = method(
                path, content=body, headers={**h(keys["admin"]), "content-type": "application/json"}
            )
            problem(r, 422, field)
    for value in ("nan", "inf", "-inf"):
        r = client.post(
            "/v1/search/image",
            data={"product_id": "p1", "min_score": value},
            headers=h(keys["read"]),
        )
        problem(r, 422, "min_score")
        r = client.get(
            "/v1/products/p1/similar", params={"min_score": value}, headers=h(keys["read"])
        )
        problem(r, 422, "min_score")


# -- 5. one status per kind of bad image, on every upload route -------------------------------


def _zip() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as archive:
        archive.writestr("a.txt", "hello")
    return buf.getvalue()


def _truncated_jpeg() -> bytes:
    rng = np.random.default_rng(1)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (200, 200, 3), np.uint8)).save(buf, format="JPEG")
    data = buf.getvalue()
    return data[: len(data) // 2]


BAD_IMAGES = {
    "pdf": (b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\n%%EOF\n", 415),
    "zip": (_zip(), 415),
    "html": (b"<!DOCTYPE html><html><body>hi</body></html>", 415),
    "bomb": (png_claiming(100_000, 100_000), 413),
    "oversize": (b"\xff\xd8\xff" + b"\x00" * 200_001, 413),
    "truncated": (_truncated_jpeg(), 422),
}


def _admin_csrf(client: TestClient) -> dict[str, str]:
    page = client.get("/admin/login")
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)  # type: ignore[union-attr]
    client.post(
        "/admin/login",
        data={"username": "alice", "password": PASSWORD, "csrf_token": token},
        follow_redirects=False,  # the overview page needs the real index
    )
    page = client.get("/admin/upload")
    match = re.search(r'name="csrf-token" content="([^"]+)"', page.text)
    assert match is not None, page.text[:500]
    return {"X-CSRF-Token": match.group(1)}


@pytest.mark.parametrize("kind", list(BAD_IMAGES))
def test_every_upload_route_gives_one_status_per_bad_image(shop: Any, kind: str) -> None:
    client, keys = shop
    data, status = BAD_IMAGES[kind]
    name = f"photo-{kind}.jpg"
    r = client.post(
        "/v1/search/image", files={"image": (name, data, "image/jpeg")}, headers=h(keys["read"])
    )
    problem(r, status, name)
    r = client.post(
        "/v1/analyze", files={"image": (name, data, "image/jpeg")}, headers=h(keys["read"])
    )
    problem(r, status, name)
    files = [("images", (name, data, "image/jpeg"))]
    r = client.post(
        "/v1/products", data={"id": f"bad-{kind}"}, files=files, headers=h(keys["write"])
    )
    problem(r, status, name)
    r = client.put(f"/v1/products/bad-{kind}", files=files, headers=h(keys["write"]))
    problem(r, status, name)
    admin = TestClient(client.app)
    csrf = _admin_csrf(admin)
    r = admin.post(
        "/admin/upload/product",
        data={"product_id": f"bad-{kind}"},
        files={"image": (name, data, "image/jpeg")},
        headers=csrf,
    )
    assert r.status_code == status, r.text
    r = admin.post("/admin/search", files={"image": (name, data, "image/jpeg")}, headers=csrf)
    assert r.status_code == status, r.text
    assert client.get(f"/v1/products/bad-{kind}", headers=h(keys["read"])).status_code == 404


def test_admin_upload_refuses_non_finite_prices(shop: Any) -> None:
    client, _ = shop
    admin = TestClient(client.app)
    csrf = _admin_csrf(admin)
    for value in ("nan", "inf", "-Infinity"):
        r = admin.post(
            "/admin/upload/product",
            data={"product_id": "adm", "price": value},
            files={"image": ("a.png", _photo(), "image/png")},
            headers=csrf,
        )
        assert r.status_code == 422 and "price" in r.text.lower(), r.text
