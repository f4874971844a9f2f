"""What the recommendation service answers: lists of explained products, and its errors.

Every list has a recommendation id of its own (clicks and purchases sent with it are
attributed to the strategy that served it); a customer's list is kept as a
:class:`~vitrine.recommend.list_cache.CachedList` whose items are serialised to JSON once.
"""

from __future__ import annotations

import itertools
import json
import os
from dataclasses import dataclass, field
from typing import Any

from vitrine.recommend.base import Reason
from vitrine.recommend.list_cache import CachedList


class NotReadyError(RuntimeError):
    """The first models are still being trained."""


class UnknownItemError(KeyError):
    """A product that is not in the catalog the models know."""


@dataclass
class RecommendedItem:
    """One recommended product: its rank, the algorithm that found it and why."""

    product_id: str
    rank: int
    score: float
    source: str
    title: str | None
    explanation: Reason

    def to_json(self) -> dict[str, Any]:
        return {
            "product_id": self.product_id,
            "rank": self.rank,
            "score": round(self.score, 6),
            "source": self.source,
            "title": self.title,
            "explanation": self.explanation,
        }

    def to_response(self) -> dict[str, Any]:
        """As the API sends it (no null fields)."""
        return {k: v for k, v in self.to_json().items() if v is not None}


@dataclass
class RecommendationList:
    """One served list: its recommendation id, strategy, context and items."""

    id: str
    strategy: str
    context: str
    items: list[RecommendedItem]
    took_ms: float = 0.0
    user_id: str | None = None
    fallback: bool = False
    extra: dict[str, Any] = field(default_factory=dict)
    items_json: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "recommendation_id": self.id,
            "strategy": self.strategy,
            "user_id": self.user_id,
            "items": [i.to_json() for i in self.items],
            "fallback_used": self.fallback,
            "took_ms": round(self.took_ms, 3),
            **self.extra,
        }

    def to_body(self) -> str:
        """The API's JSON document (null fields left out), the items serialised once per
        computed list rather than once per response."""
        items = self.items_json
        if items is None:
            items = json.dumps([i.to_response() for i in self.items], separators=(",", ":"))
        head = {k: v for k, v in self.to_json().items() if k != "items" and v is not None}
        return json.dumps(head, separators=(",", ":"))[:-1] + ',"items":' + items + "}"


def cached_list(items: list[RecommendedItem], fallback: bool) -> CachedList:
    """A computed list as it is kept, its items serialised once."""
    return CachedList(
        tuple(items), fallback, json.dumps([i.to_response() for i in items], separators=(",", ":"))
    )


_ID_PREFIX = os.urandom(8).hex()  # this process's, re-drawn in forked children
_ID_COUNTER = itertools.count()


def recommendation_id() -> str:
    """A unique recommendation id (32 hex digits): a random per-process prefix and a
    counter, without the system call of uuid4 (the event loop releases the GIL there,
    and under load waits to get it back)."""
    return f"{_ID_PREFIX}{next(_ID_COUNTER):016x}"


def _new_process_ids() -> None:
    global _ID_PREFIX
    _ID_PREFIX = os.urandom(8).hex()


os.register_at_fork(after_in_child=_new_process_ids)
