"""Storefront keys through FastAPI's test client: what they may call, from which origins,
within which limits; product cards and their signed photo addresses; CORS preflight."""

from __future__ import annotations

import io
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from vitrine.api.app import create_app
from vitrine.api.auth import RateLimiter
from vitrine.catalog.store import ImageRecord, ProductRecord
from vitrine.config import load_settings
from vitrine.storefront.demo import DemoShop

SHOP = "https://shop.example"


@dataclass
class Api:
    client: TestClient
    storefront: str  # a storefront key for SHOP
    admin: str
    read: str
    app: Any


def _jpeg(colour: tuple[int, int, int]) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (64, 80), colour).save(out, "JPEG")
    return out.getvalue()


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    settings = load_settings(env={}).with_overrides(
        home=tmp_path_factory.mktemp("home"),
        api_rate_limit=0,
        recommend_retrain_minutes=0,
        product_link_pattern="https://shop.example/p/{id}",
        feed_currency="EUR",
    )
    app = create_app(settings, warm=False)
    vitrine = app.state.runtime
    for n, pid in enumerate(["p1", "p/2", "p3"]):
        key = f"images/k{n}.jpg"
        vitrine.blobs.put(key, _jpeg((40 * n, 90, 160)))
        image = ImageRecord(pid, f"h{n}", key, "jpeg", 64, 80, 100)
        record = ProductRecord(pid, f"Shirt {n}", price=10.0 + n, available=n != 2)
        vitrine.store.save_product(record, [image] if n < 2 else [], replace_images=True)
    keys = app.state.keys
    with TestClient(app) as client:
        yield Api(
            client,
            keys.create("shop", "storefront", [SHOP + "/"])[1],
            keys.create("admin", "admin")[1],
            keys.create("reader", "read")[1],
            app,
        )


def h(key: str, origin: str | None = None) -> dict[str, str]:
    return {"X-API-Key": key, **({"Origin": origin} if origin else {})}


