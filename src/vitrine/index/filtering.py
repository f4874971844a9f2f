"""Filtered search support: packed row bitmaps for faiss and a cache of id -> row mappings.

Mapping ``allowed`` product ids to index rows costs a dict probe per id, which dominates
a broadly filtered search (~50k ids). :class:`FilterRowCache` remembers the mapping of a
``frozenset`` passed again unchanged (same object) while the index is unchanged (same
generation), as :meth:`vitrine.index.AttributeIndex.matching_frozen` hands out.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any, Final

import numpy as np

# frozenset filters whose id -> row mapping is remembered.
FILTER_CACHE_SIZE: Final = 8


class FilterRowCache:
    """A small LRU of ``(frozenset, generation) -> (rows, bitmap)``; thread-safe."""

    def __init__(self, size: int = FILTER_CACHE_SIZE) -> None:
        self.size = size
        self._entries: OrderedDict[int, tuple[frozenset[str], int, np.ndarray, Any]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, allowed: frozenset[str], generation: int) -> tuple[np.ndarray, Any] | None:
        key = id(allowed)
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None and entry[0] is allowed and entry[1] == generation:
                self._entries.move_to_end(key)
                return entry[2], entry[3]
        return None

    def put(self, allowed: frozenset[str], generation: int, rows: np.ndarray, bits: Any) -> None:
        key = id(allowed)
        with self._lock:
            self._entries[key] = (allowed, generation, rows, bits)
            self._entries.move_to_end(key)
            while len(self._entries) > self.size:
                self._entries.popitem(last=False)


def packed_membership(rows: np.ndarray, n: int) -> np.ndarray:
    """Bitmap (little-endian bits, as faiss.IDSelectorBitmap reads them) of ``rows`` in ``n``."""
    member = np.zeros(n, dtype=bool)
    member[rows] = True
    return np.packbits(member, bitorder="little")


def bit_masks(rows: np.ndarray) -> np.ndarray:
    return np.left_shift(np.uint8(1), (rows & 7).astype(np.uint8))
