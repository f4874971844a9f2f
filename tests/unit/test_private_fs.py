"""The home folder, its sub-folders and the SQLite database are the owner's only."""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text

from vitrine.catalog.store import ProductRecord
from vitrine.config import load_settings
from vitrine.runtime import Runtime


def mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.fixture()
def permissive_umask() -> Iterator[None]:
    """The usual 022, so that only Vitrine's own modes can make the files private."""
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def test_a_fresh_home_is_owner_only(tmp_path: Path, permissive_umask: None) -> None:
    home = tmp_path / "a" / "home"
    vitrine = Runtime(load_settings(env={}).with_overrides(home=home))
    try:
        vitrine.store.upsert_products([ProductRecord(id="p1", title="A shirt")])
        vitrine.blobs.put("images/ab/cd/abcd.jpg", b"photo")
        with vitrine.engine.connect() as conn:  # the WAL and its index exist while open
            conn.execute(text("SELECT count(*) FROM products")).scalar_one()
            db = home / "vitrine.db"
            for path in (db, db.with_name("vitrine.db-wal"), db.with_name("vitrine.db-shm")):
                assert path.exists() and mode(path) == 0o600, (path, oct(mode(path)))
    finally:
        vitrine.close()
    for folder in (home.parent, home, home / "blobs", home / "blobs" / "images" / "ab"):
        assert mode(folder) == 0o700, (folder, oct(mode(folder)))
    assert mode(home / "blobs" / "images" / "ab" / "cd" / "abcd.jpg") == 0o600


def test_an_older_looser_home_is_tightened_on_start(
    tmp_path: Path, permissive_umask: None, caplog: pytest.LogCaptureFixture
) -> None:
    home = tmp_path / "home"
    Runtime(load_settings(env={}).with_overrides(home=home)).close()
    (home / "imports").mkdir()
    for path, loose in ((home, 0o755), (home / "imports", 0o775), (home / "vitrine.db", 0o644)):
        os.chmod(path, loose)
    with caplog.at_level(logging.WARNING, logger="vitrine.private_fs"):
        Runtime(load_settings(env={}).with_overrides(home=home)).close()
    assert mode(home) == 0o700 and mode(home / "imports") == 0o700
    assert mode(home / "vitrine.db") == 0o600
    assert "vitrine.db was mode 644: tightened to 600" in caplog.text
