"""The change feed: every write to a product or its photos leaves a row in ``change_feed``.

Database triggers write the rows, in the same transaction as the change, so nothing
that writes the catalog (API, bulk import, serverless handler, another process) can
forget to. PostgreSQL also sends ``NOTIFY vitrine_changes`` so that followers wake at
once; on SQLite they poll.

Reading is by id. On PostgreSQL ids are handed out when a row is inserted but become
visible when its transaction commits, so a reader may see id 7 before id 6: the
reader remembers such gaps and asks for them again for a while (``FeedCursor``).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from sqlalchemy import Connection, Engine, delete, func, or_, select, text

from vitrine.catalog.models import ChangeEvent

CHANNEL = "vitrine_changes"
# (table, column holding the product id, events)
_WATCHED = (
    ("products", "id", "INSERT OR UPDATE OR DELETE"),
    ("images", "product_id", "INSERT OR DELETE"),
)

_PG_FUNCTION = f"""
CREATE OR REPLACE FUNCTION vitrine_change_feed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO change_feed (product_id, op, created_at)
  VALUES (
    to_jsonb(CASE WHEN TG_OP = 'DELETE' THEN OLD ELSE NEW END) ->> TG_ARGV[0],
    lower(TG_OP),
    extract(epoch FROM clock_timestamp())
  );
  PERFORM pg_notify('{CHANNEL}', '');
  RETURN NULL;
END $$
"""

_SQLITE_NOW = "((julianday('now') - 2440587.5) * 86400.0)"


def _trigger_names() -> list[tuple[str, str, str, str]]:
    """(trigger name, table, column, event) for every trigger the feed needs."""
    out = []
    for table, column, events in _WATCHED:
        for event in events.split(" OR "):
            out.append((f"vitrine_feed_{table}_{event.lower()}", table, column, event))
    return out


def install_triggers(conn: Connection) -> None:
    """Create the triggers that fill the feed when they are missing (idempotent)."""
    dialect = conn.dialect.name
    if dialect == "postgresql":
        existing = set(
            conn.scalars(text("SELECT tgname FROM pg_trigger WHERE tgname LIKE 'vitrine_feed_%'"))
        )
        wanted = [t for t in _trigger_names() if t[0] not in existing]
        if not wanted:
            return
        conn.execute(text(_PG_FUNCTION))
        for name, table, column, event in wanted:
            conn.execute(
                text(
                    f"CREATE TRIGGER {name} AFTER {event} ON {table} FOR EACH ROW "
                    f"EXECUTE FUNCTION vitrine_change_feed('{column}')"
                )
            )
    elif dialect == "sqlite":
        for name, table, column, event in _trigger_names():
            row = "OLD" if event == "DELETE" else "NEW"
            conn.execute(
                text(
                    f"CREATE TRIGGER IF NOT EXISTS {name} AFTER {event} ON {table} BEGIN "
                    f"INSERT INTO change_feed (product_id, op, created_at) "
                    f"VALUES ({row}.{column}, '{event.lower()}', {_SQLITE_NOW}); END"
                )
            )
    else:
        raise RuntimeError(f"database dialect {dialect!r} is not supported")


def drop_triggers(conn: Connection) -> None:
    for name, table, _column, _event in _trigger_names():
        on = f" ON {table}" if conn.dialect.name == "postgresql" else ""
        conn.execute(text(f"DROP TRIGGER IF EXISTS {name}{on}"))
    if conn.dialect.name == "postgresql":
        conn.execute(text("DROP FUNCTION IF EXISTS vitrine_change_feed()"))


def latest_id(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.scalar(select(func.max(ChangeEvent.id))) or 0)


def prune(engine: Engine, older_than_s: float) -> int:
    """Forget changes older than ``older_than_s`` seconds; returns how many."""
    with engine.begin() as conn:
        result = conn.execute(
            delete(ChangeEvent).where(ChangeEvent.created_at < time.time() - older_than_s)
        )
        return int(result.rowcount or 0)


@dataclass
class FeedCursor:
    """Where one follower is in the feed, with the ids it has not seen yet below that."""

    last_id: int = 0
    gap_ttl_s: float = 60.0
    max_gaps: int = 10_000
    gaps: dict[int, float] = field(default_factory=dict)  # id -> when it was first missed

    def read(self, engine: Engine, limit: int = 10_000) -> list[tuple[int, str, str]]:
        """The changes not seen yet, as (id, product id, op), oldest first."""
        now = time.monotonic()
        self.gaps = {i: t for i, t in self.gaps.items() if now - t < self.gap_ttl_s}
        query = select(ChangeEvent.id, ChangeEvent.product_id, ChangeEvent.op)
        condition = ChangeEvent.id > self.last_id
        if self.gaps:
            condition = or_(condition, ChangeEvent.id.in_(sorted(self.gaps)))
        query = query.where(condition).order_by(ChangeEvent.id).limit(limit)
        with engine.connect() as conn:
            rows = [(int(i), p, o) for i, p, o in conn.execute(query)]
        self._advance([r[0] for r in rows], now)
        return rows

    def _advance(self, ids: Sequence[int], now: float) -> None:
        expected = self.last_id + 1
        for i in ids:
            if i in self.gaps:
                del self.gaps[i]
                continue
            for missing in range(max(expected, i - self.max_gaps), i):
                self.gaps.setdefault(missing, now)
            expected = i + 1
            self.last_id = max(self.last_id, i)
        if len(self.gaps) > self.max_gaps:
            for i in sorted(self.gaps)[: len(self.gaps) - self.max_gaps]:
                del self.gaps[i]
