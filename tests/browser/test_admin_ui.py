"""The admin UI in a real browser: Playwright drives Debian's Chromium (headless) against a
live server on loopback, with real catalog photos. Screenshots go to test-artifacts/admin/.

Playwright never downloads a browser here: it launches the system's ``chromium``
(``make test`` installs it with apt; ``VITRINE_CHROMIUM`` may name another binary).
"""

from __future__ import annotations

import base64
import csv
import time
import zipfile
from pathlib import Path
from typing import Any

import pytest
from admin_live import ARTIFACTS, N_PRODUCTS, PASSWORD, Live, Tab

from vitrine.admin.templating import NAV

pytestmark = [pytest.mark.browser, pytest.mark.integration]


def test_sign_in_shows_the_overview_and_a_wrong_password_does_not(browser: Any, live: Live) -> None:
    context = browser.new_context()
    page = context.new_page()
    page.goto(live.url + "/admin/catalog")
    page.get_by_label("User name").fill("admin")
    page.get_by_label("Password").fill("not the password")
    page.get_by_role("button", name="Sign in").click()
    assert page.get_by_role("alert").inner_text() == "Wrong user name or password."
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "login-failed.png"))
    page.get_by_label("User name").fill("admin")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(live.url + "/admin/catalog")  # back where the person wanted to go
    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url(live.url + "/admin/login")
    page.goto(live.url + "/admin")
    assert "/admin/login" in page.url
    context.close()


# Every page of the navigation (its screenshot name, path and heading), phone width too.
PAGES = [(key, href, label) for key, href, label in NAV]


def test_every_page_opens_without_console_errors(tab: Tab, live: Live) -> None:
    for name, path, heading in PAGES:
        tab.go(path)
        assert tab.page.get_by_role("heading", level=1).inner_text() == heading
        current = tab.page.locator('nav a[aria-current="page"]')
        assert current.inner_text() == heading
        tab.shot(name)
        tab.page.set_viewport_size({"width": 390, "height": 844})
        tab.page.wait_for_timeout(200)  # the layout (and Chart.js) follow the new width
        tab.shot(f"{name}-phone")
        width = tab.page.evaluate("document.documentElement.scrollWidth")
        assert width <= 390, f"{path} scrolls sideways on a phone ({width} px)"
        tab.page.set_viewport_size({"width": 1360, "height": 900})
    product = next(iter(live.photos))
    tab.go(f"/admin/catalog/{product}")
    tab.shot("product")
    # Charts are drawn (Chart.js attached to every canvas of the overview).
    tab.go("/admin")
    drawn = tab.page.eval_on_selector_all("canvas[data-chart]", "els => els.map(e => !!e._chart)")
    assert drawn and all(drawn)
    # Narrow screens: the navigation folds above the content.
    tab.page.set_viewport_size({"width": 420, "height": 900})
    tab.go("/admin/catalog")
    tab.shot("catalog-mobile")


def test_keyboard_reaches_the_content_first(tab: Tab) -> None:
    tab.go("/admin/catalog")
    tab.page.keyboard.press("Tab")
    focused = tab.page.evaluate("document.activeElement.textContent")
    assert focused.strip() == "Skip to content"
    unlabelled = tab.page.evaluate(
        """() => [...document.querySelectorAll('input:not([type=hidden]), select, textarea')]
             .filter(e => !(e.labels && e.labels.length) && !e.getAttribute('aria-label'))
             .map(e => e.name)"""
    )
    assert unlabelled == []


def test_catalog_filters_with_thumbnails(tab: Tab, live: Live) -> None:
    tab.go("/admin/catalog")
    cards = tab.page.locator(".cards .card")
    assert cards.count() >= N_PRODUCTS
    loaded = tab.page.eval_on_selector_all(
        ".cards img", "imgs => imgs.filter(i => i.complete && i.naturalWidth > 0).length"
    )
    assert loaded > 0
    tab.page.get_by_label("Category / attribute").select_option("masterCategory=Apparel")
    tab.page.wait_for_function("() => document.location.search.includes('masterCategory')")
    tab.page.wait_for_load_state("networkidle")
    filtered = tab.page.locator(".cards .card").count()
    assert 0 < filtered < N_PRODUCTS
    tab.shot("catalog-filtered")


def test_upload_a_photo_and_see_its_analysis(tab: Tab, live: Live, tmp_path: Path) -> None:
    pid, data, row = live.spare[0]
    photo = tmp_path / f"{pid}.jpg"
    photo.write_bytes(data)
    tab.go("/admin/upload")
    tab.page.get_by_label("Product id", exact=True).fill(pid)
    tab.page.get_by_label("Title", exact=True).fill(row["productDisplayName"])
    tab.page.get_by_label("Attributes (one field=value per line)").fill(
        f"masterCategory={row['masterCategory']}"
    )
    tab.page.set_input_files("#up-image", str(photo))
    tab.page.get_by_role("button", name="Upload and analyse").click()
    analysis = tab.page.locator('[data-testid="analysis"]')
    analysis.wait_for()
    assert "analysed, stored and searchable" in analysis.inner_text()
    assert analysis.locator(".colors li").count() >= 1
    assert (
        analysis.locator(".swatch").first.evaluate("e => getComputedStyle(e).backgroundColor") != ""
    )
    tab.shot("upload-analysis")
    tab.page.get_by_role("link", name=row["productDisplayName"]).click()
    tab.page.wait_for_url(f"{live.url}/admin/catalog/{pid}")
    assert tab.page.locator(".product-facts .colors li").count() >= 1


