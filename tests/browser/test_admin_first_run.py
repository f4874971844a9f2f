"""First run in a real browser: the service's address leads to the admin UI, and the
one-time setup link creates the first admin, who lands signed in."""

from __future__ import annotations

from pathlib import Path

import pytest
from admin_live import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS, serving

from vitrine.api.app import create_app
from vitrine.config import load_settings

pytestmark = [pytest.mark.browser, pytest.mark.integration]


def test_setup_link_creates_the_first_admin_on_a_phone(tmp_path: Path) -> None:
    if not CHROMIUM:
        pytest.skip("chromium is not installed (make test installs it: apt-get install chromium)")
    sync_api = pytest.importorskip("playwright.sync_api")
    home = tmp_path / "home"
    settings = load_settings(env={}).with_overrides(home=home, admin_recall_check_minutes=0)
    app = create_app(settings, warm=False)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with serving(app) as url, sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 390, "height": 844})
        errors: list[str] = []
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.goto(url + "/")
        assert "/admin/login" in page.url
        assert "No admin account exists yet" in page.get_by_role("status").inner_text()
        page.screenshot(path=str(ARTIFACTS / "first-run-login.png"), full_page=True)

        token = (home / "setup-token").read_text().strip()
        page.goto(f"{url}/admin/setup?token={token}")
        page.get_by_label("User name").fill("owner")
        page.get_by_label("Password (at least 10 characters)").fill("a good long password")
        page.get_by_label("Password again").fill("a good long passw0rd")
        page.get_by_role("button", name="Create the admin account").click()
        assert page.get_by_role("alert").inner_text() == "The two passwords differ."
        assert page.get_by_label("User name").input_value() == "owner"  # kept
        page.screenshot(path=str(ARTIFACTS / "first-run-setup-error.png"), full_page=True)
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= 390, f"the setup page scrolls sideways on a phone ({width} px)"

        page.get_by_label("Password (at least 10 characters)").fill("a good long password")
        page.get_by_label("Password again").fill("a good long password")
        page.get_by_role("button", name="Create the admin account").click()
        page.wait_for_url(url + "/admin")
        assert "owner" in page.locator(".who").inner_text()
        page.screenshot(path=str(ARTIFACTS / "first-run-signed-in.png"), full_page=True)
        assert not (home / "setup-token").exists()
        page.goto(f"{url}/admin/setup?token={token}")  # used: back to the sign-in page
        assert "/admin" in page.url and "/admin/setup" not in page.url
        # the refused form's 422 is logged by Chromium; nothing else may be
        assert [e for e in errors if "status of 422" not in e] == []
        browser.close()
