"""The recommendation routes through FastAPI's test client: auth, errors, real time."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from fastapi.testclient import TestClient
from recommend_synth import CATEGORIES

from vitrine.accounts.keys import KeyService
from vitrine.api.app import create_app
from vitrine.catalog.store import FeatureRecord, ImageRecord, ProductRecord
from vitrine.config import load_settings


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TestClient, dict[str, str]]]:
    home = tmp_path_factory.mktemp("home")
    settings = load_settings(env={}).with_overrides(
        home=home, api_rate_limit=0, recommend_retrain_minutes=0
    )
    app = create_app(settings, warm=False)
    vitrine = app.state.runtime
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(3, 16)) * 3
    for c, cat in enumerate(CATEGORIES):
        for j in range(8):
            pid = f"{cat[0]}{j}"
            vitrine.store.save_product(
                ProductRecord(pid, f"{cat} {j}", price=5.0 + j, attributes={"category": cat}),
                [
                    ImageRecord(
                        pid,
                        f"h{pid}",
                        f"k{pid}",
                        "jpeg",
                        9,
                        9,
                        9,
                        features=[
                            FeatureRecord("embedding", "m", vector=centres[c] + rng.normal(size=16))
                        ],
                    )
                ],
                replace_images=True,
            )
    keys = KeyService(vitrine.engine)
    tokens = {s: keys.create(f"t-{s}", s)[1] for s in ("read", "write", "admin")}
    t0 = datetime(2024, 1, 1, tzinfo=UTC)
    events = [
        {
            "user_id": f"u{u}",
            "product_id": f"{CATEGORIES[u % 3][0]}{(u + j) % 8}",
            "type": "purchase",
            "timestamp": (t0 + timedelta(days=u + j)).isoformat(),
        }
        for u in range(30)
        for j in range(3)
    ]
    with TestClient(app) as client:
        r = client.post("/v1/events", json={"events": events}, headers=h(tokens["write"]))
        assert r.status_code == 200 and r.json()["accepted"] == 90
        client.post("/v1/recommendations/train", headers={"X-API-Key": tokens["admin"]})
        for _ in range(1800):  # training runs in a child process: slow on a busy machine
            status = client.get(
                "/v1/recommendations/status", headers={"X-API-Key": tokens["read"]}
            ).json()
            if status["ready"] and status["events"] == 90:
                break
            time.sleep(0.1)
        yield client, tokens


def h(key: str) -> dict[str, str]:
    return {"X-API-Key": key}


def test_auth_and_scopes(api: tuple[TestClient, dict[str, str]]) -> None:
    client, keys = api
    r = client.get("/v1/users/u1/recommendations")
    assert r.status_code == 401 and r.headers["content-type"] == "application/problem+json"
    r = client.post(
        "/v1/events",
        json={"user_id": "u", "product_id": "D1", "type": "view"},
        headers=h(keys["read"]),
    )
    assert r.status_code == 403
    r = client.put("/v1/strategies/x", json={"algorithm": "als"}, headers=h(keys["write"]))
    assert r.status_code == 403


def test_events_validation_and_idempotency(api: tuple[TestClient, dict[str, str]]) -> None:
    client, keys = api
    one = {"user_id": "z", "product_id": "D1", "type": "view", "event_id": "ev-1"}
    assert client.post("/v1/events", json=one, headers=h(keys["write"])).json() == {
        "accepted": 1,
        "duplicates": 0,
    }
    assert client.post("/v1/events", json=[one], headers=h(keys["write"])).json() == {
        "accepted": 0,
        "duplicates": 1,
    }
    r = client.post(
        "/v1/events",
        json={"user_id": "z", "product_id": "D1", "type": "zap"},
        headers=h(keys["write"]),
    )
    assert r.status_code == 422 and "unknown event type 'zap'" in r.json()["detail"]
    r = client.post("/v1/events", json={"user_id": "z", "type": "view"}, headers=h(keys["write"]))
    assert r.status_code == 422 and "product_id" in r.json()["detail"]
    # a product missing from the catalog is kept (it tells about the customer)
    r = client.post(
        "/v1/events",
        json={"user_id": "z", "product_id": "elsewhere", "type": "view"},
        headers=h(keys["write"]),
    )
    assert r.json()["accepted"] == 1


def test_user_recommendations_update_in_real_time(api: tuple[TestClient, dict[str, str]]) -> None:
    client, keys = api
    r = client.get("/v1/users/u0/recommendations?k=4", headers=h(keys["read"]))
    assert r.status_code == 200, r.text
    body = r.json()
    assert len(body["items"]) == 4 and body["recommendation_id"]
    assert all(i["explanation"]["text"] for i in body["items"])
    url = "/v1/users/fresh/recommendations?k=4&strategy=visual"
    assert client.get(url, headers=h(keys["read"])).json()["fallback_used"]
    client.post(
        "/v1/events",
        headers=h(keys["write"]),
        json=[{"user_id": "fresh", "product_id": f"S{j}", "type": "add_to_cart"} for j in range(3)],
    )
    items = client.get(url, headers=h(keys["read"])).json()["items"]
    assert sum(i["product_id"].startswith("S") for i in items) >= 3
    r = client.get("/v1/users/u0/recommendations?strategy=nope", headers=h(keys["read"]))
    assert r.status_code == 404 and "unknown strategy" in r.json()["detail"]
    r = client.get("/v1/users/u0/recommendations?filter=category", headers=h(keys["read"]))
    assert r.status_code == 422
    r = client.get("/v1/users/u0/recommendations?k=0", headers=h(keys["read"]))
    assert r.status_code == 422
    r = client.get("/v1/users/u0/recommendations?filter=category=Bag", headers=h(keys["read"]))
    assert all(i["product_id"].startswith("B") for i in r.json()["items"])


def test_product_session_and_trending_routes(api: tuple[TestClient, dict[str, str]]) -> None:
    client, keys = api
    r = client.post(
        "/v1/sessions/recommendations",
        headers=h(keys["read"]),
        json={"product_ids": ["B1", "B2"], "k": 3, "strategy": "visual"},
    )
    assert r.status_code == 200 and len(r.json()["items"]) == 3
    r = client.get("/v1/products/D1/complementary?k=3", headers=h(keys["read"]))
    assert r.status_code == 200
    assert all(not i["product_id"].startswith("D") for i in r.json()["items"])
    r = client.get("/v1/products/nope/complementary", headers=h(keys["read"]))
    assert r.status_code == 404
    url = "/v1/products/S1/similar/weighted?k=3&weights=embedding=1"
    r = client.get(url, headers=h(keys["read"]))
    assert r.status_code == 200 and all(i["product_id"].startswith("S") for i in r.json()["items"])
    r = client.get("/v1/products/S1/similar/weighted?weights=smell=1", headers=h(keys["read"]))
    assert r.status_code == 422
    r = client.get("/v1/trending?category=Shoes&k=2", headers=h(keys["read"]))
    assert r.status_code == 200 and all(i["product_id"].startswith("S") for i in r.json()["items"])
    assert client.get("/v1/trending?category=Hats", headers=h(keys["read"])).status_code == 404


def test_strategies_crud_preview_and_stats(api: tuple[TestClient, dict[str, str]]) -> None:
    client, keys = api
    names = [s["name"] for s in client.get("/v1/strategies", headers=h(keys["read"])).json()]
    assert {"default", "hybrid", "als", "visual", "similar", "trending"} <= set(names)
    body = {"algorithm": "visual_profile", "rules": {"max_per_category": 1}}
    r = client.put("/v1/strategies/one-each", json=body, headers=h(keys["admin"]))
    assert r.status_code == 200, r.text
    r = client.get("/v1/users/u1/recommendations?k=3&strategy=one-each", headers=h(keys["read"]))
    assert len({i["product_id"][0] for i in r.json()["items"]}) == len(r.json()["items"])
    bad = client.put("/v1/strategies/x", json={"algorithm": "magic"}, headers=h(keys["admin"]))
    assert bad.status_code == 422 and "unknown algorithm" in bad.json()["detail"]
    bad = client.put("/v1/strategies/x", json={"rules": {"diversity": 3}}, headers=h(keys["admin"]))
    assert bad.status_code == 422 and "diversity" in bad.json()["detail"]
    r = client.post(
        "/v1/strategies/draft/preview?user_id=u1&k=2",
        headers=h(keys["admin"]),
        json={"algorithm": "als"},
    )
    assert r.status_code == 200 and len(r.json()["items"]) == 2
    assert client.delete("/v1/strategies/one-each", headers=h(keys["admin"])).status_code == 204
    assert client.delete("/v1/strategies/one-each", headers=h(keys["admin"])).status_code == 404
    assert client.delete("/v1/strategies/default", headers=h(keys["admin"])).status_code == 409
    url = "/v1/users/u2/recommendations?k=2&strategy=als"
    rec = client.get(url, headers=h(keys["read"])).json()
    client.post(
        "/v1/events",
        headers=h(keys["write"]),
        json={
            "user_id": "u2",
            "product_id": rec["items"][0]["product_id"],
            "type": "click",
            "recommendation_id": rec["recommendation_id"],
            "strategy": "als",
        },
    )
    stats = client.get("/v1/recommendations/stats", headers=h(keys["admin"])).json()
    als = next(s for s in stats if s["strategy"] == "als")
    assert als["served"] >= 1 and als["events"]["click"] == 1 and als["ctr"] > 0