def test_cards_with_signed_photos(api: Api) -> None:
    r = api.client.get("/v1/cards?id=p3&id=p/2&id=nope&id=p3", headers=h(api.storefront, SHOP))
    assert r.status_code == 200, r.text
    cards = r.json()["cards"]
    assert [c["id"] for c in cards] == ["p3", "p/2"]
    assert cards[0] == {
        "id": "p3", "title": "Shirt 2", "price": 12.0, "currency": "EUR", "available": False,
        "image": None, "link": "https://shop.example/p/p3",
    }  # fmt: skip
    assert cards[1]["link"] == "https://shop.example/p/p%2F2"
    photo = cards[1]["image"]
    assert photo.startswith("http://testserver/images/p%2F2.jpg?exp=")
    # <img src> sends no key: the signed address answers, public images being off
    r = api.client.get(photo)
    assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg"
    assert Image.open(io.BytesIO(r.content)).size == (64, 80)
    assert api.client.get("/images/p%2F2.jpg").status_code == 404
    assert api.client.get(photo[:-1] + ("0" if photo[-1] != "0" else "1")).status_code == 404
    assert api.client.get(photo.replace("p%2F2", "p1")).status_code == 404  # another product
    stale = api.app.state.runtime.image_signer.path("p/2", now=time.time() - 3 * 86400)
    assert api.client.get(stale).status_code == 404
    forged = photo.split("&sig=")[0] + "&sig=%F3%A1%B6%AA%21"  # not ASCII: refused, no 500
    assert api.client.get(forged).status_code == 404
    # one address per hour: browsers and CDNs cache it
    signer = api.app.state.runtime.image_signer
    hour = (int(time.time()) // 3600) * 3600
    assert signer.path("p1", now=hour + 1) == signer.path("p1", now=hour + 3599)


def test_storefront_key_reaches_only_storefront_routes(api: Api) -> None:
    key = h(api.storefront)
    for method, path in [
        ("get", "/v1/strategies"),
        ("get", "/v1/feed"),
        ("get", "/v1/products"),
        ("get", "/v1/recommendations/stats"),
        ("post", "/v1/recommendations/train"),
        ("delete", "/v1/products/p1"),
    ]:
        r = getattr(api.client, method)(path, headers=key)
        assert r.status_code == 403, (path, r.text)
        assert r.json()["type"].endswith("insufficient-scope")
    # storefront routes: past authentication (the models are not trained: 503)
    assert api.client.get("/v1/trending", headers=key).status_code == 503
    assert api.client.get("/v1/users/u1/recommendations", headers=key).status_code == 503
    assert api.client.get("/v1/products/p1/complementary", headers=key).status_code == 503
    # a server key of the ladder still reads cards; none at all is refused
    assert api.client.get("/v1/cards?id=p1", headers=h(api.read)).status_code == 200
    assert api.client.get("/v1/cards?id=p1").status_code == 401


def test_origins_are_checked_per_key(api: Api) -> None:
    r = api.client.get("/v1/cards?id=p1", headers=h(api.storefront, SHOP))
    assert r.status_code == 200
    assert r.headers["access-control-allow-origin"] == SHOP
    assert "Origin" in r.headers["vary"]
    r = api.client.get("/v1/cards?id=p1", headers=h(api.storefront, "https://evil.example"))
    assert r.status_code == 403 and r.json()["type"].endswith("origin-not-allowed")
    assert "access-control-allow-origin" not in r.headers
    # the service's own pages (the demo shop) may use any storefront key
    own = api.client.get("/v1/cards?id=p1", headers=h(api.storefront, "http://testserver"))
    assert own.status_code == 200
    # a key of another shop, presented from this shop's pages
    other = api.app.state.keys.create("other", "storefront", ["https://other.example"])[1]
    r = api.client.get("/v1/cards?id=p1", headers=h(other, SHOP))
    assert r.status_code == 403
    # server keys are not tied to origins
    assert api.client.get("/v1/cards?id=p1", headers=h(api.read, SHOP)).status_code == 200


def test_preflight_for_the_origins_of_storefront_keys(api: Api) -> None:
    def preflight(origin: str, method: str = "GET") -> Any:
        return api.client.options(
            "/v1/cards",
            headers={
                "Origin": origin,
                "Access-Control-Request-Method": method,
                "Access-Control-Request-Headers": "x-api-key",
            },
        )

    r = preflight(SHOP)
    assert r.status_code == 200
    assert r.headers["access-control-allow-origin"] == SHOP
    assert "X-API-Key" in r.headers["access-control-allow-headers"]
    assert r.headers["access-control-allow-methods"] == "GET, POST"
    assert preflight(SHOP, "DELETE").status_code == 400
    assert preflight("https://evil.example").status_code == 400
    keys = api.app.state.keys
    keys.create("late", "storefront", ["https://late.example"])
    assert preflight("https://late.example").status_code == 200
    keys.revoke("late")
    assert preflight("https://late.example").status_code == 400


def test_events_from_pages_exclude_purchases(api: Api) -> None:
    click = {"user_id": "anon-1", "product_id": "p1", "type": "click", "recommendation_id": "r1"}
    r = api.client.post("/v1/events", json=click, headers=h(api.storefront, SHOP))
    assert r.status_code == 200 and r.json() == {"accepted": 1, "duplicates": 0}
    bought = [click, {**click, "type": "purchase"}]
    r = api.client.post("/v1/events", json=bought, headers=h(api.storefront, SHOP))
    assert r.status_code == 403 and "purchase" in r.json()["detail"]
    r = api.client.post("/v1/events", json=bought[1], headers=h(api.admin))
    assert r.status_code == 200  # the shop's server sends purchases


def test_rate_limits_per_key_and_per_address(api: Api) -> None:
    slow = api.app.state.keys.create("slow", "storefront", [SHOP], rate_limit=1)[1]
    codes = [api.client.get("/v1/cards?id=p1", headers=h(slow, SHOP)).status_code for _ in range(3)]
    assert codes == [200, 200, 429]  # a burst of twice the rate
    r = api.client.get("/v1/cards?id=p1", headers=h(slow, SHOP))
    assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1
    assert r.headers["access-control-allow-origin"] == SHOP  # the page can read the 429
    saved = api.app.state.client_limiter
    api.app.state.client_limiter = RateLimiter(rate=0.5, burst=1)
    try:
        first = api.client.get("/v1/cards?id=p1", headers=h(api.storefront, SHOP))
        second = api.client.get("/v1/cards?id=p1", headers=h(api.storefront, SHOP))
        assert (first.status_code, second.status_code) == (200, 429)
        assert "this address" in second.json()["detail"]
        # server keys are limited per key only
        assert api.client.get("/v1/cards?id=p1", headers=h(api.read)).status_code == 200
    finally:
        api.app.state.client_limiter = saved


def test_kit_is_served_and_the_demo_is_off(api: Api) -> None:
    r = api.client.get("/kit/v1/vitrine.js")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/javascript")
    assert r.headers["access-control-allow-origin"] == "*"
    assert "customElements.define" in r.text
    for module in ("core.js", "lists.js", "photo-search.js"):  # what vitrine.js imports
        assert f'"./{module}"' in r.text
        assert api.client.get(f"/kit/v1/{module}").status_code == 200
    assert api.client.get("/kit/v1/..%2Fdemo.js").status_code == 404
    assert api.client.get("/kit/v1/demo.js").status_code == 404
    assert api.client.get("/demo").status_code == 404
    assert api.client.get("/demo/static/demo.js").status_code == 404
    paths = api.client.get("/openapi.json").json()["paths"]
    assert "/v1/cards" in paths and "/demo" not in paths


def test_demo_without_a_key_says_how_to_make_one(tmp_path: Any) -> None:
    settings = load_settings(env={}).with_overrides(home=tmp_path, demo_storefront=True)
    page = DemoShop(settings).page("home")
    assert page is not None and page.status == 503
    assert "--scope storefront" in page.html
    keyed = DemoShop(settings.with_overrides(demo_storefront_key="vtr_ab_<cd>")).page(
        "product", product_id='x"><script>'
    )
    assert keyed is not None and keyed.status == 200
    assert 'data-key="vtr_ab_&lt;cd&gt;"' in keyed.html  # escaped, like the product id
    assert "<script>" not in keyed.html.split("<body", 1)[1]
    assert DemoShop(settings.with_overrides(demo_storefront=False)).page("home") is None
