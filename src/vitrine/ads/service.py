"""Visual search ads: campaigns kept, ads matched to the products seen in a shared photo,
and the funnel (impressions, clicks, carts, purchases) per campaign and per photo.

An ad is one in-stock product advertised for one object found in a photo. Each gets an
``ad_id``; the storefront sends it with the click, cart and purchase events that follow
(``POST /v1/events``), which attributes them to the campaign and to the photo.
"""

from __future__ import annotations

import hashlib
import io
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from PIL import Image, UnidentifiedImageError

from vitrine.ads.campaigns import Campaign, CampaignError, make_campaign
from vitrine.ads.store import AdStore
from vitrine.catalog.blobs import BlobNotFoundError, BlobStore
from vitrine.catalog.feed import ProductLinks
from vitrine.index.scene_search import LocalizerNotTrained, SceneObject, SceneSearch

SOURCE_THUMB_SIDE = 240
MAX_OBJECTS = 6


class CampaignNotFound(KeyError):
    """No campaign of that name."""

    def __str__(self) -> str:
        return f"campaign {self.args[0]!r} does not exist"


class CampaignExists(ValueError):
    """A campaign of that name exists already."""


class CampaignPaused(RuntimeError):
    """The campaign is paused: it serves no ads."""


@dataclass(frozen=True)
class AdMatch:
    """The ads for one shared photo: per object found, its box, category and ads."""

    campaign: str
    source: str
    objects: list[dict[str, Any]]
    localized: bool  # False: no localiser yet, the photo was searched whole


def source_key(source: str) -> str:
    return f"ads/sources/{source}.jpg"