def test_correct_a_label_in_place(tab: Tab, live: Live) -> None:
    pid = next(iter(live.photos))
    tab.go(f"/admin/catalog/{pid}")
    tab.page.get_by_label("Field").fill("articleType")
    tab.page.get_by_label("Correct value").fill("Kurtas")
    tab.page.get_by_role("button", name="Save label").click()
    status = tab.page.locator("#labels [role=status]")
    status.wait_for()
    assert status.inner_text() == "Saved: articleType = Kurtas"
    row = tab.page.locator("#labels tbody tr", has_text="Kurtas")
    assert "human" in row.inner_text()
    tab.shot("label-corrected")
    tab.go(f"/admin/catalog/{pid}")  # stored, not just shown
    assert tab.page.locator("#labels tbody tr", has_text="Kurtas").count() == 1


def test_visual_search_by_picked_and_dropped_photo(tab: Tab, live: Live, tmp_path: Path) -> None:
    pid, data = list(live.photos.items())[3]
    photo = tmp_path / "query.jpg"
    photo.write_bytes(data)
    tab.go("/admin/search")
    tab.page.set_input_files("#search-image", str(photo))  # submits by itself
    results = tab.page.locator("#search-results .card")
    results.first.wait_for()
    assert results.count() >= 10
    first = results.first.inner_text()
    assert pid in first  # the product whose photo it is comes first
    assert float(results.first.locator(".score").inner_text()) > 0.95
    tab.shot("search-picked")

    other_pid, other = list(live.photos.items())[7]
    tab.page.evaluate(
        """b64 => {
            const bytes = Uint8Array.from(atob(b64), c => c.charCodeAt(0));
            const dt = new DataTransfer();
            dt.items.add(new File([bytes], 'dropped.jpg', {type: 'image/jpeg'}));
            const zone = document.querySelector('[data-dropzone]');
            const init = {dataTransfer: dt, bubbles: true, cancelable: true};
            zone.dispatchEvent(new DragEvent('drop', init));
        }""",
        base64.b64encode(other).decode(),
    )
    tab.page.wait_for_function(
        "pid => document.querySelector('#search-results .card')?.innerText.includes(pid)",
        arg=other_pid,
    )
    # A filter narrows the results.
    tab.page.get_by_label("Filters").fill("masterCategory=Footwear")
    tab.page.get_by_role("button", name="Search").click()
    tab.page.wait_for_load_state("networkidle")
    tab.shot("search-dropped-filtered")


def test_bulk_import_shows_live_progress_and_rejects(tab: Tab, live: Live, tmp_path: Path) -> None:
    spare = live.spare[1:4]
    csv_path = tmp_path / "products.csv"
    with csv_path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "productDisplayName", "masterCategory"])
        for pid, _, row in spare:
            writer.writerow([pid, row["productDisplayName"], row["masterCategory"]])
        writer.writerow(["missing-photo", "No photo", "Apparel"])
    zip_path = tmp_path / "photos.zip"
    with zipfile.ZipFile(zip_path, "w") as zf:
        for pid, data, _ in spare:
            zf.writestr(f"{pid}.jpg", data)
    tab.go("/admin/upload")
    tab.page.get_by_label("Products CSV").set_input_files(str(csv_path))
    tab.page.get_by_label("Photos (a zip)").set_input_files(str(zip_path))
    tab.page.get_by_label("Photo path template").fill("{id}.jpg")
    tab.page.get_by_label("Title column").fill("productDisplayName")
    tab.page.get_by_role("button", name="Start import").click()
    tab.page.locator("#bulk-result .job").wait_for()
    tab.page.locator('#bulk-result .job[data-status="done"]').wait_for(timeout=120_000)
    text = tab.page.locator("#bulk-result").inner_text()
    assert "3 imported" in text and "1 rejected" in text
    assert "missing-photo" in tab.page.locator("#bulk-result table").inner_text()
    tab.shot("bulk-import")


