"""Search by photo: a shopper's photo described as the catalog is, then matched and re-ranked.

A snapshot (a product on a busy background) is first cut down to the product that the
:class:`~vitrine.index.product_finder.ProductFinder` finds in it, so that the match no
longer depends on the background; a catalog-like photo (plain background) is searched
whole, as before.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import cv2
import numpy as np

from vitrine.index import AttributeFilter, Hit
from vitrine.index.product_finder import PLAIN_CHECK_SIDE, ProductFinder
from vitrine.index.visual_search import VisualSearch
from vitrine.vision.analyzer import ImageAnalysis, PreparedImage
from vitrine.vision.decode import DecodeLimits, decode_image
from vitrine.vision.query import QueryDescription, describe_query

# The longest side at which a snapshot is looked at for its product.
FIND_SIDE = 1024


def encode_png(rgb: np.ndarray) -> bytes:
    ok, encoded = cv2.imencode(".png", np.ascontiguousarray(rgb[..., ::-1]))
    if not ok:  # pragma: no cover - OpenCV encodes any uint8 RGB array
        raise ValueError("could not encode the crop")
    return encoded.tobytes()


class PhotoSearch:
    """The products a photo shows, best first.

    ``complete`` runs the CNN on prepared photos; the service passes its micro-batcher,
    so concurrent searches and uploads share model calls. With a ``finder``, a snapshot
    is isolated first (``isolate=False`` searches the photo as it is).
    """

    def __init__(
        self,
        search: VisualSearch,
        complete: Callable[[Sequence[PreparedImage]], list[ImageAnalysis]],
        limits: DecodeLimits,
        finder: ProductFinder | None = None,
    ) -> None:
        self.search = search
        self._complete = complete
        self.limits = limits
        self.finder = finder

    def describe(self, data: bytes, source: str = "<upload>") -> QueryDescription:
        """Describe a photo (raises ImageDecodeError)."""
        return describe_query(
            data, self._complete, self.search.typical_aspect.value, source=source,
            limits=self.limits,
        )  # fmt: skip

    def plain(self, data: bytes, source: str = "<upload>") -> bool:
        """Whether the photo is a product on a plain background (a catalog-like photo)."""
        if self.finder is None or not self.finder.available:
            return False
        small = decode_image(data, source=source, limits=self.limits, max_side=PLAIN_CHECK_SIDE)
        return self.finder.plain_background(small.rgb)

    def isolated(self, data: bytes, source: str = "<upload>") -> bytes | None:
        """The snapshot's product, cropped and encoded; None: search the photo whole."""
        if self.finder is None or not self.finder.available:
            return None
        # A small draft decode settles the common case (a plain background) cheaply.
        small = decode_image(data, source=source, limits=self.limits, max_side=PLAIN_CHECK_SIDE)
        if self.finder.plain_background(small.rgb):
            return None
        decoded = decode_image(data, source=source, limits=self.limits, max_side=FIND_SIDE)
        product = self.finder.isolate(decoded.rgb)
        return None if product is None else encode_png(product)

    def __call__(
        self,
        data: bytes,
        source: str = "<upload>",
        k: int = 10,
        filters: Sequence[str | AttributeFilter] | None = None,
        weights: Mapping[str, float] | None = None,
        isolate: bool = True,
    ) -> tuple[QueryDescription, list[Hit]]:
        """Raises ImageDecodeError (the photo) or ValueError (the filters)."""
        product = self.isolated(data, source) if isolate else None
        query = self.describe(product if product is not None else data, source)
        return query, self.search.search_photo(query, k, filters, weights)
