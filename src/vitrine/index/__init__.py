"""Nearest-neighbour index over product embeddings (faiss)."""

from vitrine.index.attributes import (
    AttributeFilter,
    AttributeIndex,
    parse_filter,
    parse_filters,
    stringify_values,
)
from vitrine.index.vector_index import Hit, VectorIndex

__all__ = [
    "AttributeFilter",
    "AttributeIndex",
    "Hit",
    "VectorIndex",
    "parse_filter",
    "parse_filters",
    "stringify_values",
]
