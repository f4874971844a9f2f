"""The admin UI's live test server and a signed-in browser tab, shared by the browser tests.

Playwright never downloads a browser here: it launches the system's ``chromium``
(``make test`` installs it with apt; ``VITRINE_CHROMIUM`` may name another binary).
Screenshots go to test-artifacts/admin/.
"""

from __future__ import annotations

import csv
import os
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "test-artifacts" / "admin"
CHROMIUM = os.environ.get("VITRINE_CHROMIUM") or shutil.which("chromium")
PASSWORD = "browser test password"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
N_PRODUCTS = 16


@dataclass
class Live:
    url: str
    photos: dict[str, bytes]  # product id -> photo bytes (stored in the catalog)
    spare: list[tuple[str, bytes, dict[str, str]]]  # real photos not in the catalog yet


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _rows(data_dir: Path, n: int) -> list[dict[str, str]]:
    src = data_dir / "fashion-small"
    with (src / "styles.csv").open(newline="") as handle:
        rows = [r for r in csv.DictReader(handle) if (src / "images" / f"{r['id']}.jpg").is_file()]
    return rows[:n]


@dataclass
class Tab:
    """A signed-in page that records console errors and uncaught exceptions."""

    page: Any
    url: str
    errors: list[str] = field(default_factory=list)

    def go(self, path: str) -> None:
        self.page.goto(self.url + path)
        self.page.wait_for_load_state("networkidle")

    def shot(self, name: str, full: bool = True) -> None:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        self.page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=full)


def sign_in(page: Any, url: str) -> None:
    page.goto(url + "/admin")
    assert "/admin/login" in page.url
    page.get_by_label("User name").fill("admin")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(url + "/admin")


@contextmanager
def chromium() -> Iterator[Any]:
    """The system's Chromium under Playwright, headless (the test is skipped without it)."""
    if not CHROMIUM:
        pytest.skip("chromium is not installed (make test installs it: apt-get install chromium)")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@contextmanager
def chromium_tab(url: str, viewport: dict[str, int]) -> Iterator[Tab]:
    """A signed-in tab of its own Chromium on the server at ``url``; the test fails when
    the page logged a console error or raised."""
    with chromium() as browser:
        context = browser.new_context(viewport=viewport)
        page = context.new_page()
        page.set_default_timeout(30_000)
        t = Tab(page, url)
        page.on("console", lambda m: t.errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: t.errors.append(str(e)))
        sign_in(page, url)
        yield t
        context.close()
    assert t.errors == [], f"console errors: {t.errors}"


@contextmanager
def serving(app: Any, start_seconds: float = 120) -> Iterator[str]:
    """``app`` served by uvicorn on a free loopback port in a thread; yields its URL."""
    import uvicorn

    port = _free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, access_log=False)
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + start_seconds
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the test server did not start")
        time.sleep(0.1)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
