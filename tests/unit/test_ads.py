"""Visual search ads without a CNN: a campaign's rules (validation, the search filters
they become), and the funnel of ads served and the events carrying their ids."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from vitrine.ads.campaigns import Campaign, CampaignError, make_campaign
from vitrine.ads.store import AdStore
from vitrine.catalog.database import make_engine, migrate
from vitrine.index.attributes import AttributeIndex
from vitrine.recommend.event_store import EventStore
from vitrine.recommend.events import DEFAULT_EVENT_WEIGHTS, make_event


def test_rules_become_filters_that_keep_only_what_may_be_advertised() -> None:
    c = make_campaign(
        {"name": "summer", "categories": "Sunglasses, Caps", "min_price": "10",
         "max_price": 50, "max_per_object": "2"},
        default_field="articleType",
    )  # fmt: skip
    assert c.categories == ("Sunglasses", "Caps") and c.max_per_object == 2 and c.active
    index = AttributeIndex()
    rows = {
        "ok": {"articleType": "Caps", "price": 20, "available": True},
        "sold-out": {"articleType": "Caps", "price": 20, "available": False},
        "too-dear": {"articleType": "Sunglasses", "price": 80, "available": True},
        "other": {"articleType": "Tshirts", "price": 20, "available": True},
    }
    for pid, attrs in rows.items():
        index.set(pid, attrs)
    assert index.matching(c.filters()) == {"ok"}
    assert c.advertises("caps") and c.advertises(None) and not c.advertises("Tshirts")
    assert Campaign("all", "articleType").advertises("Tshirts")
    odd = make_campaign({"name": "odd", "categories": ["=", "a|b", " "]}, default_field="t")
    assert odd.categories == ("=", "a|b")  # any text is a category; a blank one is none
    index.set("pipe", {"t": "a|b", "available": True})
    assert index.matching(odd.filters()) == {"pipe"}


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"name": ""}, "name must be"),
        ({"name": "a b"}, "name must be"),
        ({"name": "x", "min_price": 9, "max_price": 3}, "min_price 9 is above max_price 3"),
        ({"name": "x", "min_price": "cheap"}, "min_price 'cheap' is not a number"),
        ({"name": "x", "max_price": float("inf")}, "max_price must be a finite number"),
        ({"name": "x", "max_per_object": 0}, "max_per_object must be between 1 and 20"),
        ({"name": "x", "max_per_object": True}, "max_per_object must be a whole number"),
        ({"name": "x", "categories": ["c" * 129]}, "at most 128 characters"),
    ],
)
def test_bad_rules_are_refused_naming_the_field(data: dict, message: str) -> None:
    with pytest.raises(CampaignError, match=message):
        make_campaign(data, default_field="articleType")


def test_an_edit_changes_only_what_it_names() -> None:
    base = make_campaign({"name": "x", "categories": ["Caps"], "max_price": 40},
                         default_field="articleType")  # fmt: skip
    paused = make_campaign({"active": False}, default_field="articleType", base=base)
    assert not paused.active and paused.categories == ("Caps",) and paused.max_price == 40
    with pytest.raises(CampaignError, match="above"):
        make_campaign({"min_price": 50}, default_field="articleType", base=base)


def test_funnel_counts_impressions_and_the_events_that_carry_their_ad_ids(
    tmp_path: Path,
) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'ads.db'}")
    migrate(engine)
    ads, events = AdStore(engine), EventStore(engine)
    assert ads.create(Campaign("a", "articleType")) and not ads.create(Campaign("a", "x"))
    ads.create(Campaign("b", "articleType", categories=("Caps",)))
    served = [
        {"id": f"ad{n}", "campaign": campaign, "source": source, "source_label": None,
         "object_index": 0, "box": [0, 0, 10, 10], "product_id": f"p{n}", "score": 0.5}
        for n, (campaign, source) in enumerate(
            [("a", "s1"), ("a", "s1"), ("a", "s2"), ("b", "s2")]
        )
    ]  # fmt: skip
    ads.record_served(served)
    now = datetime.now(UTC)
    rows = [
        ("u1", "p0", "click", "ad0", None), ("u1", "p0", "purchase", "ad0", 12.5),
        ("u2", "p2", "click", "ad2", None), ("u2", "p2", "add_to_cart", "ad2", None),
        ("u3", "p3", "purchase", "ad3", 40.0), ("u4", "p1", "purchase", None, 99.0),
        ("u5", "p1", "click", "unknown-ad", None),
    ]  # fmt: skip
    records = [
        make_event({"user_id": u, "product_id": p, "type": t, "ad_id": ad, "price": price,
                    "timestamp": now - timedelta(minutes=n)}, DEFAULT_EVENT_WEIGHTS)
        for n, (u, p, t, ad, price) in enumerate(rows)
    ]  # fmt: skip
    events.add(records)
    by_campaign = {f["campaign"]: f for f in ads.funnel("campaign")}
    a, b = by_campaign["a"], by_campaign["b"]
    assert (a["impressions"], a["clicks"], a["carts"], a["purchases"]) == (3, 2, 1, 1)
    assert a["revenue"] == 12.5 and a["ctr"] == round(2 / 3, 6)
    assert (b["impressions"], b["clicks"], b["purchases"], b["revenue"]) == (1, 0, 1, 40.0)
    by_source = {f["source"]: f for f in ads.funnel("source")}
    assert by_source["s2"]["campaigns"] == 2 and by_source["s2"]["purchases"] == 1
    assert [f["campaign"] for f in ads.funnel("campaign", campaign="b")] == ["b"]
    assert ads.funnel("campaign", since=now + timedelta(hours=1)) == []
    assert ads.delete("a") and not ads.delete("a")
    assert ads.campaign("a") is None and ads.funnel("campaign", campaign="a")[0]["clicks"] == 2
