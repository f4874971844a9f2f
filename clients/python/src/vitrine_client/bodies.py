"""Request bodies a caller builds as plain dicts, typed: events and strategies."""

from __future__ import annotations

from datetime import datetime
from typing import Any, NotRequired, TypedDict


class Event(TypedDict):
    """A shopper's event; re-sent events (same ``event_id``) are counted once."""

    user_id: str
    product_id: str
    type: str  # view, click, add_to_cart, purchase, ...
    timestamp: NotRequired[datetime | str]  # default: now
    event_id: NotRequired[str]
    session_id: NotRequired[str]
    recommendation_id: NotRequired[str]  # the list the event came from
    strategy: NotRequired[str]
    ad_id: NotRequired[str]  # the visual search ad the event came from
    price: NotRequired[float]


class StrategyConfig(TypedDict, total=False):
    """A recommendation strategy: its algorithm and parameters, aspect weights, business
    rules, fallbacks and A/B variants (see docs/recommendations.md)."""

    description: str
    algorithm: str
    params: dict[str, Any]
    weights: dict[str, float]
    rules: dict[str, Any]
    fallback: list[str]
    variants: dict[str, float]
    paused: bool
