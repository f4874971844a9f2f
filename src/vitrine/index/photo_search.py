"""Search by photo: a shopper's photo described as the catalog is, then matched and re-ranked."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from vitrine.index import Hit
from vitrine.index.visual_search import VisualSearch
from vitrine.vision.analyzer import ImageAnalysis, PreparedImage
from vitrine.vision.decode import DecodeLimits
from vitrine.vision.query import QueryDescription, describe_query


class PhotoSearch:
    """The products a photo shows, best first.

    ``complete`` runs the CNN on prepared photos; the service passes its micro-batcher,
    so concurrent searches and uploads share model calls.
    """

    def __init__(
        self,
        search: VisualSearch,
        complete: Callable[[Sequence[PreparedImage]], list[ImageAnalysis]],
        limits: DecodeLimits,
    ) -> None:
        self.search = search
        self._complete = complete
        self.limits = limits

    def __call__(
        self,
        data: bytes,
        source: str = "<upload>",
        k: int = 10,
        filters: Sequence[str] | None = None,
        weights: Mapping[str, float] | None = None,
    ) -> tuple[QueryDescription, list[Hit]]:
        """Raises ImageDecodeError (the photo) or ValueError (the filters)."""
        query = describe_query(
            data,
            self._complete,
            self.search.typical_aspect.value,
            source=source,
            limits=self.limits,
        )
        return query, self.search.search_photo(query, k, filters, weights)
