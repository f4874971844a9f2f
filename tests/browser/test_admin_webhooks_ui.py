"""Webhooks in a real browser: an admin subscribes a small local receiver, copies the
secret shown once, pings it and watches the delivery log turn delivered, then pauses and
deletes the webhook; screenshots on a desktop and a 390 px phone go to
test-artifacts/admin/.

The shop is empty (no CNN, no catalog): webhooks need neither.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from admin_live import PASSWORD, Tab, chromium_tab, serving

from receiver import Received, receiving
from vitrine.api.app import create_app
from vitrine.config import load_settings
from vitrine.webhooks.signing import HEADER, verify

pytestmark = [pytest.mark.browser, pytest.mark.integration]

DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    home: Path = tmp_path_factory.mktemp("webhooks-home")
    settings = load_settings(env={}).with_overrides(
        home=home, admin_recall_check_minutes=0, recommend_retrain_minutes=0, webhook_poll_s=1.0
    )
    app = create_app(settings, warm=False)
    app.state.admin.users.create("admin", PASSWORD, "admin")
    with serving(app) as url:
        yield url


@pytest.fixture()
def receiver() -> Iterator[Received]:
    with receiving() as received:
        yield received


@pytest.fixture()
def tab(server: str) -> Iterator[Tab]:
    with chromium_tab(server, DESKTOP) as t:
        yield t


def _phone(tab: Tab, name: str) -> None:
    """A screenshot at phone width; the page never scrolls sideways."""
    tab.page.set_viewport_size(PHONE)
    tab.page.reload()
    tab.page.wait_for_load_state("networkidle")
    width = tab.page.evaluate("document.documentElement.scrollWidth")
    assert width <= PHONE["width"], f"{name} scrolls sideways on a phone ({width} px)"
    tab.shot(f"{name}-phone")
    tab.page.set_viewport_size(DESKTOP)
    tab.page.reload()
    tab.page.wait_for_load_state("networkidle")


def test_subscribe_ping_see_it_delivered_pause_and_delete(tab: Tab, receiver: Received) -> None:
    page = tab.page
    tab.go("/admin")
    page.get_by_role("link", name="Webhooks").click()
    page.wait_for_url(tab.url + "/admin/webhooks")
    assert page.get_by_role("heading", level=1).inner_text() == "Webhooks"
    assert page.get_by_text("No webhooks yet.").is_visible()

    page.get_by_label("Receiver URL").fill(receiver.url)
    page.get_by_label("import.finished").check()
    page.get_by_label("model.activated").check()
    page.get_by_label("Description").fill("The shop's ERP")
    page.get_by_role("button", name="Add webhook").click()
    secret_box = page.get_by_test_id("webhook-secret")
    secret_box.wait_for()
    secret = secret_box.locator(".code-block").inner_text().strip()
    assert secret.startswith("whsec_")
    row = page.locator("#webhook-subscriptions tbody tr").first
    assert receiver.url in row.inner_text() and "import.finished" in row.inner_text()
    tab.shot("webhooks-created-desktop")

    row.get_by_role("button", name="Ping").click()
    page.get_by_text("Ping queued").wait_for()
    # The log polls itself: the leader's delivery loop sends the ping within seconds.
    page.locator('#webhook-log tr[data-state="delivered"]').wait_for(timeout=30_000)
    delivered = page.locator('#webhook-log tr[data-state="delivered"]').first.inner_text()
    assert "ping" in delivered and "HTTP 200" in delivered
    headers, body = receiver.requests[0]
    verify(secret, body, headers[HEADER])
    assert json.loads(body)["type"] == "ping"
    tab.shot("webhooks-delivered-desktop")
    page.reload()
    assert secret not in page.content()  # the secret was shown once only
    _phone(tab, "webhooks")

    page.locator("#webhook-subscriptions").get_by_role("button", name="Pause").click()
    page.locator('#webhook-subscriptions tr[data-active="no"]').wait_for()
    assert page.locator("#webhook-subscriptions").get_by_role("button", name="Ping").count() == 0
    page.get_by_text("Delete…").click()
    page.get_by_role("button", name="Delete for good").click()
    page.get_by_text("No webhooks yet.").wait_for()
    tab.shot("webhooks-deleted-desktop")
