"""The demo storefront and the kit in Chromium: the widgets render lazily with real
catalog photos, a click on a recommendation reaches the service with its recommendation
id and strategy (and the product page's view and add-to-cart carry them on), the photo
search falls back to whole-photo search without a localiser and draws the products of a
scene when there is one, and a shop on another origin uses the kit through CORS with its
storefront key while an unlisted origin gets nothing. Screenshots go to
test-artifacts/storefront/."""

from __future__ import annotations

import io
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from admin_live import REPO, _rows, chromium, serving
from PIL import Image
from sqlalchemy import select

from vitrine.accounts.keys import KeyService
from vitrine.api.app import create_app
from vitrine.catalog.database import make_engine, migrate
from vitrine.catalog.models import Event
from vitrine.catalog.products import Upload
from vitrine.catalog.store import ProductRecord
from vitrine.config import load_settings

pytestmark = [pytest.mark.browser, pytest.mark.integration]
ARTIFACTS = REPO / "test-artifacts" / "storefront"
PRODUCTS = 24


@dataclass
class Shop:
    url: str
    admin: str  # an admin key, for the test's own checks
    storefront: str
    ids: list[str]
    titles: dict[str, str]
    types: dict[str, str]  # article types
    masters: dict[str, str]  # master categories (apparel, footwear, ...)
    photo: bytes  # a real photo of a product, for the photo search
    app: Any


def _events(ids: list[str], types: dict[str, str]) -> list[dict[str, Any]]:
    """Customers who buy a product of one type with one of another (complementary) and
    view look-alikes, over the last days."""
    by_type: dict[str, list[str]] = {}
    for pid in ids:
        by_type.setdefault(types[pid], []).append(pid)
    groups = list(by_type.values())
    now = time.time()
    events = []
    for user in range(12):
        first = groups[user % len(groups)]
        second = groups[(user + 1) % len(groups)]
        picks = [first[user % len(first)], second[user % len(second)], first[0]]
        for step, pid in enumerate(picks):
            stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now - 3600 * (user + step)))
            kind = "purchase" if step < 2 else "view"
            events.append({"user_id": f"u{user}", "product_id": pid, "type": kind,
                           "timestamp": stamp})  # fmt: skip
    return events


@pytest.fixture(scope="module")
def shop(
    tmp_path_factory: pytest.TempPathFactory, model_dir: Path, data_dir: Path
) -> Iterator[Shop]:
    home = tmp_path_factory.mktemp("storefront-home")
    (home / "models").mkdir()
    for path in model_dir.glob("efficientnet-lite0-*.onnx"):  # the CNN, nothing written back
        (home / "models" / path.name).symlink_to(path)
    base = load_settings(env={}).with_overrides(
        home=home, import_workers=0, admin_recall_check_minutes=0, recommend_retrain_minutes=0
    )
    # The shop's admin creates the storefront key first, as with `vitrine keys create`.
    engine = make_engine(base.resolved_database_url)
    migrate(engine)
    storefront = KeyService(engine).create("demo", "storefront")[1]  # the demo's own origin
    engine.dispose()
    settings = base.with_overrides(demo_storefront=True, demo_storefront_key=storefront)
    app = create_app(settings)
    vitrine = app.state.runtime
    rows = _rows(data_dir, PRODUCTS + 1)
    titles, types, masters = {}, {}, {}
    for n, row in enumerate(rows[:PRODUCTS]):
        data = (data_dir / "fashion-small" / "images" / f"{row['id']}.jpg").read_bytes()
        record = ProductRecord(
            id=row["id"], title=row["productDisplayName"], price=19.0 + n,
            attributes={k: row[k] for k in ("masterCategory", "articleType", "baseColour")},
        )  # fmt: skip
        vitrine.products.save(record, [Upload(data, f"{row['id']}.jpg")], replace=False)
        titles[row["id"]] = row["productDisplayName"]
        types[row["id"]] = row["articleType"]
        masters[row["id"]] = row["masterCategory"]
    spare = (data_dir / "fashion-small" / "images" / f"{rows[PRODUCTS]['id']}.jpg").read_bytes()
    admin = app.state.keys.create("test-admin", "admin")[1]
    ids = list(titles)
    with serving(app) as url:
        with httpx.Client(base_url=url, headers={"X-API-Key": admin}, timeout=60) as client:
            r = client.post("/v1/events", json={"events": _events(ids, types)})
            assert r.status_code == 200, r.text
            assert client.post("/v1/recommendations/train").status_code == 202
            deadline = time.monotonic() + 300
            while not client.get("/v1/recommendations/status").json().get("ready"):
                assert time.monotonic() < deadline, "the recommendation models did not train"
                time.sleep(0.5)
        yield Shop(url, admin, storefront, ids, titles, types, masters, spare, app)


