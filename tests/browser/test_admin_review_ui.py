"""The review queue and the product page in a real browser: a shop whose gender model
(trained here on real photos) labelled the products the shop left without one; the
admin confirms one label with the keyboard, corrects one by clicking, opens a product.
Screenshots (1280 px and a 390 px phone) go to test-artifacts/admin/.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from admin_live import PASSWORD, Live, Tab, _rows, serving

from vitrine.api.app import create_app
from vitrine.catalog.products import Upload
from vitrine.catalog.store import ProductRecord
from vitrine.classify.catalog_labels import CatalogLabeller
from vitrine.config import load_settings

pytestmark = [pytest.mark.browser, pytest.mark.integration]
FIELD = "gender"  # from the photo: sure of some products, torn about others
LABELLED = 32  # products whose data says their gender; the model labels the rest
UNLABELLED = 10


@pytest.fixture(scope="module")
def live(
    tmp_path_factory: pytest.TempPathFactory, model_dir: Path, data_dir: Path
) -> Iterator[Live]:
    """A live server whose catalog has model labels to review (overrides conftest's)."""
    home = tmp_path_factory.mktemp("review-home")
    (home / "models").symlink_to(model_dir, target_is_directory=True)
    settings = load_settings(env={}).with_overrides(
        home=home, import_workers=0, admin_recall_check_minutes=0, recommend_retrain_minutes=0
    )
    app = create_app(settings)
    runtime = app.state.runtime
    app.state.admin.users.create("admin", PASSWORD, "admin")
    rows = _rows(data_dir, LABELLED + UNLABELLED + 2)
    photos: dict[str, bytes] = {}
    for i, row in enumerate(rows[: LABELLED + UNLABELLED]):
        data = (data_dir / "fashion-small" / "images" / f"{row['id']}.jpg").read_bytes()
        keys = ("masterCategory", "articleType", "baseColour", "season", "year", "usage")
        attributes = {k: row[k] for k in keys} | {"style_no": f"ST-{row['id']}"}
        if i < LABELLED:
            attributes[FIELD] = row[FIELD]
        record = ProductRecord(id=row["id"], title=row["productDisplayName"], attributes=attributes)
        runtime.products.save(record, [Upload(data, f"{row['id']}.jpg")], replace=False)
        photos[row["id"]] = data
    service = runtime.classification
    trained = service.train([FIELD], groups=["embedding"], min_support=3, text=False)
    assert trained[0]["active"], trained
    version = service.embedding_version
    CatalogLabeller(runtime.store, service.predictor, lambda: version).label()
    spare = [
        (r["id"], (data_dir / "fashion-small" / "images" / f"{r['id']}.jpg").read_bytes(), r)
        for r in rows[LABELLED + UNLABELLED :]
    ]
    with serving(app) as url:
        yield Live(url, photos, spare)


def no_sideways_scroll(tab: Tab, what: str) -> None:
    width = tab.page.evaluate("document.documentElement.scrollWidth")
    assert width <= 390, f"{what} scrolls sideways on a phone ({width} px)"


def card_ids(tab: Tab) -> list[str]:
    return tab.page.eval_on_selector_all(
        "#review-list > .review-card", "cards => cards.map(c => c.dataset.product)"
    )


def test_review_with_the_keyboard_and_by_clicking(tab: Tab, live: Live) -> None:
    page = tab.page
    page.set_viewport_size({"width": 1280, "height": 900})
    tab.go("/admin")
    page.get_by_role("link", name="Review", exact=True).click()
    page.wait_for_url(f"{live.url}/admin/review")
    page.wait_for_load_state("networkidle")
    assert page.get_by_role("heading", level=1).inner_text() == "Review"
    assert page.locator('nav a[aria-current="page"]').inner_text() == "Review"
    before = card_ids(tab)
    assert len(before) == UNLABELLED and set(before) <= set(live.photos)
    assert page.locator('[data-testid="remaining"]').inner_text() == str(UNLABELLED)
    first = page.locator("#review-list > .review-card").first
    assert "focused" in (first.get_attribute("class") or "")
    assert first.locator('[data-review="1"]').count() == 1  # the model's next guess
    tab.shot("review")

    # j / k move the highlight; y confirms the highlighted card.
    page.keyboard.press("j")
    assert "focused" in (page.locator(".review-card").nth(1).get_attribute("class") or "")
    page.keyboard.press("k")
    value = first.locator(".review-value").inner_text()
    page.keyboard.press("y")
    status = page.locator("#review-queue [role=status]")
    status.wait_for()
    assert status.inner_text().startswith(f"Confirmed {FIELD} = {value} for ")
    assert card_ids(tab) == before[1:]
    assert page.locator('[data-testid="reviewed"]').inner_text() == "1"
    assert page.locator('[data-testid="remaining"]').inner_text() == str(UNLABELLED - 1)
    focused = page.locator("#review-list > .review-card.focused")
    assert focused.get_attribute("data-product") == before[1]  # the next card is up
    assert page.evaluate("document.activeElement.dataset.product") == before[1]

    # Click the second card's first alternative.
    second = page.locator(f'.review-card[data-product="{before[2]}"]')
    alternative = second.locator('[data-review="1"]')
    picked = alternative.get_attribute("value")
    alternative.click()
    page.wait_for_function(
        "pid => !document.querySelector(`.review-card[data-product='${pid}']`)", arg=before[2]
    )
    assert f"Corrected {FIELD} = {picked} for " in status.inner_text()
    assert page.locator('[data-testid="reviewed"]').inner_text() == "2"
    assert card_ids(tab) == [before[1], *before[3:]]
    tab.shot("review-after")

    # Stored, not just shown: the product page says a person set them.
    tab.go(f"/admin/catalog/{before[2]}")
    row = page.locator("#labels tbody tr", has_text=FIELD)
    assert picked in row.inner_text() and "human" in row.inner_text()

    page.set_viewport_size({"width": 390, "height": 844})
    tab.go("/admin/review")
    no_sideways_scroll(tab, "the review page")
    tab.shot("review-phone")
    page.keyboard.press("y")  # the keys work on a phone-sized page too
    page.locator('[data-testid="reviewed"]', has_text="1").wait_for()
    assert len(card_ids(tab)) == UNLABELLED - 3


def test_product_page_labels_first_and_cards(tab: Tab, live: Live) -> None:
    page = tab.page
    page.set_viewport_size({"width": 1280, "height": 900})
    tab.go("/admin/review")
    link = page.locator("#review-list .review-title a").first
    title = link.inner_text()
    link.click()
    page.wait_for_load_state("networkidle")
    assert page.get_by_role("heading", level=1).inner_text() == title
    labels = page.locator("#labels")
    row = labels.locator("tbody tr", has_text=FIELD)
    assert "model" in row.inner_text() and "%" in row.inner_text()
    assert row.get_by_role("button", name="Confirm").count() == 1
    shop_row = labels.locator("tbody tr", has_text="articleType")
    assert shop_row.count() == 0 or "shop" in shop_row.inner_text()
    imagenet = page.locator('[data-testid="imagenet"]')
    assert imagenet.get_attribute("open") is None  # folded away
    facts = page.locator(".product-facts").inner_text()
    assert facts.index("Labels") < facts.index("What the generic ImageNet model sees")
    details = page.locator('[data-testid="attributes"]').inner_text()
    assert "usage" in details and "style_no" not in details and "year" not in details
    page.get_by_text("All attributes").click()
    assert "style_no" in page.locator('[data-testid="all-attributes"]').inner_text()
    assert page.locator(".panel .cards .card img").count() >= 5  # similar products, photos
    tab.shot("product-labels")
    # Confirm the model's label in place.
    row.get_by_role("button", name="Confirm").click()
    page.locator("#labels [role=status]").wait_for()
    assert "human" in labels.locator("tbody tr", has_text=FIELD).inner_text()

    page.set_viewport_size({"width": 390, "height": 844})
    tab.go(page.url.removeprefix(live.url))
    no_sideways_scroll(tab, "the product page")
    tab.shot("product-phone")


def test_upload_shows_the_stored_shop_labels(tab: Tab, live: Live, tmp_path: Path) -> None:
    pid, data, row = live.spare[0]
    photo = tmp_path / f"{pid}.jpg"
    photo.write_bytes(data)
    tab.page.set_viewport_size({"width": 1280, "height": 900})
    tab.go("/admin/upload")
    tab.page.get_by_label("Product id", exact=True).fill(pid)
    tab.page.get_by_label("Title", exact=True).fill(row["productDisplayName"])
    tab.page.set_input_files("#up-image", str(photo))
    tab.page.get_by_role("button", name="Upload and analyse").click()
    stored = tab.page.locator('[data-testid="upload-labels"]')
    stored.wait_for()
    assert FIELD in stored.inner_text() and "model" in stored.inner_text()
    tab.shot("upload-labels")