def test_monitoring_refreshes_and_checks_recall(tab: Tab) -> None:
    tab.go("/admin/monitoring")
    tab.page.get_by_role("button", name="Check recall now").click()
    tab.page.wait_for_function(
        "() => document.querySelector('[data-testid=recall]').innerText.includes('recall@10 =')"
    )
    # A flat (exact) index: recall is 1 by construction, and the check must say so.
    assert "1.0000" in tab.page.locator('[data-testid="recall"]').inner_text()
    table = tab.page.locator('[data-testid="endpoints"]')
    table.wait_for()
    assert "/admin/catalog" in table.inner_text()
    # The panel reloads itself (htmx every 5 s) and the charts fill from series.json.
    with tab.page.expect_response(lambda r: "/admin/monitoring/panel" in r.url, timeout=15_000):
        pass
    tab.page.wait_for_function(
        "() => document.querySelector('#chart-process')._chart.data.labels.length > 0",
        timeout=20_000,
    )
    tab.shot("monitoring")


def _preview_ids(tab: Tab) -> list[list[str]]:
    """Click Preview until the models are trained; the product ids of both columns."""
    page = tab.page
    deadline = time.monotonic() + 120
    while True:
        with page.expect_response(lambda r: "/preview/compare" in r.url) as response:
            page.get_by_role("button", name="Preview").click()
        if response.value.ok:
            break
        assert "still being trained" in response.value.text(), response.value.text()
        assert time.monotonic() < deadline, "the recommendation models were never ready"
        tab.errors.clear()  # the 422 while training is expected
        time.sleep(1)
    page.locator("#preview ol.preview-list").first.wait_for()
    return [
        [a.get_attribute("href").rsplit("/", 1)[-1] for a in col.locator("li > a").all()]
        for col in page.locator("#preview .grid-2 > div").all()
    ]


def test_changing_a_strategys_weights_changes_its_preview(tab: Tab, live: Live) -> None:
    pid = next(iter(live.photos))
    tab.go("/admin/recommendations")
    page = tab.page
    page.get_by_label("Left").select_option("similar")
    page.get_by_label("Right").select_option("trending")
    page.get_by_label("…or product id").fill(pid)
    before = _preview_ids(tab)
    assert len(before) == 2 and len(before[0]) >= 8 and pid not in before[0]
    tab.go("/admin/recommendations/strategies/similar")  # the strategy's editor
    for aspect in ("color", "texture", "shape", "pattern", "embedding"):
        page.locator(f"#aspect-{aspect}").fill("1" if aspect == "color" else "0")
    page.get_by_role("button", name="Save similar").click()
    page.locator("#strategy-form [role=status]", has_text="Saved.").wait_for()
    assert page.locator("#aspect-color").input_value() == "1.0"
    tab.go("/admin/recommendations")
    page.get_by_label("Left").select_option("similar")
    page.get_by_label("Right").select_option("trending")
    page.get_by_label("…or product id").fill(pid)
    after = _preview_ids(tab)
    assert after[0] != before[0]  # ranked by colour alone now
    assert after[1] == before[1]  # the other strategy did not change
    tab.shot("recommendations-preview")
    tab.go("/admin/recommendations/strategies/similar")  # stored, not just shown
    assert page.locator("#aspect-embedding").input_value() == "0"


def test_api_keys_created_shown_once_and_revoked(tab: Tab, live: Live) -> None:
    import httpx

    tab.go("/admin/keys")
    page = tab.page
    page.get_by_label("Name", exact=True).fill("demo-shop")
    page.get_by_label("Scope").select_option("storefront")
    page.get_by_label("Allowed origins (storefront keys; one per line)").fill("shop.example")
    page.get_by_role("button", name="Create the key").click()
    alert = page.locator(".alert.error")
    assert "is not of the form https://shop.example" in alert.inner_text()
    page.get_by_label("Allowed origins (storefront keys; one per line)").fill(
        "https://shop.example"
    )
    page.get_by_label("Rate limit (storefront, requests/s)").fill("5")
    page.get_by_role("button", name="Create the key").click()
    key = page.locator("#new-key").inner_text()
    assert key.startswith("vtr_")
    tab.shot("keys-created")
    headers = {"X-API-Key": key, "Origin": "https://shop.example"}
    product = next(iter(live.photos))
    r = httpx.get(f"{live.url}/v1/cards", params={"id": product}, headers=headers)
    assert r.status_code == 200 and r.json()["cards"][0]["id"] == product
    assert httpx.get(f"{live.url}/v1/products", headers=headers).status_code == 403

    tab.go("/admin/keys")
    assert page.locator("#new-key").count() == 0  # shown once
    row = page.locator("tr", has_text="demo-shop")
    assert "https://shop.example" in row.inner_text() and "5.0" in row.inner_text()
    row.get_by_text("Revoke", exact=True).click()
    row.get_by_role("button", name="Revoke demo-shop").click()
    page.get_by_text("Revoked;").wait_for()
    assert "revoked" in page.locator("tr", has_text="demo-shop").inner_text()
    tab.shot("keys-revoked")
    time.sleep(5.5)  # a key check is cached for 5 s in each process
    r = httpx.get(f"{live.url}/v1/cards", params={"id": product}, headers=headers)
    assert r.status_code == 401
    tab.errors[:] = [e for e in tab.errors if "422" not in e]  # the refused origin's status
