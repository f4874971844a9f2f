"""Visual search ads (campaigns, ads for a shared photo, their funnel) and the product
feed for ad platforms."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Literal

from vitrine_client.calls import NO_CONTENT, UNSET, Call, Unset, Upload, present
from vitrine_client.models import AdAnalytics, AdMatch, Campaign
from vitrine_client.operation import operation


class AdOperations:
    """/v1/ads/campaigns, /v1/ads/match, /v1/ads/analytics and /v1/feed."""

    @operation("GET", "/v1/ads/campaigns")
    def list_campaigns() -> Call[list[Campaign]]:
        """Every campaign."""
        return Call(list[Campaign])

    @operation("POST", "/v1/ads/campaigns")
    def create_campaign(
        name: str,
        *,
        description: str | None = None,
        category_field: str | None = None,
        categories: Sequence[str] | None = None,
        min_price: float | None = None,
        max_price: float | None = None,
        max_per_object: int | None = None,
        active: bool | None = None,
    ) -> Call[Campaign]:
        """A new campaign (write); raises ``Conflict`` when the name is taken."""
        body = present(
            name=name, description=description, category_field=category_field,
            categories=list(categories) if categories is not None else None,
            min_price=min_price, max_price=max_price, max_per_object=max_per_object,
            active=active,
        )  # fmt: skip
        return Call(Campaign, json=body)

    @operation("GET", "/v1/ads/campaigns/{name}")
    def get_campaign(name: str) -> Call[Campaign]:
        """One campaign's rules."""
        return Call(Campaign, path={"name": name})

    @operation("PATCH", "/v1/ads/campaigns/{name}")
    def edit_campaign(
        name: str,
        *,
        description: str | Unset | None = UNSET,
        category_field: str | Unset = UNSET,
        categories: Sequence[str] | Unset = UNSET,
        min_price: float | Unset | None = UNSET,
        max_price: float | Unset | None = UNSET,
        max_per_object: int | Unset = UNSET,
        active: bool | Unset = UNSET,
    ) -> Call[Campaign]:
        """Change the rules given (write); ``active=False`` pauses, ``None`` removes a
        price bound."""
        body = {
            "description": description, "category_field": category_field,
            "categories": categories if isinstance(categories, Unset) else list(categories),
            "min_price": min_price, "max_price": max_price, "max_per_object": max_per_object,
            "active": active,
        }  # fmt: skip
        return Call(Campaign, path={"name": name}, json=body)

    @operation("DELETE", "/v1/ads/campaigns/{name}")
    def delete_campaign(name: str) -> Call[None]:
        """Delete a campaign (write); its past ads keep their analytics."""
        return Call(NO_CONTENT, path={"name": name})

    @operation("POST", "/v1/ads/match")
    def match_ads(image: Upload, *, campaign: str, source: str | None = None) -> Call[AdMatch]:
        """The campaign's ads for the products in a shared photo; send each ``ad_id`` with
        the events that follow. Raises ``NotFound`` (campaign) or ``Conflict`` (paused)."""
        form = {"campaign": campaign, "source": source}
        return Call(AdMatch, form=form, files=[("image", image)])

    @operation("GET", "/v1/ads/analytics")
    def ad_analytics(
        *, campaign: str | None = None, since: datetime | None = None, sources: int | None = None
    ) -> Call[AdAnalytics]:
        """Impressions, clicks, carts, purchases and revenue per campaign and per photo."""
        return Call(AdAnalytics, query={"campaign": campaign, "since": since, "sources": sources})

    @operation("GET", "/v1/feed")
    def product_feed(*, format: Literal["csv", "json"] | None = None) -> Call[bytes]:
        """The catalog as a product feed (CSV or JSON bytes); raises ``Conflict`` until the
        shop's link patterns are configured."""
        return Call(bytes, query={"format": format})