@pytest.fixture(scope="module")
def browser(shop: Shop) -> Iterator[Any]:
    with chromium() as browser:
        yield browser


@dataclass
class Shopper:
    """A tab with no sign-in, recording console errors and the events the kit sends."""

    page: Any
    errors: list[str]
    events: list[dict[str, Any]]
    calls: list[str]  # "METHOD path?query" of every API call

    def shot(self, name: str, full: bool = True) -> None:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        self.page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=full)

    def wait_events(self, n: int) -> None:
        deadline = time.monotonic() + 15
        while len(self.events) < n:
            assert time.monotonic() < deadline, f"events seen: {self.events}"
            self.page.wait_for_timeout(100)


@pytest.fixture()
def tab(browser: Any, shop: Shop) -> Iterator[Shopper]:
    context = browser.new_context(viewport={"width": 1280, "height": 720})
    page = context.new_page()
    page.set_default_timeout(30_000)
    t = Shopper(page, [], [], [])
    page.on("console", lambda m: t.errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: t.errors.append(str(e)))

    def seen(request: Any) -> None:
        path = request.url.split("://", 1)[1].split("/", 1)[1]
        if path.startswith(("v1/", "images/")):
            t.calls.append(f"{request.method} /{path}")
        if request.method == "POST" and path == "v1/events":
            t.events.append(json.loads(request.post_data))

    page.on("request", seen)
    page.on(
        "response",
        lambda r: t.errors.append(f"{r.status} {r.url}") if r.status >= 400 else None,
    )
    yield t
    context.close()


def _event_rows(shop: Shop, recommendation_id: str) -> list[tuple[str, str, str | None]]:
    with shop.app.state.runtime.engine.connect() as conn:
        query = select(Event.type, Event.product_id, Event.strategy).where(
            Event.recommendation_id == recommendation_id
        )
        return sorted((t, p, s) for t, p, s in conn.execute(query))


def test_home_recommendations_click_is_attributed(tab: Shopper, shop: Shop) -> None:
    page = tab.page
    page.set_viewport_size({"width": 1280, "height": 600})
    page.goto(shop.url + "/demo")
    cards = page.locator("vitrine-recommendations li a")
    cards.first.wait_for()
    assert cards.count() == 8
    first = cards.first
    pid = first.get_attribute("data-product-id")
    assert pid in shop.titles
    image = first.locator("img")
    assert image.get_attribute("alt") == shop.titles[pid]
    image.scroll_into_view_if_needed()
    page.wait_for_function(
        "img => img.complete && img.naturalWidth > 0", arg=image.element_handle()
    )
    assert "/images/" in (image.get_attribute("src") or "") and "sig=" in image.get_attribute("src")
    # the trending list is below the fold: nothing is asked for it until it scrolls near
    assert not any("/v1/trending" in c for c in tab.calls), (tab.calls, tab.errors)
    tab.shot("home", full=False)
    page.locator("vitrine-trending").scroll_into_view_if_needed()
    page.locator("vitrine-trending li a").first.wait_for()
    assert any(c.startswith("GET /v1/trending?k=8") for c in tab.calls)
    tab.shot("home-full")
    rec = page.locator("vitrine-recommendations")
    recommendation_id = rec.get_attribute("data-recommendation-id")
    strategy = rec.get_attribute("data-strategy")
    assert recommendation_id and strategy
    # keyboard: focus the card and press Enter; the kit sends the click on its own
    first.focus()
    page.keyboard.press("Enter")
    page.wait_for_url(f"{shop.url}/demo/products/{pid}")
    page.locator("#product h1").wait_for()
    assert page.locator("#product h1").inner_text() == shop.titles[pid]
    page.get_by_role("button", name="Add to cart").click()
    page.get_by_text("Added to your cart.").wait_for()
    tab.wait_events(3)
    kinds = [(e["type"], e["product_id"], e.get("recommendation_id")) for e in tab.events]
    assert kinds == [(k, pid, recommendation_id) for k in ("click", "view", "add_to_cart")]
    assert all(e["strategy"] == strategy and e["user_id"].startswith("anon-") for e in tab.events)
    # stored, and attributed to the list that was served
    assert _event_rows(shop, recommendation_id) == sorted(
        (k, pid, strategy) for k in ("add_to_cart", "click", "view")
    )
    stats = httpx.get(
        shop.url + "/v1/recommendations/stats", headers={"X-API-Key": shop.admin}
    ).json()
    served = {s["strategy"]: s for s in stats}[strategy]
    assert served["clicked_lists"] >= 1 and served["events"]["click"] >= 1
    assert tab.errors == []


