"""Search by photo: a shopper's photo described as the catalog is, then matched and re-ranked."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from vitrine.index import Hit
from vitrine.services.runtime import Vitrine
from vitrine.vision.query import QueryDescription, describe_query


def search_by_photo(
    vitrine: Vitrine,
    data: bytes,
    source: str = "<upload>",
    k: int = 10,
    filters: Sequence[str] | None = None,
    weights: Mapping[str, float] | None = None,
) -> tuple[QueryDescription, list[Hit]]:
    """The products a photo shows, best first; raises ImageDecodeError or ValueError (filters).

    The CNN pass goes through the service's micro-batcher, so concurrent searches and
    uploads share model calls.
    """
    search = vitrine.search
    query = describe_query(
        data,
        vitrine.batcher.analyze,
        search.typical_aspect.value,
        source=source,
        limits=vitrine.limits,
    )
    return query, search.search_photo(query, k, filters, weights)
