"""Shop the look: every product found in a photo, each with its catalog matches.

The :class:`~vitrine.index.product_finder.ProductFinder` answers the boxes; each box's
crop is searched as a photo (described as a catalog photo is, fused re-ranking) and
labelled by the shop's own classifier when one is trained.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from vitrine.index import AttributeFilter, Hit
from vitrine.index.photo_search import FIND_SIDE, PhotoSearch, encode_png
from vitrine.index.product_finder import FoundProduct, ProductFinder, crop
from vitrine.vision.analyzer import ImageAnalysis
from vitrine.vision.decode import decode_image


class LocalizerNotTrained(RuntimeError):
    """No localiser has been trained for this shop yet."""


@dataclass(frozen=True)
class SceneObject:
    """One product found in a photo: its box in the photo's pixels, the localiser's
    score, the predicted category (None without a classifier) and its matches."""

    box: tuple[int, int, int, int]
    score: float
    category: str | None
    results: list[Hit]


class SceneSearch:
    """Finds the products in a photo and searches the catalog for each."""

    def __init__(
        self,
        photos: PhotoSearch,
        finder: ProductFinder,
        categorize: Callable[[ImageAnalysis], str | None],
    ) -> None:
        self.photos = photos
        self.finder = finder
        self.categorize = categorize

    def __call__(
        self,
        data: bytes,
        source: str = "<upload>",
        k: int = 10,
        filters: Sequence[str | AttributeFilter] | None = None,
        limit: int = 6,
    ) -> list[SceneObject]:
        """Raises ImageDecodeError, ValueError (the filters), LocalizerNotTrained."""
        if not self.finder.available:
            raise LocalizerNotTrained(
                "no localiser is trained yet: train one (POST /v1/localizer/train or "
                "`vitrine localizer train`)"
            )
        decoded = decode_image(data, source=source, limits=self.photos.limits, max_side=FIND_SIDE)
        scale_x = decoded.width / decoded.rgb.shape[1]
        scale_y = decoded.height / decoded.rgb.shape[0]
        found = self.finder.find(decoded.rgb)[:limit]

        def search(item: FoundProduct) -> SceneObject:
            query = self.photos.describe(encode_png(crop(decoded.rgb, item.box)), source)
            hits = self.photos.search.search_photo(query, k, filters)
            x0, y0, x1, y1 = item.box
            box = (round(x0 * scale_x), round(y0 * scale_y), round(x1 * scale_x),
                   round(y1 * scale_y))  # fmt: skip
            return SceneObject(box, item.score, self.categorize(query.analysis), hits)

        if len(found) <= 1:
            return [search(item) for item in found]
        # Together, so that the CNN's micro-batcher runs the crops in one batch.
        with ThreadPoolExecutor(max_workers=len(found)) as pool:
            return list(pool.map(search, found))


def scene_json(objects: list[SceneObject], describe: Callable[[str], Any]) -> list[dict]:
    """The objects as the API answers them (``describe``: id -> (title, attributes))."""
    out = []
    for obj in objects:
        results = []
        for hit in obj.results:
            title, attributes = describe(hit.product_id)
            results.append({"id": hit.product_id, "score": round(float(hit.score), 5),
                            "title": title, "attributes": attributes})  # fmt: skip
        out.append({"box": list(obj.box), "score": round(obj.score, 4),
                    "category": obj.category, "results": results})  # fmt: skip
    return out
