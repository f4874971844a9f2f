"""A shop's recommendation loops in a real browser (Playwright, Debian's Chromium,
headless) against a live server on loopback: the strategy editor, A/B test controls, a
customer's page and the analytics of the shop's events.

The shop is small and needs no vision model: real catalog photos (for the thumbnails)
of two categories, with stored embeddings clustered by category and random colour
vectors, and a few weeks of customers' purchases, trained once before the server starts.
Screenshots (desktop 1280 px and phone 390 px) go to test-artifacts/admin/.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from admin_live import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS, PASSWORD, Tab, _rows, serving, sign_in

from vitrine.api.app import create_app
from vitrine.catalog.store import FeatureRecord, ImageRecord, ProductRecord
from vitrine.config import load_settings
from vitrine.recommend.strategies import Strategy
from vitrine.vision.features import FEATURE_VERSION

pytestmark = [pytest.mark.browser, pytest.mark.integration]
DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}
EDIT = "/admin/recommendations/strategies"


def _shop(app: Any, data_dir: Path) -> list[str]:
    """Twelve apparel and twelve footwear products with their photos, and purchases."""
    rows = _rows(data_dir, 400)
    picked = [r for r in rows if r["masterCategory"] == "Apparel"][:12]
    picked += [r for r in rows if r["masterCategory"] == "Footwear"][:12]
    vitrine = app.state.admin.vitrine
    rng = np.random.default_rng(7)
    centres = {"Apparel": rng.normal(size=16) * 3, "Footwear": rng.normal(size=16) * 3}
    for row in picked:
        photo = (data_dir / "fashion-small" / "images" / f"{row['id']}.jpg").read_bytes()
        digest = hashlib.sha256(photo).hexdigest()
        key = f"images/{digest[:2]}/{digest[2:4]}/{digest}.jpg"
        vitrine.blobs.put(key, photo, "image/jpeg")
        features = [
            FeatureRecord(
                "embedding", "m1", vector=centres[row["masterCategory"]] + rng.normal(size=16)
            ),
            FeatureRecord("color", FEATURE_VERSION, vector=rng.random(8)),
        ]
        image = ImageRecord(row["id"], digest, key, "jpeg", 60, 80, len(photo), features=features)
        attributes = {"category": row["masterCategory"], "baseColour": row["baseColour"]}
        record = ProductRecord(row["id"], row["productDisplayName"], attributes=attributes)
        vitrine.store.save_product(record, [image], replace_images=True)
    ids = [r["id"] for r in picked]
    start = datetime.now(UTC) - timedelta(days=20)
    service = vitrine.recommendations
    service.add_events(
        [
            {
                "user_id": f"customer-{u}",
                "product_id": ids[(u * 5 + j * 7) % len(ids)],
                "type": "purchase",
                "timestamp": start + timedelta(days=u % 15 + j),
            }
            for u in range(30)
            for j in range(3)
        ]
    )
    service.strategies.put(Strategy("hybrid", "hybrid", params={"windows": 1}))
    service.strategies.put(Strategy("default", "als"))
    service.train()
    return ids


@pytest.fixture(scope="module")
def shop(
    tmp_path_factory: pytest.TempPathFactory, data_dir: Path
) -> Iterator[tuple[str, Any, list[str]]]:
    if not CHROMIUM:
        pytest.skip("chromium is not installed (make test installs it: apt-get install chromium)")
    home = tmp_path_factory.mktemp("strategies-home")
    settings = load_settings(env={}).with_overrides(
        home=home, admin_recall_check_minutes=0, recommend_retrain_minutes=0
    )
    app = create_app(settings, warm=False)
    app.state.admin.users.create("admin", PASSWORD, "admin")
    ids = _shop(app, data_dir)
    with serving(app) as url:
        yield url, app, ids


@pytest.fixture()
def tab(shop: tuple[str, Any, list[str]]) -> Iterator[Tab]:
    sync_api = pytest.importorskip("playwright.sync_api")
    url = shop[0]
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        page = browser.new_context(viewport=DESKTOP).new_page()
        page.set_default_timeout(30_000)
        t = Tab(page, url)
        page.on("console", lambda m: t.errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: t.errors.append(str(e)))
        sign_in(page, url)
        yield t
        browser.close()
    assert t.errors == [], f"console errors: {t.errors}"


def _both_widths(tab: Tab, name: str, selector: str | None = None) -> None:
    """Screenshots at 1280 px and 390 px (of ``selector`` only, when given); the phone
    view must not scroll sideways."""
    page = tab.page
    for suffix, size in (("", DESKTOP), ("-phone", PHONE)):
        page.set_viewport_size(size)
        page.wait_for_timeout(150)
        if size is PHONE:
            width = page.evaluate("document.documentElement.scrollWidth")
            assert width <= PHONE["width"], f"{name} scrolls sideways on a phone ({width} px)"
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        path = str(ARTIFACTS / f"{name}{suffix}.png")
        if selector:
            page.locator(selector).screenshot(path=path)
        else:
            page.screenshot(path=path, full_page=True)
    page.set_viewport_size(DESKTOP)


def _unlabelled(tab: Tab) -> list[str]:
    """The form fields of the page that no label names."""
    return tab.page.evaluate(
        """() => [...document.querySelectorAll('input:not([type=hidden]), select, textarea')]
             .filter(e => !(e.labels && e.labels.length) && !e.getAttribute('aria-label'))
             .map(e => e.name)"""
    )


def _preview(tab: Tab) -> list[list[str]]:
    """Press Preview (again while the models load); the product ids of both columns."""
    page = tab.page
    deadline = time.monotonic() + 120
    while True:
        with page.expect_response(lambda r: r.url.endswith("/preview")) as response:
            page.get_by_role("button", name="Preview").click()
        if response.value.ok:
            break
        assert "still being trained" in response.value.text(), response.value.text()
        assert time.monotonic() < deadline, "the recommendation models were never ready"
        tab.errors.clear()  # the 422 while the models load is expected
        time.sleep(1)
    page.locator("#preview .preview-columns").wait_for()
    return [
        [a.get_attribute("href").rsplit("/", 1)[-1] for a in col.locator("li > a").all()]
        for col in page.locator("#preview .preview-columns > div").all()
    ]


def test_edit_preview_save_duplicate_and_delete_a_strategy(
    tab: Tab, shop: tuple[str, Any, list[str]]
) -> None:
    url, app, ids = shop
    page = tab.page
    tab.go("/admin/recommendations")
    assert "not deletable: the default strategy" in page.locator("#row-default").inner_text()
    assert _unlabelled(tab) == []
    _both_widths(tab, "strategies-list")

    # Create: the new strategy opens in the editor.
    page.get_by_text("New strategy", exact=True).click()
    page.get_by_label("Name", exact=True).fill("summer-sale")
    page.get_by_label("Algorithm", exact=True).select_option("popularity")
    page.get_by_label("Fallback (in order, comma-separated)").fill("trending")
    page.get_by_role("button", name="Create and edit").click()
    page.wait_for_url(f"{url}{EDIT}/summer-sale")
    assert page.locator('input[name="param:window_days"]').count() == 1
    assert page.locator('input[name^="aspect:"]').count() == 0
    assert _unlabelled(tab) == []

    # Another algorithm: its own parameters, and the aspect weights it reads, swap in.
    page.get_by_label("Algorithm", exact=True).select_option("similar")
    page.locator('input[name="aspect:color"]').wait_for()
    assert page.locator('input[name="param:window_days"]').count() == 0
    assert page.locator('input[name="param:pool"]').input_value() == "200"
    for aspect in ("texture", "shape", "pattern", "embedding"):
        page.get_by_label(aspect, exact=True).fill("0")
    page.get_by_label("color", exact=True).fill("1")
    # A rule: never shoes.
    page.get_by_label("Never these categories (comma-separated)").fill("Footwear")
    page.get_by_label("Leave out what the customer bought").check()

    # Live preview of the unsaved edits against the saved strategy.
    page.get_by_label("…or product id").fill(ids[0])
    draft, saved = _preview(tab)
    assert draft and saved and draft != saved
    footwear = set(ids[12:])
    assert not footwear & set(draft)  # the new rule already applies to the unsaved edits
    assert app.state.admin.vitrine.recommendations.strategies.get("summer-sale").algorithm == (
        "popularity"
    )  # nothing saved yet
    _both_widths(tab, "strategy-editor")

    # A bad value: the error next to the form, the typed values kept.
    page.get_by_label("Boost (one “filter factor” per line)").fill("category=Apparel")
    with page.expect_response(lambda r: r.url.endswith("/summer-sale")) as response:
        page.get_by_role("button", name="Save summer-sale").click()
    assert response.value.status == 422
    alert = page.locator("#strategy-form [role=alert]")
    assert "needs a filter and a factor" in alert.inner_text()
    tab.errors.clear()  # the browser logs the 422, the expected answer
    assert page.get_by_label("color", exact=True).input_value() == "1"
    page.get_by_label("Boost (one “filter factor” per line)").fill("category=Apparel 1.5")
    page.get_by_role("button", name="Save summer-sale").click()
    page.locator("#strategy-form [role=status]", has_text="Saved.").wait_for()
    tab.shot("strategy-saved")
    tab.go(f"{EDIT}/summer-sale")  # stored, not just shown
    assert page.get_by_label("Algorithm", exact=True).input_value() == "similar"
    assert page.get_by_label("Never these categories (comma-separated)").input_value() == "Footwear"
    assert page.get_by_label("Leave out what the customer bought").is_checked()
    stored = app.state.admin.vitrine.recommendations.strategies.get("summer-sale")
    assert stored.weights == {"color": 1.0} and stored.rules.boost == {"category=Apparel": 1.5}

    # Duplicate it from the list, then delete the copy.
    page.get_by_role("link", name="Back to all strategies").click()
    page.wait_for_url(f"{url}/admin/recommendations")
    row = page.locator("#row-summer-sale")
    row.get_by_text("Duplicate", exact=True).click()
    row.get_by_label("Name of the copy").fill("summer-sale-2")
    row.get_by_role("button", name="Duplicate summer-sale").click()
    page.wait_for_url(f"{url}{EDIT}/summer-sale-2")
    assert page.get_by_label("Algorithm", exact=True).input_value() == "similar"
    tab.go("/admin/recommendations")
    copy = page.locator("#row-summer-sale-2")
    copy.get_by_text("Delete", exact=True).click()
    copy.get_by_role("button", name="Delete summer-sale-2").click()
    page.locator("#strategies [role=status]", has_text="Deleted summer-sale-2.").wait_for()
    assert page.locator("#row-summer-sale-2").count() == 0
    assert app.state.admin.vitrine.recommendations.strategies.get("summer-sale-2") is None


def test_run_an_ab_test_from_start_to_winner(tab: Tab, shop: tuple[str, Any, list[str]]) -> None:
    _, app, _ = shop
    service = app.state.admin.vitrine.recommendations
    if service.strategies.get("challenger") is None:
        service.strategies.put(Strategy("challenger", "popularity", fallback=["trending"]))
    page = tab.page
    tab.go("/admin/recommendations")
    panel = page.locator("#ab-tests")
    page.get_by_label("Test name").fill("home-test")
    page.get_by_label("A (control)").select_option("default")
    page.get_by_label("B (challenger)").select_option("challenger")
    page.get_by_label("% of customers to B").fill("30")
    page.get_by_role("button", name="Start test").click()
    panel.locator("[role=status]", has_text="Started home-test").wait_for()
    assert "30% to B" in panel.inner_text()

    # Some traffic, with clicks attributed to the arm that served them.
    for u in range(40):
        result = service.recommend_user(f"customer-{u}", 6, strategy="home-test")
        if u % 3 == 0 and result.items:
            event = {
                "user_id": f"customer-{u}",
                "product_id": result.items[0].product_id,
                "type": "click",
                "recommendation_id": result.id,
                "strategy": result.strategy,
            }
            service.add_events([event])
    tab.go("/admin/recommendations")
    test = page.locator("#test-home-test")
    assert "Not enough data yet" in test.locator(".verdict").inner_text()
    assert test.locator("tbody tr").count() == 2

    test.get_by_role("button", name="Pause home-test").click()
    panel.locator("[role=status]", has_text="Paused home-test").wait_for()
    assert page.locator("#test-home-test .badge", has_text="paused").count() == 1
    page.get_by_role("button", name="Resume home-test").click()
    panel.locator("[role=status]", has_text="Resumed home-test.").wait_for()
    page.get_by_label("% to B", exact=True).fill("40")
    page.get_by_role("button", name="Change split").click()
    panel.locator("[role=status]", has_text="now sends 40 % of customers to B").wait_for()
    assert service.strategies.get("home-test").variants["challenger"] == pytest.approx(0.4)
    _both_widths(tab, "ab-tests", "#ab-title >> xpath=..")

    page.locator("#test-home-test").get_by_text("End the test…").click()
    page.get_by_role("button", name="B wins: challenger").click()
    panel.locator("[role=status]", has_text="challenger won").wait_for()
    assert page.locator("#test-home-test").count() == 0
    decided = service.strategies.get("home-test")
    assert (decided.algorithm, decided.variants) == ("popularity", {})
    tab.go("/admin/recommendations")
    assert page.locator("#row-home-test").count() == 1  # a strategy now, serving B's config


def test_find_a_customer_and_see_history_and_recommendations(
    tab: Tab, shop: tuple[str, Any, list[str]]
) -> None:
    page = tab.page
    tab.go("/admin/customers")
    recent = page.locator(".customers-table tbody tr")
    assert recent.count() >= 20  # the most recently active first
    _both_widths(tab, "customers")
    page.get_by_label("Customer id starts with").fill("customer-1")
    page.wait_for_function(
        "() => [...document.querySelectorAll('.customer-id a')]"
        ".every(a => a.textContent.startsWith('customer-1'))"
    )
    found = [a.inner_text() for a in page.locator(".customer-id a").all()]
    assert "customer-1" in found and all(f.startswith("customer-1") for f in found)
    page.get_by_role("link", name="customer-12", exact=True).click()
    page.wait_for_url("**/admin/customers/customer-12")
    history = page.locator("ol.history > li")
    assert history.count() >= 3  # three purchases (and the other tests' clicks), with photos
    assert page.locator("ol.history img").count() == history.count()
    deadline = time.monotonic() + 120
    while page.locator("ol.rec-cards > li").count() == 0:  # models may still be loading
        assert time.monotonic() < deadline, page.locator("#recs").inner_text()
        tab.errors.clear()
        time.sleep(1)
        page.reload()
    assert page.locator("ol.rec-cards .why").first.inner_text().strip()
    _both_widths(tab, "customer")
    page.get_by_label("Strategy").select_option("trending")
    page.wait_for_url("**strategy=trending**")
    assert "trending" in page.locator("ol.rec-cards .why").first.inner_text().lower()
    tab.go("/admin/customers/nobody-at-all")
    assert "No event has the customer id" in page.locator("main").inner_text()
    tab.errors.clear()  # Chromium logs the page's 404


def test_analytics_cover_the_span_of_the_shops_events(
    tab: Tab, shop: tuple[str, Any, list[str]]
) -> None:
    page = tab.page
    tab.go("/admin/analytics")
    top = page.locator(".top-lists section").filter(has_text="Top purchased")
    assert top.locator("li").count() > 0 and top.locator("img").count() > 0
    start = page.get_by_label("From", exact=True).input_value()
    assert start == (datetime.now(UTC) - timedelta(days=20)).date().isoformat()
    _both_widths(tab, "analytics")
    page.get_by_label("From", exact=True).fill("2020-01-01")
    page.get_by_label("To", exact=True).fill("2020-01-31")
    page.get_by_role("button", name="Show this range").click()
    page.wait_for_url("**from=2020-01-01**")
    assert "No purchases in this range" in page.locator(".top-lists").inner_text() or (
        "no event" in page.locator(".top-lists").inner_text().lower()
    )
    _both_widths(tab, "analytics-empty-range")
