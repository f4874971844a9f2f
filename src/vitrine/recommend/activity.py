"""The shop's activity over a date range: read-only queries of the events and of the
served lists for the analytics page.

Times are UTC; a range is ``[start, end)``. Spans read ``min``/``max`` of an indexed
time column (an index probe each). Per-day counts and top products aggregate the rows
of the range (``ix_events_ts`` / ``ix_recommendations_served_created_at`` find them):
they grow with the events in the range, not with the whole log. The top recommended
products read the items of at most :data:`SERVED_SAMPLE` lists, the latest of the range.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy import Engine, func, select

from vitrine.catalog.models import Event, RecommendationServed, as_utc

SERVED_SAMPLE = 20_000


def _day(value: Any) -> date:
    return value if isinstance(value, date) else date.fromisoformat(str(value)[:10])


@dataclass(frozen=True)
class StrategyDay:
    """One strategy's day: lists served, lists clicked, purchases attributed."""

    served: int = 0
    clicked_lists: int = 0
    purchases: int = 0


class ShopActivity:
    """Events and served lists of a date range: spans, per-day counts, top products."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def event_span(self) -> tuple[datetime, datetime] | None:
        """The times of the first and the last event (None: no event yet)."""
        with self.engine.connect() as conn:
            first = conn.scalar(select(func.min(Event.ts)))
            last = conn.scalar(select(func.max(Event.ts)))
        if first is None or last is None:
            return None
        return as_utc(first), as_utc(last)  # type: ignore[return-value]

    def served_span(self) -> tuple[datetime, datetime] | None:
        """When the first and the last recommendation list was served."""
        created = RecommendationServed.created_at
        with self.engine.connect() as conn:
            first = conn.scalar(select(func.min(created)))
            last = conn.scalar(select(func.max(created)))
        if first is None or last is None:
            return None
        return as_utc(first), as_utc(last)  # type: ignore[return-value]

    def events_per_day(self, start: datetime, end: datetime) -> dict[str, dict[date, int]]:
        """{event type: {day: events}} of the range (days without events left out)."""
        day = func.date(Event.ts)
        query = (
            select(day, Event.type, func.count())
            .where(Event.ts >= start, Event.ts < end)
            .group_by(day, Event.type)
        )
        out: dict[str, dict[date, int]] = {}
        with self.engine.connect() as conn:
            for d, type_, n in conn.execute(query):
                out.setdefault(type_, {})[_day(d)] = int(n)
        return out

    def top_products(
        self, event_type: str, start: datetime, end: datetime, limit: int
    ) -> list[tuple[str, int]]:
        """The products with the most events of a type in the range, most first."""
        query = (
            select(Event.product_id, func.count())
            .where(Event.type == event_type, Event.ts >= start, Event.ts < end)
            .group_by(Event.product_id)
            .order_by(func.count().desc(), Event.product_id)
            .limit(limit)
        )
        with self.engine.connect() as conn:
            return [(p, int(n)) for p, n in conn.execute(query)]

    def top_recommended(
        self, start: datetime, end: datetime, limit: int
    ) -> tuple[list[tuple[str, int]], int, int]:
        """The products most often in the range's served lists, most first; how many
        distinct products were recommended, and how many lists were read (the latest
        :data:`SERVED_SAMPLE` of the range at most)."""
        created = RecommendationServed.created_at
        query = (
            select(RecommendationServed.items)
            .where(created >= start, created < end)
            .order_by(created.desc())
            .limit(SERVED_SAMPLE)
        )
        counts: Counter[str] = Counter()
        lists = 0
        with self.engine.connect() as conn:
            for (items,) in conn.execute(query):
                counts.update(items or [])
                lists += 1
        return counts.most_common(limit), len(counts), lists

    def strategies_per_day(
        self, start: datetime, end: datetime
    ) -> dict[str, dict[date, StrategyDay]]:
        """{strategy: {day: lists served, lists clicked, purchases attributed}}: clicks
        and purchases are events carrying a recommendation id, on the day of the event."""
        created = RecommendationServed.created_at
        served_day = func.date(created)
        served_q = (
            select(served_day, RecommendationServed.strategy, func.count())
            .where(created >= start, created < end)
            .group_by(served_day, RecommendationServed.strategy)
        )
        event_day = func.date(Event.ts)
        events_q = (
            select(
                event_day,
                Event.strategy,
                Event.type,
                func.count(func.distinct(Event.recommendation_id)),
                func.count(),
            )
            .where(
                Event.recommendation_id.is_not(None),
                Event.type.in_(("click", "purchase")),
                Event.ts >= start,
                Event.ts < end,
            )
            .group_by(event_day, Event.strategy, Event.type)
        )
        out: dict[str, dict[date, StrategyDay]] = {}
        with self.engine.connect() as conn:
            for d, strategy, n in conn.execute(served_q):
                days = out.setdefault(strategy, {})
                days[_day(d)] = StrategyDay(int(n))
            for d, strategy, type_, lists, n in conn.execute(events_q):
                days = out.setdefault(strategy or "unknown", {})
                found = days.get(_day(d), StrategyDay())
                if type_ == "click":
                    found = StrategyDay(found.served, int(lists), found.purchases)
                else:
                    found = StrategyDay(found.served, found.clicked_lists, int(n))
                days[_day(d)] = found
        return out
