"""The catalog as a product feed that ad platforms read (CSV or JSON), and product links.

Columns are those Google Merchant Center, Meta and Microsoft read: ``id, title,
description, link, image_link, price, availability, brand, category``. ``link`` follows
the shop's pattern (``product_link_pattern``, ``{id}`` replaced by the URL-quoted product
id); ``image_link`` the image pattern, by default Vitrine's public image route
(``/images/{id}.jpg``), which the shop turns on with ``public_images``.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from vitrine.catalog.store import CatalogStore
from vitrine.config import Settings

FEED_COLUMNS = (
    "id", "title", "description", "link", "image_link", "price", "availability", "brand",
    "category",
)  # fmt: skip
PUBLIC_IMAGE_PATH = "/images/{id}.jpg"


class FeedError(RuntimeError):
    """The feed cannot be made as configured; the message says which setting to set."""


@dataclass(frozen=True)
class ProductLinks:
    """A product's page and photo addresses, from the shop's patterns (None: not set)."""

    link_pattern: str | None
    image_pattern: str | None

    @classmethod
    def from_settings(cls, settings: Settings, base_url: str = "") -> ProductLinks:
        """``base_url``: the server's own address, when ``public_url`` is not set."""
        public = (settings.public_url or base_url).rstrip("/")
        image = settings.image_link_pattern or (
            public + PUBLIC_IMAGE_PATH if settings.public_images and public else ""
        )
        return cls(
            settings.product_link_pattern.replace("{public_url}", public) or None,
            image.replace("{public_url}", public) or None,
        )

    @staticmethod
    def _fill(pattern: str | None, product_id: str) -> str | None:
        return None if pattern is None else pattern.replace("{id}", quote(product_id, safe=""))

    def link(self, product_id: str) -> str | None:
        return self._fill(self.link_pattern, product_id)

    def image_link(self, product_id: str) -> str | None:
        return self._fill(self.image_pattern, product_id)


class ProductFeed:
    """Streams the catalog as feed rows, CSV or JSON (constant memory in the catalog)."""

    def __init__(self, store: CatalogStore, settings: Settings) -> None:
        self.store = store
        self.settings = settings

    def rows(self, links: ProductLinks) -> Iterator[dict[str, str]]:
        """Raises FeedError (before the first row) when a link pattern is missing."""
        if links.link_pattern is None:
            raise FeedError(
                "product_link_pattern is not set: set VITRINE_PRODUCT_LINK_PATTERN to the "
                "address of a product page, e.g. https://shop.example/products/{id}"
            )
        if links.image_pattern is None:
            raise FeedError(
                "image links need VITRINE_PUBLIC_IMAGES=true (Vitrine serves product photos "
                "at /images/{id}.jpg) or VITRINE_IMAGE_LINK_PATTERN (the shop's own photo "
                "addresses, e.g. https://cdn.shop.example/{id}.jpg)"
            )
        return self._rows(links)

    def _rows(self, links: ProductLinks) -> Iterator[dict[str, str]]:
        s = self.settings
        fields = [f.strip() for f in s.feed_category_fields.split(",") if f.strip()]
        for row in self.store.iter_feed_rows():
            attrs: dict[str, Any] = row["attributes"] or {}
            pid = row["id"]
            title = row["title"] or pid
            price = row["price"]
            yield {
                "id": pid,
                "title": title,
                "description": row["description"] or title,
                "link": links.link(pid) or "",
                "image_link": (links.image_link(pid) or "") if row["blob_key"] else "",
                "price": "" if price is None else f"{price:.2f} {s.feed_currency}",
                "availability": "in_stock" if row["available"] else "out_of_stock",
                "brand": str(attrs.get(s.feed_brand_field) or ""),
                "category": " > ".join(str(attrs[f]) for f in fields if attrs.get(f)),
            }

    def csv_chunks(self, links: ProductLinks) -> Iterator[str]:
        rows = self.rows(links)
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=FEED_COLUMNS, lineterminator="\n")
        writer.writeheader()
        for n, row in enumerate(rows, 1):
            writer.writerow(row)
            if n % 1000 == 0:
                yield out.getvalue()
                out.seek(0)
                out.truncate()
        yield out.getvalue()

    def json_chunks(self, links: ProductLinks) -> Iterator[str]:
        rows = self.rows(links)
        yield '{"products":['
        for n, row in enumerate(rows):
            yield ("," if n else "") + json.dumps(row, ensure_ascii=False)
        yield "]}"
