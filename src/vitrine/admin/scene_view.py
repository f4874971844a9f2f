"""The admin's shop-the-look view: the photo with a box per product found, each box
leading to that product's catalog matches."""

from __future__ import annotations

import base64
import io
from dataclasses import dataclass
from typing import Any

from PIL import Image

from vitrine.catalog.browse import BrowseFilter, CatalogBrowser
from vitrine.index.scene_search import SceneObject

PREVIEW_SIDE = 720


@dataclass(frozen=True)
class SceneBox:
    """An object found: its number, score, category, place on the photo in percent (left,
    top, width, height) and its matches as product cards with their scores."""

    number: int
    score: float
    category: str | None
    place: tuple[float, float, float, float]
    matches: list[tuple[Any, float]]

    @property
    def area(self) -> float:
        return self.place[2] * self.place[3]


def preview(data: bytes) -> tuple[str, int, int]:
    """The photo as a small JPEG data URL, and its full width and height."""
    with Image.open(io.BytesIO(data)) as image:
        width, height = image.size
        small = image.convert("RGB")
        small.thumbnail((PREVIEW_SIDE, PREVIEW_SIDE))
        out = io.BytesIO()
        small.save(out, "JPEG", quality=85)
    return "data:image/jpeg;base64," + base64.b64encode(out.getvalue()).decode(), width, height


def scene_boxes(
    objects: list[SceneObject], width: int, height: int, browser: CatalogBrowser
) -> list[SceneBox]:
    ids = list(dict.fromkeys(h.product_id for obj in objects for h in obj.results))
    cards = {c.id: c for c in browser.cards(BrowseFilter(), ids=ids, limit=max(1, len(ids)))}
    boxes = []
    for number, obj in enumerate(objects, 1):
        x0, y0, x1, y1 = obj.box
        place = (100 * x0 / width, 100 * y0 / height, 100 * (x1 - x0) / width,
                 100 * (y1 - y0) / height)  # fmt: skip
        matches = [(cards[h.product_id], h.score) for h in obj.results if h.product_id in cards]
        boxes.append(SceneBox(number, obj.score, obj.category, place, matches))
    return boxes
