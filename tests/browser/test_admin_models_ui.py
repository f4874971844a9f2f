"""Models & jobs in a real browser: an admin trains a classifier from the form, watches the
job finish, opens the version (confusion heatmap, calibration), compares two versions,
labels the catalog again and evaluates the recommendations; screenshots on a desktop and
a 390 px phone go to test-artifacts/admin/.

The shop is synthetic (stored photo features in clusters per product type, no CNN), so
the test needs neither the real data nor the model.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from admin_live import Tab, chromium_tab, serving

from vitrine.api.app import create_app
from vitrine.catalog.store import FeatureRecord, ImageRecord, ProductRecord
from vitrine.classify.finetune.export import base_version
from vitrine.config import load_settings
from vitrine.vision.features import FEATURE_VERSION, VECTOR_DIMS

pytestmark = [pytest.mark.browser, pytest.mark.integration]

PASSWORD = "browser test password"  # admin_live.sign_in's
EMB_VERSION = "browser-test-embedding"
# product type -> (master category, products); similar types share part of their cluster
TYPES = {
    "Tshirts": ("Apparel", 80),
    "Shirts": ("Apparel", 68),
    "Tops": ("Apparel", 52),
    "Jeans": ("Apparel", 60),
    "Trousers": ("Apparel", 44),
    "Casual Shoes": ("Footwear", 60),
    "Sports Shoes": ("Footwear", 52),
    "Sandals": ("Footwear", 36),
    "Handbags": ("Accessories", 40),
    "Watches": ("Accessories", 32),
}
NOISE = 2.0  # photo features: about 85% held-out accuracy, so that there are confusions
DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}


def _shop(app: Any) -> None:
    """Products with photo features in noisy clusters, a first articleType classifier and
    recommendation models on 60 customers' purchases."""
    runtime = app.state.admin.vitrine
    service = runtime.classification_for(EMB_VERSION)
    service.on_activated = runtime.label_catalog  # as the runtime wires the one in service
    runtime.override(classification=service)
    rng = np.random.default_rng(11)
    families = rng.normal(size=(3, 32)) * 2.0
    records, images = [], []
    masters = list(dict.fromkeys(m for m, _ in TYPES.values()))
    for name, (master, n) in TYPES.items():
        family = families[masters.index(master)]
        centre = family + rng.normal(size=32) * 1.1
        for j in range(n):
            pid = f"{name.lower().replace(' ', '-')}-{j:03d}"
            vector = (centre + rng.normal(scale=NOISE, size=32)).astype(np.float32)
            features = [FeatureRecord("embedding", EMB_VERSION, vector)]
            features += [
                FeatureRecord(kind, FEATURE_VERSION, rng.random(dim).astype(np.float32))
                for kind, dim in VECTOR_DIMS.items()
            ]
            images.append(
                ImageRecord(pid, f"h{pid}", f"k{pid}", "JPEG", 60, 80, 100, features=features)
            )
            # a fifth of the catalog came without a type: the classifier labels those
            attributes = {"masterCategory": master} | ({} if j % 5 == 4 else {"articleType": name})
            records.append(
                ProductRecord(pid, f"Look {rng.integers(10_000):04d}", attributes=attributes)
            )
    runtime.store.upsert_products(records)
    runtime.store.add_images(images)
    service.train(["articleType"], groups=["embedding"], min_support=5)
    ids = [r.id for r in records]
    start = datetime.now(UTC) - timedelta(days=40)
    runtime.recommendations.add_events(
        [
            {
                "user_id": f"c{u:03d}",
                "product_id": ids[(11 * u + 5 * j + (u % 4) * 31) % len(ids)],
                "type": "purchase",
                "timestamp": start + timedelta(days=(u % 30) + 2 * j, hours=u % 11),
            }
            for u in range(60)
            for j in range(4)
        ]
    )
    runtime.recommendations.train()


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("models-home")


