"""Shop the look in a real browser: the Models page shows the localiser and queues its
training; the visual search finds every product of a composed photo, draws their boxes
on it, and a click on a box shows that product's matches; the try-on page puts
sunglasses on scikit-image's astronaut and says when a photo has no face; the ads page
creates, previews, pauses and edits a campaign and counts the ads a storefront served
and the purchase that followed. Screenshots go to test-artifacts/admin/ (scene-*,
tryon-*, ads-*)."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import cv2
import httpx
import numpy as np
import pytest
from admin_live import CHROMIUM, CHROMIUM_ARGS, PASSWORD, Tab, _rows, serving, sign_in
from PIL import Image
from skimage import data as skdata

from vitrine.api.app import create_app
from vitrine.catalog.products import Upload
from vitrine.catalog.store import ProductRecord
from vitrine.config import load_settings
from vitrine.jobs.localizer_jobs import train_localizer
from vitrine.vision.scenes import cut_out, random_scene

pytestmark = [pytest.mark.browser, pytest.mark.integration]
PRODUCTS = 40


class _Progress:
    def start(self, stage: str, total: int = 0) -> None:
        pass

    def advance(self, n: int = 1) -> None:
        pass


@pytest.fixture(scope="module")
def shop(
    tmp_path_factory: pytest.TempPathFactory, model_dir: Path, data_dir: Path
) -> Iterator[tuple[str, bytes, list[str], str]]:
    home = tmp_path_factory.mktemp("scene-home")
    (home / "models").mkdir()
    for path in model_dir.glob("efficientnet-lite0-*.onnx"):  # not the shared localiser
        (home / "models" / path.name).symlink_to(path)
    settings = load_settings(env={}).with_overrides(
        home=home, import_workers=0, admin_recall_check_minutes=0
    )
    app = create_app(settings)
    app.state.admin.users.create("admin", PASSWORD, "admin")
    photos = []
    for row in _rows(data_dir, PRODUCTS):
        data = (data_dir / "fashion-small" / "images" / f"{row['id']}.jpg").read_bytes()
        record = ProductRecord(
            id=row["id"], title=row["productDisplayName"],
            attributes={k: row[k] for k in ("masterCategory", "articleType")},
        )  # fmt: skip
        app.state.runtime.products.save(record, [Upload(data, f"{row['id']}.jpg")], replace=False)
        photos.append((row["id"], np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))))
    glasses = np.full((120, 300, 3), 255, np.uint8)  # a studio photo of sunglasses
    for x in (85, 215):
        cv2.ellipse(glasses, (x, 60), (60, 38), 0, 0, 360, (20, 20, 30), -1)
    cv2.line(glasses, (140, 50), (160, 50), (20, 20, 30), 6)
    sunglasses = ProductRecord(
        id="tryon-glasses", title="Round sunglasses", attributes={"articleType": "Sunglasses"}
    )
    out = io.BytesIO()
    Image.fromarray(glasses).save(out, "PNG")
    app.state.runtime.products.save(sunglasses, [Upload(out.getvalue(), "g.png")], replace=False)
    train_localizer(app.state.runtime, {"products": PRODUCTS, "scenes": 120}, _Progress())  # type: ignore[arg-type]
    cutouts = [c for pid, rgb in photos if (c := cut_out(rgb, pid)) is not None]
    scene = random_scene(cutouts, "test", np.random.default_rng(5), count=2)
    out = io.BytesIO()
    Image.fromarray(scene.image).save(out, "JPEG", quality=90)
    key = app.state.keys.create("storefront", "write")[1]
    with serving(app) as url:
        yield url, out.getvalue(), scene.product_ids, key


@pytest.fixture()
def tab(shop: tuple[str, bytes, list[str], str]) -> Iterator[Tab]:
    if not CHROMIUM:
        pytest.skip("chromium is not installed (make test installs it: apt-get install chromium)")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1360, "height": 900})
        page.set_default_timeout(30_000)
        t = Tab(page, shop[0])
        page.on("console", lambda m: t.errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: t.errors.append(str(e)))
        sign_in(page, shop[0])
        yield t
        browser.close()
    assert t.errors == [], f"console errors: {t.errors}"


def test_models_page_shows_the_localiser_and_queues_its_training(tab: Tab) -> None:
    tab.go("/admin/models")
    panel = tab.page.locator("section[aria-labelledby=localizer-title]")
    assert "Held-out products found" in panel.inner_text()
    assert "localizer-" in panel.inner_text()
    panel.get_by_role("button", name="Train again").click()
    notice = tab.page.locator("#localizer-notice")
    notice.get_by_text("Training the localiser").wait_for()
    panel.scroll_into_view_if_needed()
    tab.shot("scene-models-localizer", full=False)


def test_shop_the_look_draws_boxes_and_shows_each_products_matches(
    tab: Tab, shop: tuple[str, bytes, list[str], str], tmp_path: Path
) -> None:
    _, scene, product_ids, _ = shop
    photo = tmp_path / "scene.jpg"
    photo.write_bytes(scene)
    tab.go("/admin/search")
    tab.page.get_by_label("Find").select_option("scene")
    tab.page.set_input_files("#search-image", str(photo))  # submits by itself
    boxes = tab.page.locator(".scene-box")
    boxes.first.wait_for()
    assert boxes.count() >= 1
    visible = tab.page.locator(".scene-object:not([hidden])")
    assert visible.count() == 1 and visible.locator(".card").count() >= 5
    shown = {c.inner_text() for c in tab.page.locator(".scene-object .card .mono").all()}
    assert set(product_ids) & shown, (product_ids, shown)
    tab.shot("scene-search")
    if boxes.count() > 1:
        tab.page.locator(".scene-box[data-scene-object='2']").click()
        chip = tab.page.locator(".scene-chip[data-scene-object='2']")
        assert chip.get_attribute("aria-pressed") == "true"
        second = tab.page.locator(".scene-object:not([hidden])")
        assert second.count() == 1 and second.get_attribute("data-scene-matches") == "2"
        tab.shot("scene-search-second-box")
    # A photo that is not an image gets the API's message, not a page of boxes.
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not an image")
    tab.page.set_input_files("#search-image", str(bad))
    tab.page.locator("#search-results .alert").wait_for()
    assert tab.page.locator(".scene-box").count() == 0
    tab.errors[:] = [e for e in tab.errors if "415" not in e]  # that upload's own status


def test_try_on_page_puts_glasses_on_a_face_and_says_when_there_is_none(
    tab: Tab, tmp_path: Path
) -> None:
    for name, image in (("astronaut", skdata.astronaut()), ("coffee", skdata.coffee())):
        Image.fromarray(image).save(tmp_path / f"{name}.jpg", quality=92)
    tab.go("/admin/tryon")
    tab.page.set_input_files("#tryon-photo", str(tmp_path / "astronaut.jpg"))
    tab.page.get_by_label("Product id").fill("tryon-glasses")
    tab.page.get_by_role("button", name="Try it on").click()
    result = tab.page.locator(".tryon-result img")
    result.wait_for()
    assert result.get_attribute("src").startswith("data:image/jpeg;base64,")
    tab.shot("tryon-glasses")
    tab.page.set_input_files("#tryon-photo", str(tmp_path / "coffee.jpg"))
    tab.page.get_by_role("button", name="Try it on").click()
    alert = tab.page.locator("#tryon-result .alert")
    alert.wait_for()
    assert "no face" in alert.inner_text()
    tab.shot("tryon-no-face")
    tab.errors[:] = [e for e in tab.errors if "422" not in e]  # that photo's own status


def test_ads_page_creates_previews_and_counts_a_campaign(
    tab: Tab, shop: tuple[str, bytes, list[str], str], tmp_path: Path
) -> None:
    url, scene, _, key = shop
    photo = tmp_path / "post.jpg"
    photo.write_bytes(scene)
    tab.go("/admin/ads")
    page = tab.page
    page.get_by_label("Name").fill("look-of-the-week")
    page.get_by_label("Description").fill("Products seen in shared photos")
    page.get_by_label("Products per object").fill("4")
    page.get_by_role("button", name="Create the campaign").click()
    row = page.locator("#campaign-look-of-the-week")
    row.wait_for()
    assert "active" in row.inner_text() and "every category" in row.inner_text()
    tab.shot("ads-campaigns")

    page.set_input_files("#ad-photo", str(photo))
    page.get_by_role("button", name="Show the ads").click()
    page.locator("#ad-match .scene-box").first.wait_for()
    assert page.locator("#ad-match .scene-object:not([hidden]) .card").count() >= 1
    tab.shot("ads-preview")

    # The storefront serves the campaign's ads for a shared photo; a shopper buys one.
    headers = {"X-API-Key": key}
    files = {"image": ("post.jpg", scene, "image/jpeg")}
    data = {"campaign": "look-of-the-week", "source": "instagram: @shopper post"}
    r = httpx.post(f"{url}/v1/ads/match", files=files, data=data, headers=headers, timeout=60)
    assert r.status_code == 200, r.text
    ads = [ad for obj in r.json()["objects"] for ad in obj["ads"]]
    assert ads and r.json()["localized"]
    ad = ads[0]
    events = [{"user_id": "s1", "product_id": ad["product_id"], "type": t, "ad_id": ad["ad_id"],
               "price": 30.0} for t in ("click", "purchase")]  # fmt: skip
    assert httpx.post(f"{url}/v1/events", json=events, headers=headers).status_code == 200
    tab.go("/admin/ads")
    cells = row.locator("td")
    assert cells.nth(2).inner_text() == str(len(ads))  # impressions
    assert cells.nth(6).inner_text() == "1"  # purchases
    source = page.locator("img.ad-source").first
    assert "instagram" in page.locator("section[aria-labelledby=sources-title]").inner_text()
    assert source.evaluate("img => img.naturalWidth") > 0
    tab.shot("ads-analytics")

    row.get_by_role("button", name="Pause").click()
    page.locator("#campaign-look-of-the-week .badge").get_by_text("paused").wait_for()
    r = httpx.post(f"{url}/v1/ads/match", files=files, data=data, headers=headers, timeout=60)
    assert r.status_code == 409
    page.locator("#campaign-look-of-the-week").get_by_role("link", name="Edit").click()
    page.get_by_label("Highest price").fill("5")
    page.get_by_label("Lowest price").fill("10")
    page.get_by_role("button", name="Save").click()
    assert "min_price 10 is above max_price 5" in page.locator(".alert.error").inner_text()
    page.get_by_label("Lowest price").fill("1")
    page.get_by_role("button", name="Save").click()
    page.get_by_text("Saved.").wait_for()
    tab.shot("ads-campaign")
    tab.errors[:] = [e for e in tab.errors if "422" not in e]  # the refused rules' status
