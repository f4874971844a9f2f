"""Classification through the HTTP API: models, feedback, labels on arrival, analyze."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from vitrine.accounts.keys import KeyService
from vitrine.api.app import create_app
from vitrine.config import load_settings

pytestmark = pytest.mark.integration
COLORS = {"red": (200, 30, 40), "blue": (30, 60, 190)}


def photo(kind: str, seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    arr = np.full((160, 120, 3), 255, np.uint8)
    top, left = rng.integers(15, 40), rng.integers(10, 35)
    shade = np.clip(np.array(COLORS[kind]) + rng.integers(-25, 25, 3), 0, 255)
    arr[top : top + 100, left : left + 60] = shade
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory, model_dir: Path) -> Iterator[tuple]:
    home = tmp_path_factory.mktemp("home")
    (home / "models").symlink_to(model_dir, target_is_directory=True)
    settings = load_settings(env={}).with_overrides(
        home=home, api_rate_limit=0, import_workers=0, classify_retrain_after=0
    )
    app = create_app(settings)
    keys = KeyService(app.state.runtime.engine)
    tokens = {s: {"X-API-Key": keys.create(f"t-{s}", s)[1]} for s in ("read", "write", "admin")}
    with TestClient(app) as client:
        yield client, tokens, app


def upload(client: TestClient, headers: dict, pid: str, data: bytes, attributes: dict) -> dict:
    response = client.post(
        "/v1/products",
        headers=headers,
        data={"id": pid, "attributes": json.dumps(attributes)},
        files=[("images", (f"{pid}.jpg", data, "image/jpeg"))],
    )
    assert response.status_code == 201, response.text
    return response.json()


def test_models_feedback_and_labels_on_arrival(api: tuple) -> None:
    client, keys, app = api
    # Before any model: no categories, but colours and ImageNet tags.
    first = upload(client, keys["write"], "r0", photo("red", 0), {"kind": "red"})
    assert first["product"]["categories"] == {}
    assert first["product"]["tags"]["colors"]["primary"]
    assert first["product"]["tags"]["imagenet"]
    assert client.get("/v1/models", headers=keys["read"]).json() == {"models": []}

    for i in range(1, 16):
        upload(client, keys["write"], f"r{i}", photo("red", i), {"kind": "red"})
    for i in range(16):
        upload(client, keys["write"], f"b{i}", photo("blue", 100 + i), {"kind": "blue"})
    service = app.state.runtime.classification
    rows = service.train(["kind"], min_support=3, groups=["embedding", "color"])
    model = rows[0]
    assert model["active"] and model["field"] == "kind"

    # A new product without the field is labelled on arrival by the model.
    created = upload(client, keys["write"], "new-blue", photo("blue", 999), {})
    kind = created["product"]["categories"]["kind"]
    assert kind["value"] == "blue" and kind["source"] == "model"
    assert kind["model_version"] == model["version"] and 0 < kind["confidence"] <= 1
    got = client.get("/v1/products/new-blue", headers=keys["read"]).json()
    assert got["categories"]["kind"]["value"] == "blue"

    # The shop's own value wins over the model, which is still shown.
    shop = upload(client, keys["write"], "odd", photo("blue", 998), {"kind": "red"})
    odd = shop["product"]["categories"]["kind"]
    assert odd["value"] == "red" and odd["source"] == "human"
    assert odd["predicted"]["value"] == "blue"

    # Analyze includes predictions and tags.
    analysis = client.post(
        "/v1/analyze",
        headers=keys["read"],
        files={"image": ("q.jpg", photo("red", 555), "image/jpeg")},
    ).json()
    assert analysis["categories"]["kind"]["value"] == "red"
    assert analysis["tags"]["colors"]["shares"]

    # Models: list, detail, errors and scopes.
    listed = client.get("/v1/models", headers=keys["read"]).json()["models"]
    assert [m["version"] for m in listed] == ["kind-v1"]
    assert listed[0]["accuracy"] is not None
    detail = client.get(f"/v1/models/{model['id']}", headers=keys["read"]).json()
    for key in ("all", "review", "rare", "split", "feature_selection"):
        assert key in detail["metrics"]
    assert "per_class" in detail["metrics"]["all"]
    missing = client.get("/v1/models/999", headers=keys["read"])
    assert missing.status_code == 404
    assert missing.headers["content-type"].startswith("application/problem+json")
    url = f"/v1/models/{model['id']}/activate"
    assert client.post(url, headers=keys["write"]).status_code == 403
    assert client.post(url).status_code == 401
    assert client.post(url, headers=keys["admin"]).json()["active"] is True
    rollback = client.post("/v1/models/rollback?field=kind", headers=keys["admin"])
    assert rollback.status_code == 404 and "earlier" in rollback.json()["detail"]

    # Feedback: a correction wins at once.
    body = {"product_id": "new-blue", "field": "kind", "value": "red"}
    assert client.post("/v1/feedback", json=body, headers=keys["read"]).status_code == 403
    fb = client.post("/v1/feedback", json=body, headers=keys["write"])
    assert fb.status_code == 201, fb.text
    assert fb.json()["categories"]["kind"]["value"] == "red"
    assert fb.json()["categories"]["kind"]["corrected"] is True
    unknown = client.post(
        "/v1/feedback", json={**body, "product_id": "nope"}, headers=keys["write"]
    )
    assert unknown.status_code == 404
    bad = client.post("/v1/feedback", json={"product_id": "r1"}, headers=keys["write"])
    assert bad.status_code == 422
    assert (
        client.get("/v1/products/new-blue", headers=keys["read"]).json()["categories"]["kind"][
            "value"
        ]
        == "red"
    )


def test_titles_teach_a_field_the_photos_cannot_tell(api: tuple) -> None:
    client, keys, app = api
    for i in range(20):
        fit = "slim" if i % 2 else "regular"
        response = client.post(
            "/v1/products",
            headers=keys["write"],
            data={
                "id": f"fit{i}",
                "title": f"Brand{i % 3} {fit.title()} Fit Cotton Shirt",
                "attributes": json.dumps({"fit": fit}),
            },
            # One photo for every shirt: nothing in it tells the fits apart (random photos
            # of 20 products can separate 6 calibration rows by chance).
            files=[("images", (f"fit{i}.jpg", photo("red", 300), "image/jpeg"))],
        )
        assert response.status_code == 201, response.text
    rows = app.state.runtime.classification.train(["fit"], min_support=3)
    assert rows[0]["feature_groups"][-1] == "text", rows[0]["metrics"]["feature_selection"]

    created = client.post(
        "/v1/products",
        headers=keys["write"],
        data={"id": "fit-new", "title": "Linen Slim Fit Shirt"},
        files=[("images", ("n.jpg", photo("red", 400), "image/jpeg"))],
    )
    assert created.json()["product"]["categories"]["fit"]["value"] == "slim"
    for title, expected in (("Regular Fit Oxford Shirt", "regular"), ("Slim Fit Shirt", "slim")):
        analysis = client.post(
            "/v1/analyze",
            headers=keys["read"],
            data={"title": title},
            files={"image": ("q.jpg", photo("red", 401), "image/jpeg")},
        ).json()
        assert analysis["categories"]["fit"]["value"] == expected
