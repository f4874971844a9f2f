"""Fixtures of the browser tests: a live server with real catalog photos, Chromium, and a
signed-in tab (see admin_live.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from admin_live import (
    N_PRODUCTS,
    PASSWORD,
    Live,
    Tab,
    _rows,
    chromium,
    serving,
    sign_in,
)

from vitrine.api.app import create_app
from vitrine.catalog.products import Upload
from vitrine.catalog.store import ProductRecord
from vitrine.config import load_settings


@pytest.fixture(scope="module")
def live(
    tmp_path_factory: pytest.TempPathFactory, model_dir: Path, data_dir: Path
) -> Iterator[Live]:
    home = tmp_path_factory.mktemp("admin-home")
    (home / "models").symlink_to(model_dir, target_is_directory=True)
    settings = load_settings(env={}).with_overrides(
        home=home, import_workers=0, admin_recall_check_minutes=0
    )
    app = create_app(settings)
    admin = app.state.admin
    admin.users.create("admin", PASSWORD, "admin")
    rows = _rows(data_dir, N_PRODUCTS + 6)
    photos: dict[str, bytes] = {}
    for row in rows[:N_PRODUCTS]:
        data = (data_dir / "fashion-small" / "images" / f"{row['id']}.jpg").read_bytes()
        record = ProductRecord(
            id=row["id"],
            title=row["productDisplayName"],
            attributes={k: row[k] for k in ("masterCategory", "articleType", "baseColour")},
        )
        app.state.runtime.products.save(record, [Upload(data, f"{row['id']}.jpg")], replace=False)
        photos[row["id"]] = data
    spare = [
        (
            r["id"],
            (data_dir / "fashion-small" / "images" / f"{r['id']}.jpg").read_bytes(),
            r,
        )
        for r in rows[N_PRODUCTS:]
    ]
    with serving(app) as url:
        yield Live(url, photos, spare)


@pytest.fixture(scope="module")
def browser(live: Live) -> Iterator[Any]:
    with chromium() as browser:
        yield browser


@pytest.fixture()
def tab(browser: Any, live: Live) -> Iterator[Tab]:
    context = browser.new_context(viewport={"width": 1360, "height": 900})
    page = context.new_page()
    page.set_default_timeout(30_000)
    t = Tab(page, live.url)
    page.on("console", lambda m: t.errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: t.errors.append(str(e)))
    sign_in(page, live.url)
    yield t
    context.close()
    assert t.errors == [], f"console errors: {t.errors}"
