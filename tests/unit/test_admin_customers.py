"""The customers view and the analytics that fit the data, through FastAPI's test client:
a small shop whose events ended years ago (like the H&M slice), served by the real
recommendation service."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from small_shop import PASSWORD, small_shop
from vitrine.admin.shop_analytics import choose_range
from vitrine.recommend import customer_log
from vitrine.recommend.customer_log import CustomerLog
from vitrine.recommend.strategies import Strategy as EngineStrategy

END = datetime(2020, 9, 22, 12, tzinfo=UTC)  # the log ends long ago
TYPES = ("view", "view", "add_to_cart", "purchase")


def _events() -> list[dict[str, Any]]:
    """40 customers over 60 days ending at END; customer c00 is the latest active."""
    out = []
    for u in range(40):
        for j in range(4):
            out.append(
                {
                    "user_id": f"c{u:02d}",
                    "product_id": f"{('sh', 'so')[(u + j) % 2]}{(u + j) % 10}",
                    "type": TYPES[j],
                    "timestamp": (END - timedelta(days=u * 1.5, hours=4 - j)).isoformat(),
                    "price": 10.0 + j,
                }
            )
    return out


@pytest.fixture()
def shop(tmp_path: Path) -> Iterator[tuple[Any, TestClient]]:
    app = small_shop(tmp_path / "home", _events(), [EngineStrategy("default", "als")])
    with TestClient(app) as client:
        page = client.get("/admin/login")
        token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)  # type: ignore[union-attr]
        client.post(
            "/admin/login", data={"username": "alice", "password": PASSWORD, "csrf_token": token}
        )
        yield app, client


def _customers(html: str) -> list[str]:
    return re.findall(r'href="/admin/customers/(c\d\d)"', html)


def test_recent_customers_come_latest_first_page_by_page(
    shop: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    app, client = shop
    page = client.get("/admin/customers")
    assert page.status_code == 200 and 'aria-current="page">Customers<' in page.text
    first = _customers(page.text)
    assert first == [f"c{u:02d}" for u in range(25)]  # c00 was active last
    assert ">2020-09-22 11:00<" in page.text  # last seen
    cursor = re.search(r"cursor=(\d+)", page.text).group(1)  # type: ignore[union-attr]
    second = client.get(f"/admin/customers?cursor={cursor}")
    assert _customers(second.text) == [f"c{u:02d}" for u in range(25, 40)]
    assert "Next customers" not in second.text
    # Pages hold every customer once, in order, even when the scan reads few events at
    # a time (chunks of 5) or stops early (at 5 events a page).
    log = CustomerLog(app.state.admin.vitrine.engine)
    monkeypatch.setattr(customer_log, "SCAN_CHUNK", 5)
    for scan_limit in (1_000, 5):
        monkeypatch.setattr(customer_log, "SCAN_LIMIT", scan_limit)
        seen: list[str] = []
        cursor_: str | None = None
        for _ in range(200):
            found = log.recent(before=int(cursor_) if cursor_ else None, limit=3)
            assert len(found.customers) <= 3
            seen += [c.user_id for c in found.customers]
            cursor_ = found.next_cursor
            if cursor_ is None:
                break
        assert seen == [f"c{u:02d}" for u in range(40)]
    bad = client.get("/admin/customers?cursor=abc")
    assert bad.status_code == 422 and "is not an event number" in bad.text


def test_search_by_customer_id_prefix(shop: Any) -> None:
    _, client = shop
    page = client.get("/admin/customers?q=c1")
    assert _customers(page.text) == [f"c{u}" for u in range(10, 20)]
    row = page.text.split('href="/admin/customers/c12"')[1].split("</tr>")[0]
    assert re.findall(r'data-label="(\w[\w ]*)">(\d+)<', row) == [
        ("Views", "2"),
        ("Carts", "1"),
        ("Purchases", "1"),
        ("All events", "4"),
    ]
    partial = client.get("/admin/customers?q=c3", headers={"HX-Request": "true"})
    assert "<html" not in partial.text and _customers(partial.text) == [
        f"c{u}" for u in range(30, 40)
    ]
    assert "No customer id starts with" in client.get("/admin/customers?q=zz").text
    too_long = client.get("/admin/customers?q=" + "x" * 200)
    assert too_long.status_code == 422 and "at most 128 characters" in too_long.text


def test_customer_page_shows_history_and_previews_that_are_not_served(shop: Any) -> None:
    app, client = shop
    service = app.state.admin.vitrine.recommendations
    page = client.get("/admin/customers/c03")
    assert page.status_code == 200
    text = page.text
    history = text.split('class="history"')[1]
    kinds = re.findall(r'class="badge event-(\w+)"', history)
    assert kinds == ["purchase", "add_to_cart", "view", "view"]  # newest first
    assert "shirts 6" in history and "/admin/images/" in history and "13.00" in history
    recs = text.split('id="recs"')[1].split("</section>")[0]
    assert "<option selected>default</option>" in recs
    products = re.findall(r'href="/admin/catalog/(\w+)"', recs)
    assert len(products) == 12 and 'class="why small"' in recs
    other = client.get("/admin/customers/c03?strategy=trending")
    assert other.status_code == 200 and "<option selected>trending</option>" in other.text
    # The product page's "bought together" is a preview too.
    assert client.get("/admin/catalog/sh1").status_code == 200
    assert service.strategy_stats() == []  # nothing recorded as served
    missing = client.get("/admin/customers/nobody")
    assert missing.status_code == 404 and "No event has the customer id" in missing.text
    bad = client.get("/admin/customers/c03?strategy=magic")
    assert bad.status_code == 422 and "no strategy &#39;magic&#39;" in bad.text
    assert client.get("/admin/customers/c03?before=x").status_code == 422


def test_analytics_default_range_covers_old_events(shop: Any) -> None:
    app, client = shop
    page = client.get("/admin/analytics")
    assert page.status_code == 200
    text = page.text
    assert 'name="from" value="2020-08-24"' in text and 'name="to" value="2020-09-22"' in text
    assert "the last 30 days of the shop&#39;s events" in text
    assert "Events span 2020-07-25 to 2020-09-22" in text
    top = text.split("<h3>Top purchased</h3>")[1].split("</section>")[0]
    assert top.count("<li>") == 10 and "/admin/images/" in top
    assert '"integer": true' in text  # whole-number ticks on count axes
    assert "No recommendation list has been served yet." in text
    report = app.state.admin.activity.report()
    assert report.totals["purchase"] == 20 and report.events == 80  # 20 customers in range
    assert sum(sum(d["data"]) for d in report.events_chart["datasets"]) == 80


def test_analytics_empty_range_says_why_and_bad_ranges_are_refused(shop: Any) -> None:
    _, client = shop
    empty = client.get("/admin/analytics?from=2021-01-01&to=2021-01-31")
    assert empty.status_code == 200
    assert (
        "No events between 2021-01-01 and 2021-01-31; events span 2020-07-25 to 2020-09-22."
        in empty.text
    )
    for query, message in [
        ("from=2020-09-10&to=2020-09-01", "is after to"),
        ("from=yesterday", "is not a date"),
        ("from=2018-01-01&to=2020-01-01", "at most 366 days"),
    ]:
        bad = client.get(f"/admin/analytics?{query}")
        assert bad.status_code == 422 and message in bad.text
        assert 'name="to" value="2020-09-22"' in bad.text  # the default range instead


def test_default_range_is_the_whole_span_when_shorter() -> None:
    span = (datetime(2020, 9, 10, tzinfo=UTC), datetime(2020, 9, 22, tzinfo=UTC))
    whole = choose_range("", "", span)
    assert (whole.start, whole.end) == (date(2020, 9, 10), date(2020, 9, 22))
    assert whole.note == "all the shop's events (13 days)"
    chosen = choose_range("2020-09-01", "", span)
    assert (chosen.start, chosen.end) == (date(2020, 9, 1), date(2020, 9, 22))
    none = choose_range("", "", None)
    assert (none.end - none.start).days == 29 and "no event yet" in none.note