@pytest.fixture(scope="module")
def server(home: Path) -> Iterator[str]:
    settings = load_settings(env={}).with_overrides(
        home=home,
        admin_recall_check_minutes=0,
        recommend_retrain_minutes=0,
        classify_feature_groups="embedding",
    )
    app = create_app(settings, warm=False)
    app.state.admin.users.create("admin", PASSWORD, "admin")
    _shop(app)
    with serving(app) as url:
        yield url


@pytest.fixture()
def tab(server: str) -> Iterator[Tab]:
    with chromium_tab(server, DESKTOP) as t:
        yield t


# The elements that stick out to the right (outside a scrolling table wrapper).
WIDE = """width => [...document.querySelectorAll("main *")]
  .filter(e => e.getBoundingClientRect().right > width + 1 && !e.closest(".table-scroll"))
  .slice(0, 5).map(e => e.tagName + "." + e.className + ": " + e.textContent.trim().slice(0, 40))"""


def _jobs_settled(tab: Tab) -> None:
    """Wait until the jobs panel (polling every 2 s) shows no queued or running job."""
    tab.page.wait_for_selector('#jobs[data-active="no"]', timeout=60_000)


def _watch(tab: Tab, notice: str) -> Any:
    """The job a form queued (its notice names it): wait until the jobs panel, which polls
    itself, shows it finished and nothing else waits; returns its row."""
    alert = tab.page.locator(f"{notice} .alert")
    alert.wait_for()
    text = alert.inner_text()
    job_id = re.search(r"Job #(\d+)", text)
    assert job_id, text
    row = tab.page.locator(f"#job-{job_id.group(1)}")
    row.and_(tab.page.locator(":not([data-state=queued]):not([data-state=running])")).wait_for(
        timeout=60_000
    )
    _jobs_settled(tab)
    return row


def _both_sizes(tab: Tab, name: str) -> None:
    """Screenshots on a desktop and a phone; the phone page never scrolls sideways."""
    tab.page.set_viewport_size(DESKTOP)
    tab.shot(f"{name}-desktop")
    tab.page.set_viewport_size(PHONE)
    tab.page.reload()  # as a phone opens it (the charts take their size on loading)
    tab.page.wait_for_load_state("networkidle")
    width = tab.page.evaluate("document.documentElement.scrollWidth")
    wide = tab.page.evaluate(WIDE, PHONE["width"]) if width > PHONE["width"] else []
    assert width <= PHONE["width"], f"{name} scrolls sideways on a phone ({width} px): {wide}"
    tab.shot(f"{name}-phone")
    tab.page.set_viewport_size(DESKTOP)
    tab.page.reload()
    tab.page.wait_for_load_state("networkidle")


