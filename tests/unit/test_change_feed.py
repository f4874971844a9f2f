"""The change feed: triggers record every product write; the cursor never loses a commit."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import insert, text

from backends import Backend, make_backend
from vitrine.catalog.change_feed import FeedCursor, install_triggers, latest_id, prune
from vitrine.catalog.database import make_engine, migrate
from vitrine.catalog.models import Product, utcnow
from vitrine.catalog.store import CatalogStore, ProductRecord


@pytest.fixture()
def store(tmp_path: Path, backend: Backend) -> Iterator[CatalogStore]:
    engine = make_engine(backend.settings(tmp_path).resolved_database_url)
    migrate(engine)
    yield CatalogStore(engine)
    engine.dispose()


def test_every_write_is_in_the_feed(store: CatalogStore) -> None:
    cursor = FeedCursor(last_id=latest_id(store.engine))
    store.upsert_products([ProductRecord("a"), ProductRecord("b")])
    store.update_product("a", {"title": "A"})
    store.delete_product("b")
    assert [(p, op) for _, p, op in cursor.read(store.engine)] == [
        ("a", "insert"),
        ("b", "insert"),
        ("a", "update"),
        ("b", "delete"),
    ]
    assert cursor.read(store.engine) == []
    with store.engine.begin() as conn:
        install_triggers(conn)  # idempotent: no second trigger, no second row per write
    store.update_product("a", {"title": "A2"})
    assert len(cursor.read(store.engine)) == 1
    assert prune(store.engine, older_than_s=-1) >= 5 and latest_id(store.engine) == 0


def test_a_late_commit_of_an_earlier_id_is_not_lost(
    tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    # PostgreSQL only: SQLite has one writer, so its ids always commit in order.
    engine = make_engine(make_backend("server", request).settings(tmp_path).resolved_database_url)
    migrate(engine)
    store = CatalogStore(engine)
    cursor = FeedCursor(last_id=latest_id(store.engine))
    now = utcnow()
    row = {"title": None, "available": True, "attributes": {}, "created_at": now, "updated_at": now}
    slow = store.engine.connect()
    slow_tx = slow.begin()
    slow.execute(insert(Product), [{"id": "slow", **row}])  # takes the smaller feed id
    store.upsert_products([ProductRecord("fast")])  # commits first
    assert [p for _, p, _ in cursor.read(store.engine)] == ["fast"]
    assert cursor.gaps  # the uncommitted id is remembered
    slow_tx.commit()
    slow.close()
    assert [p for _, p, _ in cursor.read(store.engine)] == ["slow"]
    assert not cursor.gaps
    engine.dispose()


def test_triggers_come_back_after_a_table_rebuild(store: CatalogStore) -> None:
    with store.engine.begin() as conn:
        for name in [r[0] for r in conn.execute(text(_TRIGGER_NAMES[store.engine.dialect.name]))]:
            on = " ON products" if "products" in name else " ON images"
            conn.execute(
                text(f"DROP TRIGGER {name}" + (on if store.engine.dialect.name != "sqlite" else ""))
            )
    migrate(store.engine)
    cursor = FeedCursor(last_id=latest_id(store.engine))
    store.upsert_products([ProductRecord("c")])
    assert [p for _, p, _ in cursor.read(store.engine)] == ["c"]


_TRIGGER_NAMES = {
    "sqlite": "SELECT name FROM sqlite_master WHERE type = 'trigger'",
    "postgresql": "SELECT tgname FROM pg_trigger WHERE tgname LIKE 'vitrine_feed_%'",
}