def test_product_page_lists_and_a_known_customer(tab: Shopper, shop: Shop) -> None:
    page = tab.page
    kinds = [shop.types[i] for i in shop.ids]
    pid = shop.ids[kinds.index(max(set(kinds), key=kinds.count))]  # of the commonest kind
    page.goto(f"{shop.url}/demo/products/{pid}")
    page.locator("#product img").wait_for()
    for name in ("vitrine-complementary", "vitrine-similar"):
        page.locator(name).scroll_into_view_if_needed()
        page.locator(f"{name} li a").first.wait_for()
        shown = page.locator(f"{name} li a").evaluate_all(
            "links => links.map(a => a.dataset.productId)"
        )
        assert shown and pid not in shown, name
    similar = page.locator("vitrine-similar li a").evaluate_all(
        "links => links.map(a => a.dataset.productId)"
    )
    # look-alikes: the same kind of article (shirts look like T-shirts)
    assert {shop.masters[s] for s in similar[:3]} == {shop.masters[pid]}, similar
    assert page.get_by_role("heading", name="Complete the look").is_visible()
    tab.wait_events(1)
    assert tab.events[0]["type"] == "view" and "recommendation_id" not in tab.events[0]
    tab.shot("product")
    # a signed-in customer (the demo's switch): their own list, and events under their id
    page.get_by_label("Shopping as").fill("u3")
    page.get_by_role("button", name="Switch").click()
    page.wait_for_load_state("load")
    page.locator("vitrine-similar").scroll_into_view_if_needed()
    page.locator("vitrine-similar li a").first.wait_for()
    page.goto(shop.url + "/demo")
    page.locator("vitrine-recommendations li a").first.wait_for()
    assert any(c.startswith("GET /v1/users/u3/recommendations?k=8") for c in tab.calls)
    assert tab.events[-1]["user_id"] == "u3"
    # the demo's theme reaches inside the widgets through the custom properties
    accent = page.locator("vitrine-photo-search button").first.evaluate(
        "b => getComputedStyle(b).backgroundColor"
    )
    assert accent == "rgb(122, 62, 18)"
    assert tab.errors == []


