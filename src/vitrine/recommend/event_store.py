"""Events in the database: idempotent batched writes, the log as arrays, attribution.

Writes use ``INSERT ... ON CONFLICT DO NOTHING`` on the event key, so a re-sent event or
a re-imported file adds nothing; :meth:`EventStore.add` returns only the new events
(what the in-memory state must learn).
"""

from __future__ import annotations

import csv
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, Insert, String, extract, func, select, type_coerce
from sqlalchemy.dialects import postgresql, sqlite

from vitrine.catalog.models import Event, RecommendationServed
from vitrine.recommend.events import EventError, EventRecord, make_event

_BATCH = 2_000
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _from_epoch(seconds: Any) -> datetime:
    """A UTC time from seconds since 1970 (exact for PostgreSQL's numeric epoch); raises
    OverflowError or ValueError for one a datetime cannot hold (infinity too)."""
    return _EPOCH + timedelta(microseconds=round(seconds * 1_000_000))


@dataclass
class EventColumns:
    """Which CSV column holds each event field; ``type`` may instead be a constant."""

    user: str = "user_id"
    item: str = "product_id"
    time: str | None = "timestamp"
    type_column: str | None = None
    type_value: str | None = None  # every row has this type (e.g. "purchase")
    event_id: str | None = None
    session: str | None = None
    price: str | None = None


@dataclass
class EventImportReport:
    """Counts and rejects of one event import."""

    rows: int = 0
    added: int = 0
    duplicates: int = 0
    rejected: list[tuple[int, str]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "rows": self.rows,
            "added": self.added,
            "duplicates": self.duplicates,
            "rejected": len(self.rejected),
            "first_rejects": [{"line": n, "reason": r} for n, r in self.rejected[:10]],
        }


