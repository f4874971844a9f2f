"""Customers as people look them up: read-only queries of the events table by customer.

Every query is bounded and walks an index, so that pages stay fast on a log of
millions of events:

- prefix search of customer ids: one ``min(user_id)`` probe of ``ix_events_user_ts``
  per customer found (a loose index scan: a customer with many events costs no more);
- recent customers: the ``ts`` index read newest first, in chunks, until a page of
  customers is found (at most :data:`SCAN_LIMIT` events per page);
- counts and a customer's history: ``ix_events_user_ts``, for the customers of one page.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine, Select, and_, func, or_, select

from vitrine.catalog.models import Event, as_utc

SCAN_CHUNK = 2_000
SCAN_LIMIT = 40_000  # events read for one page of recent customers, at most
HIGHEST = "\U0010ffff"


@dataclass(frozen=True)
class CustomerSummary:
    """One customer's activity: counts per event type, first and last event."""

    user_id: str
    counts: dict[str, int]
    first_seen: datetime | None
    last_seen: datetime | None

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def count(self, event_type: str) -> int:
        return self.counts.get(event_type, 0)


@dataclass(frozen=True)
class HistoryRow:
    """One event of a customer's history."""

    event_id: int
    product_id: str
    type: str
    ts: datetime | None
    price: float | None
    strategy: str | None


@dataclass(frozen=True)
class CustomerPage:
    """A page of customers and where the next one starts (None: the last page)."""

    customers: list[CustomerSummary]
    next_cursor: str | None


def _below(cursor: tuple[datetime, int] | None) -> Select[Any]:
    """Events newest first, below ``cursor`` (time, event id)."""
    query = select(Event.id, Event.ts, Event.user_id).order_by(Event.ts.desc(), Event.id.desc())
    if cursor is None:
        return query
    at, event_id = cursor
    return query.where(
        Event.ts <= at, or_(Event.ts < at, and_(Event.ts == at, Event.id < event_id))
    )


class CustomerLog:
    """Customers of the events table: search, recent activity, summaries, histories."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    # -- summaries ------------------------------------------------------------------------

    def _summaries(self, conn: Connection, user_ids: Sequence[str]) -> dict[str, CustomerSummary]:
        if not user_ids:
            return {}
        rows = conn.execute(
            select(Event.user_id, Event.type, func.count(), func.min(Event.ts), func.max(Event.ts))
            .where(Event.user_id.in_(list(user_ids)))
            .group_by(Event.user_id, Event.type)
        )
        counts: dict[str, dict[str, int]] = {}
        spans: dict[str, list[datetime]] = {}
        for user, type_, n, first, last in rows:
            counts.setdefault(user, {})[type_] = int(n)
            spans.setdefault(user, []).extend(t for t in (as_utc(first), as_utc(last)) if t)
        return {
            u: CustomerSummary(
                u, counts[u], min(spans.get(u) or [None]), max(spans.get(u) or [None])
            )
            for u in counts
        }

    def summary(self, user_id: str) -> CustomerSummary | None:
        """The customer's counts and span; None when no event has this customer id."""
        with self.engine.connect() as conn:
            return self._summaries(conn, [user_id]).get(user_id)

    # -- search ---------------------------------------------------------------------------

    def search(self, prefix: str, *, after: str = "", limit: int = 25) -> CustomerPage:
        """Customers whose id starts with ``prefix`` (case-sensitive), in id order after
        ``after``: one index probe per customer found."""
        low = max(prefix, after)
        found: list[str] = []
        with self.engine.connect() as conn:
            while len(found) <= limit:
                bound = Event.user_id > low if (found or after) else Event.user_id >= low
                user = conn.scalar(
                    select(func.min(Event.user_id)).where(bound, Event.user_id < prefix + HIGHEST)
                )
                if user is None or not user.startswith(prefix):
                    break
                found.append(user)
                low = user
            more = len(found) > limit
            found = found[:limit]
            summaries = self._summaries(conn, found)
        customers = [summaries[u] for u in found if u in summaries]
        return CustomerPage(customers, found[-1] if more else None)

    # -- recent activity ------------------------------------------------------------------

    def recent(self, *, before: int | None = None, limit: int = 25) -> CustomerPage:
        """Customers by their latest event, newest first, starting below the event
        ``before`` (the cursor of the previous page: an event id)."""
        start: tuple[datetime, int] | None = None
        with self.engine.connect() as conn:
            if before is not None:
                at = conn.scalar(select(Event.ts).where(Event.id == before))
                if at is None:
                    raise ValueError(f"no event {before}: start from the first page")
                start = (at, before)
            cursor = start
            found_at: dict[str, int] = {}  # customer -> the event they were found at
            order: list[str] = []
            scanned = 0
            exhausted = False
            while len(order) <= limit and scanned < SCAN_LIMIT:
                rows = conn.execute(_below(cursor).limit(SCAN_CHUNK)).all()
                fresh: dict[str, int] = {}
                for event_id, _ts, user in rows:
                    if user not in found_at and user not in fresh:
                        fresh[user] = event_id
                shown = self._shown_before(conn, list(fresh), start)
                for user, event_id in fresh.items():
                    found_at[user] = event_id
                    if user not in shown and len(order) <= limit:
                        order.append(user)
                scanned += len(rows)
                if len(rows) < SCAN_CHUNK:
                    exhausted = True
                    break
                cursor = (rows[-1][1], rows[-1][0])
            page = order[:limit]
            if len(order) > limit:
                next_cursor: int | None = found_at[page[-1]]
            elif exhausted:
                next_cursor = None
            else:  # read SCAN_LIMIT events: the next page goes on from there
                next_cursor = cursor[1] if cursor is not None else None
            summaries = self._summaries(conn, page)
        customers = [summaries[u] for u in page if u in summaries]
        return CustomerPage(customers, str(next_cursor) if next_cursor is not None else None)

    @staticmethod
    def _shown_before(
        conn: Connection, users: Sequence[str], start: tuple[datetime, int] | None
    ) -> set[str]:
        """Those of ``users`` with an event at or after ``start``: on an earlier page."""
        if start is None or not users:
            return set()
        at, event_id = start
        later = or_(Event.ts > at, and_(Event.ts == at, Event.id >= event_id))
        query = select(Event.user_id).where(Event.user_id.in_(list(users)), later).distinct()
        return set(conn.scalars(query))

    # -- one customer's history -------------------------------------------------------------

    def history(
        self, user_id: str, *, before: int | None = None, limit: int = 50
    ) -> tuple[list[HistoryRow], int | None]:
        """The customer's events newest first, below the event ``before``; and the next
        page's cursor (None: no more)."""
        query = (
            select(Event.id, Event.product_id, Event.type, Event.ts, Event.price, Event.strategy)
            .where(Event.user_id == user_id)
            .order_by(Event.ts.desc(), Event.id.desc())
            .limit(limit + 1)
        )
        with self.engine.connect() as conn:
            if before is not None:
                at = conn.scalar(
                    select(Event.ts).where(Event.id == before, Event.user_id == user_id)
                )
                if at is None:
                    raise ValueError(f"customer {user_id!r} has no event {before}")
                query = query.where(
                    Event.ts <= at, or_(Event.ts < at, and_(Event.ts == at, Event.id < before))
                )
            rows = conn.execute(query).all()
        events = [HistoryRow(r[0], r[1], r[2], as_utc(r[3]), r[4], r[5]) for r in rows[:limit]]
        return events, (events[-1].event_id if len(rows) > limit else None)
