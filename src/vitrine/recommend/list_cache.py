"""Customers' last recommendation lists, reused until something they depend on changes.

A list depends on the model set, the strategy (its whole configuration), ``k``, the
request's rules, the customer's history and the catalog. The key holds the strategy,
``k`` and the rules; each entry remembers the trained model set it was computed with,
the sequence number of the customer's latest live event (0: none since the snapshot)
and the catalog generation (changes to the catalog since training, published at most
every few seconds: see :class:`~vitrine.recommend.live_catalog.LiveCatalog`). A lookup
with another model set or a newer event misses, so an event or a model swap makes the
very next request compute afresh, and a hit is exactly what would be computed from that
catalog generation; the service decides how long an older generation's list may be
served. Customers with no history at all share one entry (their lists are the same).
The items are serialised to JSON once, when the list is computed.

Lists computed at training time (:attr:`ModelSet.precomputed`) use the same keys and are
valid while the customer has no live event.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

COLD = ""  # the key part shared by customers with no history


@dataclass(frozen=True)
class CachedList:
    """A computed list kept for a customer, with what it was computed from."""

    items: Sequence[Any]  # RecommendedItem
    fallback: bool
    items_json: str  # the items as a JSON array, serialised once


def list_key(user: str, strategy: Any, k: int, rules: Any) -> tuple[str, str, int, str]:
    """(customer or COLD, strategy configuration, k, effective rules)."""
    return user, strategy.cache_key, k, rules.cache_key


class ListCache:
    """A bounded LRU of lists, safe to use from the server's worker threads."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._entries: OrderedDict[tuple[Any, ...], tuple[object, int, int, CachedList]] = (
            OrderedDict()
        )
        self._lock = threading.Lock()

    def get(self, key: tuple[Any, ...], models: object, seq: int) -> tuple[int, CachedList] | None:
        """(catalog generation, list) computed with ``models`` and the latest live event
        ``seq``, or None."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is None or entry[0] is not models or entry[1] != seq:
                return None
            self._entries.move_to_end(key)
            return entry[2], entry[3]

    def put(
        self, key: tuple[Any, ...], models: object, seq: int, generation: int, value: CachedList
    ) -> None:
        if self.size <= 0:
            return
        with self._lock:
            self._entries[key] = (models, seq, generation, value)
            self._entries.move_to_end(key)
            while len(self._entries) > self.size:
                self._entries.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)