def _scene_answer(shop: Shop, width: int, height: int) -> dict[str, Any]:
    top = [shop.ids[1], shop.ids[2]]
    return {
        "objects": [
            {"box": [0, 0, width // 2, height // 2], "score": 0.9, "category": "Tshirts",
             "results": [{"id": pid, "score": 0.8} for pid in top]},
            {"box": [width // 2, height // 2, width, height], "score": 0.7, "category": None,
             "results": [{"id": shop.ids[3], "score": 0.6}]},
        ],
        "took_ms": 1.0,
    }  # fmt: skip


def test_photo_search_falls_back_and_shops_the_look(tab: Shopper, shop: Shop) -> None:
    page = tab.page
    page.goto(shop.url + "/demo")
    search = page.locator("vitrine-photo-search")
    upload = search.locator("input[type=file]").first
    upload.set_input_files({"name": "look.jpg", "mimeType": "image/jpeg", "buffer": shop.photo})
    search.locator("li a").first.wait_for()
    posts = [c for c in tab.calls if c.startswith("POST /v1/search/")]
    # no localiser is trained: the scene search answers 409 and the kit searches the photo
    assert posts == ["POST /v1/search/scene", "POST /v1/search/image"]
    assert search.get_by_role("heading", name="Looks like your photo").is_visible()
    tab.shot("photo-search", full=False)
    # with a localiser, every product of the photo: boxes and a button per product
    width, height = Image.open(io.BytesIO(shop.photo)).size
    answer = json.dumps(_scene_answer(shop, width, height))
    page.route(
        "**/v1/search/scene",
        lambda route: route.fulfill(status=200, content_type="application/json", body=answer),
    )
    upload.set_input_files({"name": "look.jpg", "mimeType": "image/jpeg", "buffer": shop.photo})
    search.get_by_role("button", name="Tshirts 1").wait_for()
    assert search.get_by_role("button", name="Tshirts 1").get_attribute("aria-pressed") == "true"
    shown = search.locator("li a").evaluate_all("links => links.map(a => a.dataset.productId)")
    assert shown == [shop.ids[1], shop.ids[2]]
    assert search.get_by_role("status").inner_text() == "Found 2 products in your photo."
    search.get_by_role("button", name="Product 2").press("Enter")
    search.get_by_role("heading", name="Matches for Product 2").wait_for()
    shown = search.locator("li a").evaluate_all("links => links.map(a => a.dataset.productId)")
    assert shown == [shop.ids[3]]
    tab.shot("photo-search-scene", full=False)
    # the only failed request is the expected 409 (Chromium logs it to the console too)
    expected = ("409 " + shop.url + "/v1/search/scene", "status of 409 (Conflict)")
    assert [e for e in tab.errors if not e.startswith(expected) and expected[1] not in e] == []
    assert len(tab.errors) == 2


@contextmanager
def another_site() -> Iterator[tuple[str, dict[str, str]]]:
    """A shop's site on another origin (another loopback port: browsers let a page reach
    a loopback service only from the same address space); yields its address and its
    pages by path, to fill in."""
    pages: dict[str, str] = {}

    class Page(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = pages.get(self.path, "not found").encode()
            self.send_response(200 if self.path in pages else 404)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Page)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", pages
    finally:
        server.shutdown()
        server.server_close()


def _shop_page(url: str, key: str) -> str:
    return f"""<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Shop</title>
<link rel="icon" href="data:,">
<style>body {{ font-family: sans-serif; margin: 2rem; --vitrine-card-width: 150px; }}</style>
<script type="module">
  import {{ configure }} from "{url}/kit/v1/vitrine.js";
  configure({{ key: "{key}", userId: "u5", linkPattern: "/item/{{id}}" }});
  document.addEventListener("vitrine-error", e => {{ window.failed = e.detail; }});
</script></head><body><h1>Another shop</h1>
<vitrine-trending k="4" heading="Popular"></vitrine-trending></body></html>"""


def test_a_shop_on_another_origin_uses_cors(tab: Shopper, shop: Shop) -> None:
    page = tab.page
    with another_site() as (site, pages), another_site() as (unlisted, other_pages):
        key = shop.app.state.keys.create("another-shop", "storefront", [site])[1]
        pages["/"] = other_pages["/"] = _shop_page(shop.url, key)
        page.goto(site + "/")
        links = page.locator("vitrine-trending li a")
        links.first.wait_for()
        assert links.count() == 4
        assert (links.first.get_attribute("href") or "").startswith("/item/")
        assert page.get_by_role("heading", name="Popular").is_visible()
        tab.shot("other-origin")
        # the category attribute asks again, for that category's trending products
        category = shop.types[shop.ids[0]]
        page.locator("vitrine-trending").evaluate(
            f"(el) => el.setAttribute('category', {category!r})"
        )
        page.wait_for_function(
            "() => document.querySelector('vitrine-trending').getAttribute('aria-busy') === null"
        )
        assert any(f"category={category.replace(' ', '+')}" in c for c in tab.calls)
        assert page.locator("vitrine-trending li a").count() >= 1
        tab.shot("other-origin-category")
        assert tab.errors == []
        # a page of an origin no key lists: no CORS answer, so the page reads nothing
        page.goto(unlisted + "/")
        page.wait_for_function("() => window.failed !== undefined")
        assert page.evaluate("() => window.failed.status ?? null") is None  # network error
        assert page.locator("vitrine-trending").is_hidden()
        assert page.locator("vitrine-trending li a").count() == 0
        assert any("blocked by CORS policy" in e for e in tab.errors)