class AdService:
    """Campaigns, ad matching and ad analytics (see the module docstring)."""

    def __init__(
        self,
        store: AdStore,
        scenes: Callable[[], SceneSearch],
        describe: Callable[[str], tuple[str | None, dict[str, Any]]],
        blobs: BlobStore,
        default_field: str,
    ) -> None:
        self.store = store
        self._scenes = scenes
        self.describe = describe
        self.blobs = blobs
        self.default_field = default_field

    # -- campaigns --------------------------------------------------------------------

    def campaigns(self) -> list[Campaign]:
        return self.store.campaigns()

    def campaign(self, name: str) -> Campaign:
        found = self.store.campaign(name)
        if found is None:
            raise CampaignNotFound(name)
        return found

    def create(self, data: Mapping[str, Any]) -> Campaign:
        """Raises CampaignError (the rules) or CampaignExists."""
        campaign = make_campaign(data, default_field=self.default_field)
        if not self.store.create(campaign):
            raise CampaignExists(f"campaign {campaign.name!r} exists already")
        return self.campaign(campaign.name)

    def update(self, name: str, changes: Mapping[str, Any]) -> Campaign:
        """Change some rules (or pause: ``{"active": false}``); raises CampaignNotFound,
        CampaignError."""
        campaign = make_campaign(changes, default_field=self.default_field,
                                 base=self.campaign(name))  # fmt: skip
        if not self.store.update(campaign):
            raise CampaignNotFound(name)
        return self.campaign(name)

    def delete(self, name: str) -> None:
        if not self.store.delete(name):
            raise CampaignNotFound(name)

    # -- matching ---------------------------------------------------------------------

    def match(
        self,
        data: bytes,
        campaign_name: str,
        links: ProductLinks,
        label: str | None = None,
        record: bool = True,
    ) -> AdMatch:
        """Ads for the products in a shared photo. Raises CampaignNotFound, CampaignPaused,
        ImageDecodeError. ``label``: what the photo is to the marketer (a post's address);
        ``record``: False for a preview, whose ads are not served (no impressions)."""
        campaign = self.campaign(campaign_name)
        if not campaign.active:
            raise CampaignPaused(f"campaign {campaign.name!r} is paused")
        source = hashlib.sha256(data).hexdigest()
        scenes = self._scenes()
        filters = campaign.filters()
        try:
            found = scenes(data, "shared photo", campaign.max_per_object, filters, MAX_OBJECTS)
            localized = True
        except LocalizerNotTrained:
            found, localized = [], False
        if not localized or (not found and scenes.photos.plain(data)):
            # No localiser, or a product photo on a plain background: the photo is one
            # product (the localiser learnt products among other things).
            found = [self._whole_photo(scenes, data, campaign.max_per_object, filters)]
        objects, served = [], []
        for index, obj in enumerate(found):
            ads = []
            hits = obj.results if campaign.advertises(obj.category) else []
            for hit in hits:
                ad_id = uuid.uuid4().hex
                title, attributes = self.describe(hit.product_id)
                ads.append({
                    "ad_id": ad_id, "product_id": hit.product_id,
                    "score": round(float(hit.score), 5), "title": title,
                    "price": attributes.get("price"), "link": links.link(hit.product_id),
                    "image_link": links.image_link(hit.product_id),
                })  # fmt: skip
                served.append({
                    "id": ad_id, "campaign": campaign.name, "source": source,
                    "source_label": label, "object_index": index, "box": list(obj.box),
                    "product_id": hit.product_id, "score": float(hit.score),
                })  # fmt: skip
            objects.append({"box": list(obj.box), "score": round(obj.score, 4),
                            "category": obj.category, "ads": ads})  # fmt: skip
        if record and served:
            self.store.record_served(served)
            self._keep_source(source, data)
        return AdMatch(campaign.name, source, objects, localized)

    @staticmethod
    def _whole_photo(scenes: SceneSearch, data: bytes, k: int, filters: list[str]) -> SceneObject:
        """Without a localiser: the whole photo (its product isolated when it can be)."""
        query, hits = scenes.photos(data, "shared photo", k, filters)
        with Image.open(io.BytesIO(data)) as img:  # decoded already: only the size
            width, height = img.size
        return SceneObject((0, 0, width, height), 1.0, scenes.categorize(query.analysis), hits)

    def _keep_source(self, source: str, data: bytes) -> None:
        """A small copy of the photo, for the analytics page (once per photo)."""
        key = source_key(source)
        if self.blobs.exists(key):
            return
        try:
            with Image.open(io.BytesIO(data)) as img:
                img.draft("RGB", (SOURCE_THUMB_SIDE, SOURCE_THUMB_SIDE))
                small = img.convert("RGB")
                small.thumbnail((SOURCE_THUMB_SIDE, SOURCE_THUMB_SIDE))
                out = io.BytesIO()
                small.save(out, format="JPEG", quality=80)
        except (OSError, UnidentifiedImageError, ValueError):
            return  # decoded fine for the search: a thumbnail is not worth an error
        self.blobs.put(key, out.getvalue(), "image/jpeg")

    def source_thumbnail(self, source: str) -> bytes | None:
        if len(source) != 64 or any(c not in "0123456789abcdef" for c in source):
            return None
        try:
            return self.blobs.get(source_key(source))
        except BlobNotFoundError:
            return None

    # -- analytics --------------------------------------------------------------------

    def campaign_rows(self) -> list[dict[str, Any]]:
        """Every campaign with its funnel over all time (the admin's table)."""
        funnels = {f["campaign"]: f for f in self.store.funnel("campaign")}
        empty = {"impressions": 0, "clicks": 0, "carts": 0, "purchases": 0, "revenue": 0.0,
                 "ctr": None, "conversion": None, "last_served": None}  # fmt: skip
        return [{**c.to_json(), **funnels.get(c.name, empty)} for c in self.campaigns()]

    def analytics(
        self, campaign: str | None = None, since: datetime | None = None, sources: int = 50
    ) -> dict[str, Any]:
        """The funnel per campaign and per source photo (the ``sources`` most shown)."""
        if campaign is not None:
            self.campaign(campaign)
        return {
            "campaigns": self.store.funnel("campaign", campaign=campaign, since=since),
            "sources": self.source_rows(campaign, since, sources),
        }

    def source_rows(
        self, campaign: str | None = None, since: datetime | None = None, limit: int = 50
    ) -> list[dict[str, Any]]:
        """The funnel per shared photo, the ``limit`` most shown first."""
        return self.store.funnel("source", campaign=campaign, since=since, limit=limit)


__all__ = [
    "AdMatch", "AdService", "CampaignError", "CampaignExists", "CampaignNotFound",
    "CampaignPaused",
]  # fmt: skip