class EventStore:
    """The events and served-lists tables: idempotent writes, the log as arrays, attribution."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def _insert(self) -> Insert:
        table = Event.__table__
        if self.engine.dialect.name == "postgresql":
            return postgresql.insert(table)
        return sqlite.insert(table)

    def add(self, events: Sequence[EventRecord]) -> list[EventRecord]:
        """Store events in one transaction; returns those that were not stored before."""
        if not events:
            return []
        stmt = (
            self._insert()
            .on_conflict_do_nothing(index_elements=["event_key"])
            .returning(Event.event_key)
        )
        with self.engine.begin() as conn:
            new = set(conn.scalars(stmt, [e.as_row() for e in events]).all())
        seen: set[str] = set()
        out = []
        for e in events:
            if e.event_key in new and e.event_key not in seen:
                seen.add(e.event_key)
                out.append(e)
        return out

    def count(self) -> int:
        with self.engine.connect() as conn:
            return int(conn.scalar(select(func.count()).select_from(Event)) or 0)

    def fingerprint(self) -> str:
        with self.engine.connect() as conn:
            count, max_id = conn.execute(select(func.count(Event.id), func.max(Event.id))).one()
        return f"{count}|{max_id}"

    def iter_events(
        self, *, before: datetime | None = None
    ) -> Iterator[tuple[str, str, str, datetime | None, float | None]]:
        """(user, product, type, time, price) of every event in time order.

        The time is read without the driver's conversion, which fails on a whole query
        for one absurd row (year 0 or 10000 in the session's zone, text that is no time,
        a row written around validation): such a row's time is None (or out of range)
        and the training leaves it out (see ``Dataset.with_events``). A time without a
        zone (SQLite's) is UTC.
        """
        if self.engine.dialect.name == "postgresql":
            ts = extract("epoch", Event.ts)  # seconds: any timestamptz, even 'infinity'
            parse = _from_epoch
        else:
            ts = type_coerce(Event.ts, String)  # SQLite: the stored text
            parse = datetime.fromisoformat
        query = select(Event.user_id, Event.product_id, Event.type, ts, Event.price).order_by(
            Event.ts, Event.id
        )
        if before is not None:
            query = query.where(Event.ts < before)
        with self.engine.connect() as conn:
            for user, product, type_, raw, price in conn.execution_options(
                yield_per=20_000
            ).execute(query):
                try:
                    when: datetime | None = parse(raw)
                except (TypeError, ValueError, OverflowError):
                    when = None
                yield user, product, type_, when, price

    def user_events(self, user_id: str) -> list[tuple[str, str, datetime]]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(Event.product_id, Event.type, Event.ts)
                .where(Event.user_id == user_id)
                .order_by(Event.ts, Event.id)
            )
            return [tuple(r) for r in rows]  # type: ignore[misc]

    # -- import -----------------------------------------------------------------------

    def import_csv(
        self,
        path: Path,
        columns: EventColumns,
        weights: dict[str, float],
        *,
        on_batch: Any = None,
    ) -> EventImportReport:
        """Import an event log CSV; bad rows are reported with their line, the rest stored."""
        report = EventImportReport()
        occurrences: dict[tuple[str, ...], int] = {}
        batch: list[EventRecord] = []

        def flush() -> None:
            added = self.add(batch)
            report.added += len(added)
            report.duplicates += len(batch) - len(added)
            if on_batch is not None:
                on_batch(added)
            batch.clear()

        with path.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            header = reader.fieldnames or []
            needed = [columns.user, columns.item]
            needed += [c for c in (columns.time, columns.type_column) if c]
            needed += [c for c in (columns.event_id, columns.session, columns.price) if c]
            missing = [c for c in needed if c not in header]
            if missing:
                raise ValueError(
                    f"{path}: no column {', '.join(map(repr, missing))}; "
                    f"columns are {', '.join(header)}"
                )
            if columns.type_column is None and columns.type_value is None:
                raise ValueError("give the type column or a constant type (e.g. purchase)")
            for line, row in enumerate(reader, start=2):
                report.rows += 1
                data = {
                    "user_id": row.get(columns.user),
                    "product_id": row.get(columns.item),
                    "type": row.get(columns.type_column)
                    if columns.type_column
                    else columns.type_value,
                    "timestamp": row.get(columns.time) if columns.time else None,
                    "event_id": row.get(columns.event_id) if columns.event_id else None,
                    "session_id": row.get(columns.session) if columns.session else None,
                    "price": row.get(columns.price) if columns.price else None,
                }
                natural = tuple(
                    str(data[k] or "")
                    for k in ("user_id", "product_id", "type", "timestamp", "session_id")
                )
                occurrence = occurrences.get(natural, 0)
                occurrences[natural] = occurrence + 1
                try:
                    if columns.time and not data["timestamp"]:
                        raise EventError(f"{columns.time} is empty")
                    batch.append(make_event(data, weights, occurrence=occurrence))
                except EventError as exc:
                    report.rejected.append((line, str(exc)))
                if len(batch) >= _BATCH:
                    flush()
        flush()
        return report

    # -- attribution --------------------------------------------------------------------

    def count_since(self, since: datetime) -> int:
        """Events at or after ``since``."""
        with self.engine.connect() as conn:
            found = conn.scalar(select(func.count()).select_from(Event).where(Event.ts >= since))
        return int(found or 0)

    def recommended_since(self, since: datetime) -> Counter[str]:
        """How often each product was in a served list since ``since``."""
        counts: Counter[str] = Counter()
        with self.engine.connect() as conn:
            for (items,) in conn.execute(
                select(RecommendationServed.items).where(RecommendationServed.created_at >= since)
            ):
                counts.update(items)
        return counts

    def top_products(self, event_type: str, since: datetime, limit: int) -> list[tuple[str, int]]:
        """The products with the most events of a type since ``since``, most first."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(Event.product_id, func.count())
                .where(Event.type == event_type, Event.ts >= since)
                .group_by(Event.product_id)
                .order_by(func.count().desc(), Event.product_id)
                .limit(limit)
            ).all()
        return [(p, int(n)) for p, n in rows]

    def recent_users(self, limit: int = 20, scan: int = 500) -> list[str]:
        """The customers with the latest events, most recent first (from the last ``scan``
        events: an index walk, not a scan of the table)."""
        with self.engine.connect() as conn:
            rows = conn.scalars(select(Event.user_id).order_by(Event.ts.desc()).limit(scan))
            return list(dict.fromkeys(rows))[:limit]

    def record_served(self, rows: Sequence[dict[str, Any]]) -> None:
        if rows:
            # One executemany needs one set of keys: a batch mixes user, session and
            # product lists, which carry different optional fields.
            optional = {"user_id": None, "session_id": None}
            with self.engine.begin() as conn:
                conn.execute(
                    RecommendationServed.__table__.insert(), [{**optional, **row} for row in rows]
                )

    def strategy_stats(
        self, since: datetime | None = None, until: datetime | None = None
    ) -> list[dict[str, Any]]:
        """Per strategy: lists served, clicks / carts / purchases attributed to them through
        the recommendation id, click-through rate and conversion rate (purchases per list)."""
        served_q = select(RecommendationServed.strategy, func.count()).group_by(
            RecommendationServed.strategy
        )
        events_q = (
            select(
                Event.strategy,
                Event.type,
                func.count(func.distinct(Event.recommendation_id)),
                func.count(),
            )
            .where(Event.recommendation_id.is_not(None))
            .group_by(Event.strategy, Event.type)
        )
        if since is not None:
            served_q = served_q.where(RecommendationServed.created_at >= since)
            events_q = events_q.where(Event.ts >= since)
        if until is not None:
            served_q = served_q.where(RecommendationServed.created_at < until)
            events_q = events_q.where(Event.ts < until)
        stats: dict[str, dict[str, Any]] = {}

        def entry(name: str) -> dict[str, Any]:
            return stats.setdefault(
                name,
                {
                    "strategy": name,
                    "served": 0,
                    "clicked_lists": 0,
                    "converted_lists": 0,
                    "events": {},
                },
            )

        with self.engine.connect() as conn:
            for strategy, count in conn.execute(served_q):
                entry(strategy)["served"] = int(count)
            for strategy, type_, lists, count in conn.execute(events_q):
                e = entry(strategy or "unknown")
                e["events"][type_] = int(count)
                if type_ == "click":
                    e["clicked_lists"] = int(lists)
                elif type_ == "purchase":
                    e["converted_lists"] = int(lists)
        for e in stats.values():
            served = e["served"]
            e["ctr"] = round(e["clicked_lists"] / served, 6) if served else None
            purchases = e["events"].get("purchase", 0)
            e["conversion"] = round(purchases / served, 6) if served else None
        return sorted(stats.values(), key=lambda e: e["strategy"])
