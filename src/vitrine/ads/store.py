"""The ad tables: campaigns, the ads served (impressions) and their attributed events."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, case, delete, func, select, update

from vitrine.ads.campaigns import Campaign
from vitrine.catalog.models import AdCampaign, AdServed, Event, utcnow

FUNNEL = ("click", "add_to_cart", "purchase")
CAMPAIGNS = AdCampaign.__table__


def _campaign(row: Mapping[str, Any]) -> Campaign:
    return Campaign(**{**row, "categories": tuple(row["categories"] or ())})


def _columns(campaign: Campaign) -> dict[str, Any]:
    return {
        "category_field": campaign.category_field,
        "categories": list(campaign.categories),
        "min_price": campaign.min_price,
        "max_price": campaign.max_price,
        "max_per_object": campaign.max_per_object,
        "active": campaign.active,
        "description": campaign.description,
    }


class AdStore:
    """Campaigns, ads served, and the funnel of events carrying their ad ids."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    # -- campaigns --------------------------------------------------------------------

    def campaigns(self) -> list[Campaign]:
        with self.engine.connect() as conn:
            rows = conn.execute(CAMPAIGNS.select().order_by(CAMPAIGNS.c.name)).mappings().all()
        return [_campaign(row) for row in rows]

    def campaign(self, name: str) -> Campaign | None:
        with self.engine.connect() as conn:
            query = CAMPAIGNS.select().where(CAMPAIGNS.c.name == name)
            row = conn.execute(query).mappings().first()
        return None if row is None else _campaign(row)

    def create(self, campaign: Campaign) -> bool:
        """Store a new campaign; False when one of that name exists."""
        now = utcnow()
        with self.engine.begin() as conn:
            if conn.scalar(select(AdCampaign.name).where(AdCampaign.name == campaign.name)):
                return False
            conn.execute(
                CAMPAIGNS.insert(),
                {"name": campaign.name, **_columns(campaign), "created_at": now,
                 "updated_at": now},
            )  # fmt: skip
        return True

    def update(self, campaign: Campaign) -> bool:
        with self.engine.begin() as conn:
            result = conn.execute(
                update(AdCampaign)
                .where(AdCampaign.name == campaign.name)
                .values(**_columns(campaign), updated_at=utcnow())
            )
        return result.rowcount > 0

    def delete(self, name: str) -> bool:
        """Delete a campaign; its ads served stay, so that past events keep their source."""
        with self.engine.begin() as conn:
            return conn.execute(delete(AdCampaign).where(AdCampaign.name == name)).rowcount > 0

    # -- ads served and their funnel ----------------------------------------------------

    def record_served(self, rows: Sequence[dict[str, Any]]) -> None:
        if rows:
            now = utcnow()
            with self.engine.begin() as conn:
                conn.execute(AdServed.__table__.insert(), [{"created_at": now, **r} for r in rows])

    def funnel(
        self,
        by: str,
        *,
        campaign: str | None = None,
        since: datetime | None = None,
        limit: int | None = None,
    ) -> list[dict[str, Any]]:
        """Impressions, clicks, carts, purchases and revenue per ``by`` (``"campaign"`` or
        ``"source"``), most impressions first. Events count when they carry the id of an
        ad served in the window; revenue sums the purchases' prices."""
        key = AdServed.campaign if by == "campaign" else AdServed.source
        served_q = select(
            key,
            func.count(),
            func.max(AdServed.source_label),
            func.count(func.distinct(AdServed.campaign)),
            func.max(AdServed.created_at),
        ).group_by(key)
        events_q = (
            select(
                key,
                Event.type,
                func.count(),
                func.sum(case((Event.type == "purchase", Event.price), else_=None)),
            )
            .join(AdServed, AdServed.id == Event.ad_id)
            .where(Event.type.in_(FUNNEL))
            .group_by(key, Event.type)
        )
        if campaign is not None:
            served_q = served_q.where(AdServed.campaign == campaign)
            events_q = events_q.where(AdServed.campaign == campaign)
        if since is not None:
            served_q = served_q.where(AdServed.created_at >= since)
            events_q = events_q.where(AdServed.created_at >= since)
        out: dict[str, dict[str, Any]] = {}
        with self.engine.connect() as conn:
            for name, impressions, label, campaigns, last in conn.execute(served_q):
                out[name] = {
                    by: name, "impressions": int(impressions), "label": label,
                    "campaigns": int(campaigns), "last_served": last,
                    "clicks": 0, "carts": 0, "purchases": 0, "revenue": 0.0,
                }  # fmt: skip
            for name, type_, count, revenue in conn.execute(events_q):
                entry = out.get(name)
                if entry is None:
                    continue
                column = {"click": "clicks", "add_to_cart": "carts"}.get(type_, "purchases")
                entry[column] = int(count)
                if type_ == "purchase":
                    entry["revenue"] = round(float(revenue or 0.0), 2)
        rows = sorted(out.values(), key=lambda e: (-e["impressions"], str(e[by])))
        for e in rows:
            shown = e["impressions"]
            e["ctr"] = round(e["clicks"] / shown, 6) if shown else None
            e["conversion"] = round(e["purchases"] / shown, 6) if shown else None
            if by == "campaign":
                e.pop("campaigns")
                e.pop("label")
        return rows[:limit] if limit else rows