def test_train_watch_inspect_compare_and_relabel(tab: Tab) -> None:
    page = tab.page
    tab.go("/admin")
    page.get_by_role("link", name="Models & jobs").click()
    page.wait_for_url(tab.url + "/admin/models")
    assert page.get_by_role("heading", level=1).inner_text() == "Models & jobs"
    classifiers = page.locator("#classifiers")
    assert "articleType-v1" in classifiers.inner_text()
    _jobs_settled(tab)  # the labelling the first version queued

    # Train: articleType is ticked (it has a model); add masterCategory; always activate;
    # photo features: embedding and colour (v1 used the embedding alone).
    page.get_by_role("group", name="Fields to train").get_by_label("masterCategory").check()
    page.get_by_label("Activation").select_option("always")
    page.get_by_label("Photo features").select_option("embedding+color")
    page.get_by_role("button", name="Train", exact=True).click()
    job = _watch(tab, "#train-result")
    assert (
        "Training articleType, masterCategory is queued"
        in page.locator("#train-result").inner_text()
    )
    assert job.get_attribute("data-state") == "done", job.inner_text()
    assert "Train classifiers" in job.inner_text()
    assert "articleType-v2" in job.inner_text()
    # The list of versions refreshed itself when the jobs ended.
    page.wait_for_selector("#classifiers >> text=masterCategory-v1")
    assert "active articleType-v2" in classifiers.inner_text()

    # Evaluate the recommendations on the default split date (a week before the last event).
    page.get_by_role("button", name="Evaluate").click()
    evaluation = _watch(tab, "#rec-result")
    assert evaluation.get_attribute("data-state") == "done", evaluation.inner_text()
    page.wait_for_selector("#evaluations table.eval-table")
    assert "popularity_4w" in page.locator("#evaluations").inner_text()
    _both_sizes(tab, "models")

    # A version's page: per-class scores, the heatmap of the most confused classes, calibration.
    page.locator("#classifiers").get_by_role("link", name="articleType-v2").click()
    page.wait_for_url("**/admin/models/*")
    page.wait_for_load_state("networkidle")
    assert page.get_by_test_id("heatmap").is_visible()
    assert page.locator("table.heatmap td.diag").count() >= 5
    drawn = page.eval_on_selector("#chart-reliability", "c => !!c._chart")
    assert drawn, "the reliability chart was not drawn"
    assert page.locator("table.per-class tbody tr").count() == len(TYPES)
    _both_sizes(tab, "model-detail")

    # Compare it with the first version.
    page.get_by_label("Compare with").select_option(label="articleType-v1")
    page.get_by_role("button", name="Compare", exact=True).click()
    page.wait_for_url("**/admin/models/compare?*")
    heading = page.get_by_role("heading", level=1).inner_text()
    assert heading == "Compare articleType-v2 and articleType-v1"
    assert page.locator("table.compare-classes tbody tr").count() == len(TYPES)
    _both_sizes(tab, "model-compare")

    # Label the catalog again with the active versions.
    tab.go("/admin/models")
    page.get_by_role("button", name="Re-label the catalog").click()
    done = _watch(tab, "#label-result")
    assert "labelled again" in page.locator("#label-result").inner_text()
    assert done.get_attribute("data-state") == "done", done.inner_text()
    assert "Label the catalog" in done.inner_text() and "labelled 102 products" in done.inner_text()

    # The overview lists the active classifiers among its active models.
    tab.go("/admin")
    models = page.locator("section.panel").filter(has_text="Active models").inner_text()
    assert "articleType-v2" in models and "masterCategory-v1" in models


def test_the_cnn_panel_offers_fine_tuning_and_a_switch_that_fails_safely(
    tab: Tab, home: Path
) -> None:
    """A fine-tuned version whose file is damaged: putting it in service fails as a job
    with its reason, and the pretrained CNN stays in service."""
    page = tab.page
    base = base_version()
    version = f"{base}-ftdamaged0001"
    models = home / "models"
    models.mkdir(parents=True, exist_ok=True)
    (models / f"{version}.onnx").write_bytes(b"damaged")
    record = {"version": version, "base_version": base, "created_at": "2026-12-01T10:00:00Z",
              "method": "whole network", "input_size": 112, "device": "cpu",
              "train_seconds": 1620, "products": 35_000,
              "fields": {"articleType": [], "masterCategory": []},
              "metrics": {"evaluation_accuracy": {"articleType": 0.865,
                                                  "masterCategory": 0.991}}}  # fmt: skip
    (models / f"{version}.json").write_text(json.dumps(record))
    tab.go("/admin/models")
    panel = page.locator("section.panel").filter(has_text="Photo recognition (CNN)")
    assert base in panel.locator(".cnn-in-service").inner_text()
    assert "articleType 86.5%" in panel.inner_text()
    assert panel.get_by_role("button", name="Fine-tune the CNN").is_visible()
    panel.scroll_into_view_if_needed()
    _both_sizes(tab, "models-cnn")
    panel = page.locator("section.panel").filter(has_text="Photo recognition (CNN)")
    panel.get_by_role("button", name=f"Put in service {version}").click()
    job = _watch(tab, "#cnn-notice")
    assert f"Putting {version} in service" in page.locator("#cnn-notice").inner_text()
    assert job.get_attribute("data-state") == "failed", job.inner_text()
    assert "Switch the CNN" in job.inner_text()
    assert base in page.locator(".cnn-in-service").inner_text()
