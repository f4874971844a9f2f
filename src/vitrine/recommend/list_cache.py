"""Customers' last recommendation lists, reused until something they depend on changes.

A list depends on the model set, the strategy (its whole configuration), ``k``, the
request's rules and the customer's history. The key holds the strategy, ``k`` and the
rules; each entry remembers the model set it was computed with and the sequence number
of the customer's latest live event (0: none since the snapshot). A lookup with another
model set or a newer event misses, so an event or a model swap makes the very next
request compute afresh, and a hit is exactly what would be computed. Customers with no
history at all share one entry (their lists are the same). The items are serialised to
JSON once, when the list is computed.

Lists computed at training time (:attr:`ModelSet.precomputed`) use the same keys and are
valid while the customer has no live event.
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

COLD = ""  # the key part shared by customers with no history


@dataclass(frozen=True)
class CachedList:
    items: Sequence[Any]  # RecommendedItem
    fallback: bool
    items_json: str  # the items as a JSON array, serialised once


def list_key(user: str, strategy: Any, k: int, rules: Any) -> tuple[str, str, int, str]:
    """(customer or COLD, strategy configuration, k, effective rules)."""
    config = json.dumps({"name": strategy.name, **strategy.to_json()}, sort_keys=True)
    return user, config, k, json.dumps(rules.to_json(), sort_keys=True)


class ListCache:
    """A bounded LRU of lists, safe to use from the server's worker threads."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._entries: OrderedDict[tuple[Any, ...], tuple[object, int, CachedList]] = (
            OrderedDict()
        )
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, key: tuple[Any, ...], models: object, seq: int) -> CachedList | None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is None or entry[0] is not models or entry[1] != seq:
                self.misses += 1
                return None
            self._entries.move_to_end(key)
            self.hits += 1
            return entry[2]

    def put(self, key: tuple[Any, ...], models: object, seq: int, value: CachedList) -> None:
        if self.size <= 0:
            return
        with self._lock:
            self._entries[key] = (models, seq, value)
            self._entries.move_to_end(key)
            while len(self._entries) > self.size:
                self._entries.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)
