"""The recommendation half of the analytics page, over a date range that fits the data.

A shop whose log ended months ago (an imported history) would see nothing in "the last
30 days": the range defaults instead to the last 30 days of the shop's own events (the
whole span when it is shorter), and every empty chart says why, with the span of the
data. Counts (events, lists served) are whole numbers on their axes; click-through and
conversion are rates.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from vitrine.catalog.browse import BrowseFilter, CatalogBrowser, ProductCard
from vitrine.catalog.models import utcnow
from vitrine.recommend.activity import SERVED_SAMPLE, ShopActivity, StrategyDay

DEFAULT_DAYS = 30
MAX_DAYS = 366
TOP = 10
EVENT_TYPES = ("view", "click", "add_to_cart", "purchase")


@dataclass(frozen=True)
class DateRange:
    """The days shown, both included, and how they were chosen."""

    start: date
    end: date
    note: str

    @property
    def days(self) -> list[date]:
        return [self.start + timedelta(n) for n in range((self.end - self.start).days + 1)]

    def bounds(self) -> tuple[datetime, datetime]:
        """``[start, end)`` in UTC."""
        first = datetime.combine(self.start, time.min, tzinfo=UTC)
        return first, datetime.combine(self.end + timedelta(1), time.min, tzinfo=UTC)


def _span_text(span: tuple[datetime, datetime]) -> str:
    return f"{span[0].date().isoformat()} to {span[1].date().isoformat()}"


def _parse(text: str, name: str) -> date | None:
    text = text.strip()
    if not text:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{name} {text!r} is not a date (YYYY-MM-DD)") from None


def choose_range(
    start_text: str, end_text: str, span: tuple[datetime, datetime] | None
) -> DateRange:
    """The range asked for; without one, the last 30 days of the events' span (all of it
    when shorter), or the last 30 days when there is no event. ValueError if bad."""
    start, end = _parse(start_text, "from"), _parse(end_text, "to")
    last = span[1].date() if span is not None else utcnow().date()
    first = span[0].date() if span is not None else None
    if start is None and end is None:
        end = last
        earliest = end - timedelta(DEFAULT_DAYS - 1)
        if first is not None and first > earliest:
            days = (end - first).days + 1
            return DateRange(first, end, f"all the shop's events ({days} days)")
        what = "days of the shop's events" if span is not None else "days (no event yet)"
        return DateRange(earliest, end, f"the last {DEFAULT_DAYS} {what}")
    if end is None:
        assert start is not None
        end = max(start, min(last, start + timedelta(DEFAULT_DAYS - 1)))
    if start is None:
        start = end - timedelta(DEFAULT_DAYS - 1)
    if start > end:
        raise ValueError(f"from ({start}) is after to ({end})")
    if (end - start).days + 1 > MAX_DAYS:
        raise ValueError(f"a range holds at most {MAX_DAYS} days")
    return DateRange(start, end, "the range you chose")


@dataclass
class ActivityReport:
    """What the analytics page shows of customers' events and served recommendations."""

    range: DateRange
    event_span: tuple[datetime, datetime] | None
    served_span: tuple[datetime, datetime] | None
    totals: dict[str, int]
    events_chart: dict[str, Any]
    served_chart: dict[str, Any]
    ctr_chart: dict[str, Any]
    conversion_chart: dict[str, Any]
    served: int
    coverage: float
    recommended_lists_read: int
    top: dict[str, list[tuple[str, int, ProductCard | None]]] = field(default_factory=dict)
    error: str = ""

    @property
    def events(self) -> int:
        return sum(self.totals.values())

    @property
    def sampled(self) -> bool:
        return self.recommended_lists_read >= SERVED_SAMPLE

    def empty_events(self) -> str:
        """Why there is nothing to draw ("" when there is)."""
        if self.events:
            return ""
        r = self.range
        if self.event_span is None:
            return "No events yet: send views, carts and purchases to /v1/events."
        return (
            f"No events between {r.start} and {r.end}; events span {_span_text(self.event_span)}."
        )

    def empty_served(self) -> str:
        if self.served:
            return ""
        r = self.range
        if self.served_span is None:
            return "No recommendation list has been served yet."
        return (
            f"No recommendation lists were served between {r.start} and {r.end}; "
            f"lists were served from {_span_text(self.served_span)}."
        )


def _line(days: list[date], series: dict[str, list[Any]], integer: bool) -> dict[str, Any]:
    return {
        "type": "line",
        "labels": [d.isoformat() for d in days],
        "datasets": [{"label": name, "data": data} for name, data in series.items()],
        "integer": integer,
    }


def _rate(part: int, whole: int) -> float | None:
    return round(part / whole, 6) if whole else None


class ShopAnalytics:
    """The activity report of a date range: events, served lists, top products."""

    def __init__(self, activity: ShopActivity, browser: CatalogBrowser) -> None:
        self.activity = activity
        self.browser = browser

    def report(self, start: str = "", end: str = "") -> ActivityReport:
        """The report of the range asked for; a bad range gives the default range's
        report with ``error`` saying what was wrong."""
        span = self.activity.event_span()
        error = ""
        try:
            chosen = choose_range(start, end, span)
        except ValueError as exc:
            error = str(exc)
            chosen = choose_range("", "", span)
        report = self._report(chosen, span)
        report.error = error
        return report

    def _report(self, chosen: DateRange, span: tuple[datetime, datetime] | None) -> ActivityReport:
        lo, hi = chosen.bounds()
        days = chosen.days
        activity = self.activity
        per_type = activity.events_per_day(lo, hi)
        types = [t for t in EVENT_TYPES if t in per_type]
        types += sorted(t for t in per_type if t not in EVENT_TYPES)
        events_chart = _line(
            days, {t: [per_type[t].get(d, 0) for d in days] for t in types}, integer=True
        )
        per_strategy = activity.strategies_per_day(lo, hi)
        names = sorted(per_strategy)
        empty = StrategyDay()

        def series(key: str) -> dict[str, list[Any]]:
            out: dict[str, list[Any]] = {}
            for n in names:
                row = [per_strategy[n].get(d, empty) for d in days]
                if key == "served":
                    out[n] = [s.served for s in row]
                elif key == "ctr":
                    out[n] = [_rate(s.clicked_lists, s.served) for s in row]
                else:
                    out[n] = [_rate(s.purchases, s.served) for s in row]
            return out

        served = sum(s.served for n in names for s in per_strategy[n].values())
        recommended, distinct, lists = activity.top_recommended(lo, hi, TOP)
        tops = {
            "purchase": activity.top_products("purchase", lo, hi, TOP),
            "view": activity.top_products("view", lo, hi, TOP),
            "recommended": recommended,
        }
        ids = [p for rows in tops.values() for p, _ in rows]
        cards = (
            {c.id: c for c in self.browser.cards(BrowseFilter(), ids=ids, limit=len(ids))}
            if ids
            else {}
        )
        catalog = self.browser.count_products()
        return ActivityReport(
            range=chosen,
            event_span=span,
            served_span=activity.served_span(),
            totals={t: sum(per_type[t].values()) for t in types},
            events_chart=events_chart,
            served_chart=_line(days, series("served"), integer=True),
            ctr_chart=_line(days, series("ctr"), integer=False),
            conversion_chart=_line(days, series("conversion"), integer=False),
            served=served,
            coverage=min(1.0, distinct / catalog) if catalog else 0.0,
            recommended_lists_read=lists,
            top={k: [(p, n, cards.get(p)) for p, n in rows] for k, rows in tops.items()},
        )
