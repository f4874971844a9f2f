"""Product cards: what a storefront widget shows of a product (photo, title, price, link).

The photo's address is the shop's own (``image_link_pattern``), Vitrine's public photo
route when the shop turned it on (``public_images``), or else a signed, expiring address
of that route (``image_urls``), so that ``<img src>`` works without a key.
"""

from __future__ import annotations

from typing import Any

from vitrine.catalog.feed import ProductLinks
from vitrine.catalog.image_urls import ImageSigner
from vitrine.catalog.store import CatalogStore
from vitrine.config import Settings

MAX_CARDS = 100


class ProductCards:
    """Builds the cards of products by id (see the module docstring)."""

    def __init__(self, store: CatalogStore, settings: Settings, signer: ImageSigner) -> None:
        self.store = store
        self.settings = settings
        self.signer = signer

    def cards(self, product_ids: list[str], base_url: str) -> list[dict[str, Any]]:
        """The cards of the products that exist, in the order asked (repeats once)."""
        wanted = list(dict.fromkeys(product_ids))[:MAX_CARDS]
        links = ProductLinks.from_settings(self.settings, base_url)
        public = (self.settings.public_url or base_url).rstrip("/")
        rows = {row["id"]: row for row in self.store.iter_feed_rows(product_ids=wanted)}
        out = []
        for pid in wanted:
            row = rows.get(pid)
            if row is None:
                continue
            image = None
            if row["blob_key"]:
                image = links.image_link(pid) or public + self.signer.path(pid)
            out.append(
                {
                    "id": pid,
                    "title": row["title"] or pid,
                    "price": row["price"],
                    "currency": self.settings.feed_currency,
                    "available": bool(row["available"]),
                    "image": image,
                    "link": links.link(pid),
                }
            )
        return out
