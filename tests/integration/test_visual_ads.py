"""Visual search ads on a small real catalog: campaigns kept through the API, ads for a
shared photo (searched whole: no localiser is trained here), a click and a purchase
attributed to their campaign and photo, and the catalog as a product feed."""

from __future__ import annotations

import csv
import hashlib
import io
import json
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from test_cli import small_catalog
from typer.testing import CliRunner

from vitrine.api.app import create_app
from vitrine.cli import app
from vitrine.config import load_settings

pytestmark = pytest.mark.integration


@pytest.fixture()
def home(tmp_path: Path, model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "home"
    (home / "models").mkdir(parents=True)
    for path in model_dir.glob("efficientnet-lite0-*.onnx"):
        (home / "models" / path.name).symlink_to(path)
    monkeypatch.setenv("VITRINE_HOME", str(home))
    monkeypatch.setenv("VITRINE_IMPORT_WORKERS", "0")
    return home


def _catalog(data_dir: Path, tmp_path: Path) -> tuple[dict[str, dict[str, str]], Path]:
    csv_path, images = small_catalog(data_dir, tmp_path, n=60)
    result = CliRunner().invoke(
        app, ["import-catalog", str(csv_path), "--images", str(images), "--no-progress"]
    )
    assert result.exit_code == 0, result.output
    with csv_path.open() as f:
        rows = {r["id"]: r for r in csv.DictReader(f)}
    return rows, images


def test_campaign_ads_attribution_and_feed(
    home: Path, data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rows, images = _catalog(data_dir, tmp_path)
    target = next(iter(rows))
    category = rows[target]["articleType"]
    same = {pid for pid, r in rows.items() if r["articleType"] == category}
    photo = (images / f"{target}.jpg").read_bytes()

    with TestClient(create_app(load_settings(), warm=False)) as client:
        key = client.app.state.keys.create("t", "admin")[1]  # type: ignore[attr-defined]
        h = {"X-API-Key": key}
        assert client.patch(f"/v1/products/{target}", json={"price": 25.5}, headers=h).is_success

        body = {"name": "summer-look", "categories": [category], "max_per_object": 3}
        r = client.post("/v1/ads/campaigns", json=body, headers=h)
        assert r.status_code == 201, r.text
        assert r.json()["active"] and r.json()["category_field"] == "articleType"
        assert client.post("/v1/ads/campaigns", json=body, headers=h).status_code == 409
        bad = {"name": "x", "min_price": 10, "max_price": 5}
        r = client.post("/v1/ads/campaigns", json=bad, headers=h)
        assert r.status_code == 422 and "min_price" in r.json()["detail"]
        r = client.post("/v1/ads/campaigns", json={"name": "x", "max_per_object": True}, headers=h)
        assert r.status_code == 422

        files = {"image": ("post.jpg", photo, "image/jpeg")}
        r = client.post("/v1/ads/match", files=files, data={"campaign": "nope"}, headers=h)
        assert r.status_code == 404 and "nope" in r.json()["detail"]
        r = client.patch("/v1/ads/campaigns/summer-look", json={"active": False}, headers=h)
        assert r.status_code == 200 and not r.json()["active"]
        r = client.post("/v1/ads/match", files=files, data={"campaign": "summer-look"}, headers=h)
        assert r.status_code == 409 and "paused" in r.json()["detail"]
        client.patch("/v1/ads/campaigns/summer-look", json={"active": True}, headers=h)

        data = {"campaign": "summer-look", "source": "https://social.example/p/1"}
        r = client.post("/v1/ads/match", files=files, data=data, headers=h)
        assert r.status_code == 200, r.text
        match = r.json()
        assert match["source"] == hashlib.sha256(photo).hexdigest() and not match["localized"]
        ads = match["objects"][0]["ads"]
        assert 1 <= len(ads) <= 3 and {a["product_id"] for a in ads} <= same
        assert ads[0]["product_id"] == target and ads[0]["price"] == 25.5
        assert ads[0]["link"] is None  # no link pattern configured
        assert len({a["ad_id"] for a in ads}) == len(ads)

        ad = ads[0]["ad_id"]
        events = [
            {"user_id": "u1", "product_id": target, "type": "view"},
            {"user_id": "u1", "product_id": target, "type": "click", "ad_id": ad},
            {"user_id": "u1", "product_id": target, "type": "purchase", "ad_id": ad,
             "price": 25.5},
        ]  # fmt: skip
        r = client.post("/v1/events", json=events, headers=h)
        assert r.status_code == 200 and r.json()["accepted"] == 3, r.text
        r = client.get("/v1/ads/analytics", headers=h)
        assert r.status_code == 200, r.text
        stats = r.json()
        [campaign] = stats["campaigns"]
        assert campaign["campaign"] == "summer-look"
        assert campaign["impressions"] == len(ads)
        assert (campaign["clicks"], campaign["carts"], campaign["purchases"]) == (1, 0, 1)
        assert campaign["revenue"] == 25.5 and campaign["ctr"] == round(1 / len(ads), 6)
        [source] = stats["sources"]
        assert source["source"] == match["source"] and source["purchases"] == 1
        assert source["label"] == "https://social.example/p/1"
        r = client.get("/v1/ads/analytics", params={"campaign": "nope"}, headers=h)
        assert r.status_code == 404

        r = client.get("/v1/feed", headers=h)
        assert r.status_code == 409 and "VITRINE_PRODUCT_LINK_PATTERN" in r.json()["detail"]
        assert client.get(f"/images/{target}.jpg").status_code == 404  # off by default

        assert client.delete("/v1/ads/campaigns/summer-look", headers=h).status_code == 204
        assert client.get("/v1/ads/campaigns/summer-look", headers=h).status_code == 404
        after = client.get("/v1/ads/analytics", headers=h).json()
        assert after["campaigns"][0]["purchases"] == 1  # past ads keep their analytics

    monkeypatch.setenv("VITRINE_PRODUCT_LINK_PATTERN", "https://shop.example/p/{id}")
    monkeypatch.setenv("VITRINE_PUBLIC_IMAGES", "true")
    monkeypatch.setenv("VITRINE_PUBLIC_URL", "https://vitrine.shop.example")
    with TestClient(create_app(load_settings(), warm=False)) as client:
        key = client.app.state.keys.create("r", "read")[1]  # type: ignore[attr-defined]
        h = {"X-API-Key": key}
        r = client.get("/v1/feed", headers=h)
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
        feed = list(csv.DictReader(io.StringIO(r.text)))
        assert len(feed) == len(rows)
        row = next(f for f in feed if f["id"] == target)
        assert row["link"] == f"https://shop.example/p/{target}"
        assert row["image_link"] == f"https://vitrine.shop.example/images/{target}.jpg"
        assert row["price"] == "25.50 EUR" and row["availability"] == "in_stock"
        assert row["category"].endswith(f" > {category}") and row["title"]
        r = client.get("/v1/feed", params={"format": "json"}, headers=h)
        products = json.loads(r.text)["products"]
        assert len(products) == len(rows) and products[0].keys() == feed[0].keys()
        r = client.get(f"/images/{target}.jpg")  # no key
        assert r.status_code == 200 and r.content[:2] == b"\xff\xd8"
        assert client.get("/images/not-a-product.jpg").status_code == 404


def test_campaigns_on_the_command_line(home: Path, data_dir: Path, tmp_path: Path) -> None:
    rows, images = _catalog(data_dir, tmp_path)
    target = next(iter(rows))
    cli = CliRunner()

    def run(*args: str) -> Any:
        result = cli.invoke(app, ["ads", *args])
        assert result.exit_code == 0, result.output
        return json.loads(result.output)

    created = run("create", "look", "--per-object", "3")
    assert created["name"] == "look" and created["active"]
    again = cli.invoke(app, ["ads", "create", "look"])
    assert again.exit_code != 0 and "look" in again.output  # the service's own message
    assert run("edit", "look", "--pause")["active"] is False
    photo = str(images / f"{target}.jpg")
    paused = cli.invoke(app, ["ads", "match", photo, "--campaign", "look"])
    assert paused.exit_code != 0 and "paused" in paused.output
    run("edit", "look", "--resume")
    match = run("match", photo, "--campaign", "look")
    assert match["objects"] and len(match["objects"][0]["ads"]) <= 3
    listed = run("list")
    assert [c["name"] for c in listed] == ["look"] and listed[0]["impressions"] >= 1
    assert "campaigns" in run("analytics")
    cli.invoke(app, ["ads", "delete", "look"])
    assert run("list") == []
