"""Customer events: types and their weights, validation, idempotency keys.

An event says that a customer (``user_id``) did something (``type``) with a product at a
time. Built-in types and their weights (how much each says about taste) are in
:data:`DEFAULT_EVENT_WEIGHTS`; a shop adds its own types, or changes weights, with the
``recommend_event_weights`` setting (``"wishlist=3,return=-4"``). A negative weight takes
interest away (``remove_from_cart``).

Idempotency: an event carries the client's ``event_id``, or its key is a hash of its
natural key (customer, product, type, time, session, and the occurrence number of
identical rows in one import, so that a customer who bought two of one article on one
day keeps both purchases while re-importing the file adds nothing).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

DEFAULT_EVENT_WEIGHTS: dict[str, float] = {
    "view": 1.0,
    "click": 2.0,
    "add_to_cart": 4.0,
    "remove_from_cart": -2.0,
    "purchase": 8.0,
}
MAX_ID_LENGTH = 128
# An event's time lies between these (UTC): an absurd time (year 1, year 9999) would stop
# every training (day numbers out of range) and skew trending and recency.
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
FUTURE_SLACK = timedelta(days=1)  # clocks of clients run ahead


class EventError(ValueError):
    """An event that cannot be stored; the message names the field and the problem."""


class TimeOutOfRangeError(EventError):
    """A time whose UTC value is outside what a datetime holds (near year 1 or 9999)."""

    def __init__(self, message: str, *, early: bool) -> None:
        super().__init__(message)
        self.early = early


def event_weights(custom: str = "") -> dict[str, float]:
    """The built-in event weights with ``custom`` (``"name=weight,..."``) merged over them."""
    weights = dict(DEFAULT_EVENT_WEIGHTS)
    if not custom.strip():
        return weights
    for item in custom.split(","):
        name, sep, value = item.strip().partition("=")
        name = name.strip()
        if not sep or not name:
            raise EventError(f"event weight {item.strip()!r} is not of the form type=number")
        try:
            weight = float(value)
        except ValueError:
            raise EventError(f"event weight {name!r}: {value.strip()!r} is not a number") from None
        if not math.isfinite(weight):
            raise EventError(f"event weight {name!r} must be finite")
        weights[name] = weight
    return weights


def parse_time(value: str | datetime | date | None, *, default: datetime | None = None) -> datetime:
    """An aware UTC datetime from ISO text (a date alone is midnight), or ``default``/now."""
    if value is None or value == "":
        return default or datetime.now(UTC)
    if isinstance(value, datetime):
        parsed = value
    elif isinstance(value, date):
        parsed = datetime(value.year, value.month, value.day)
    else:
        text = str(value).strip()
        try:
            parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            raise EventError(f"time {text!r} is not an ISO date or date-time") from None
    if parsed.tzinfo is None:  # a time without a zone is UTC
        return parsed.replace(tzinfo=UTC)
    try:
        return parsed.astimezone(UTC)
    except OverflowError:  # e.g. 0001-01-01T00:00+01:00: in UTC, before year 1
        early = parsed.year < 1970
        raise TimeOutOfRangeError(
            f"time {parsed.isoformat()} is out of range", early=early
        ) from None


def event_time(value: str | datetime | date | None, *, now: datetime | None = None) -> datetime:
    """An event's time (see :func:`parse_time`; none: ``now``), refused unless between
    1970-01-01T00:00:00Z and a day after now; the message names the time."""
    current = now or datetime.now(UTC)
    if value is None or value == "":
        return current
    shown = value.isoformat() if isinstance(value, date) else str(value).strip()
    try:
        ts = parse_time(value)
    except TimeOutOfRangeError as exc:
        early = exc.early
    else:
        if EARLIEST <= ts <= current + FUTURE_SLACK:
            return ts
        early = ts < EARLIEST
    if early:
        raise EventError(f"timestamp {shown} is before {EARLIEST:%Y-%m-%d}")
    raise EventError(f"timestamp {shown} is more than {FUTURE_SLACK.days} day in the future")


@dataclass(frozen=True)
class EventRecord:
    """A validated event, ready to store."""

    user_id: str
    product_id: str
    type: str
    ts: datetime
    event_key: str
    session_id: str | None = None
    recommendation_id: str | None = None
    strategy: str | None = None
    price: float | None = None
    ad_id: str | None = None
    extra: dict[str, str] = field(default_factory=dict, compare=False)

    def as_row(self) -> dict[str, object]:
        return {
            "event_key": self.event_key,
            "user_id": self.user_id,
            "product_id": self.product_id,
            "type": self.type,
            "ts": self.ts,
            "session_id": self.session_id,
            "recommendation_id": self.recommendation_id,
            "strategy": self.strategy,
            "price": self.price,
            "ad_id": self.ad_id,
        }


def _identifier(name: str, value: object, *, required: bool, checked: bool = False) -> str | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        if required:
            raise EventError(f"{name} is required")
        return None
    text = str(value).strip()
    if not checked and len(text) > MAX_ID_LENGTH:
        raise EventError(f"{name} is longer than {MAX_ID_LENGTH} characters")
    return text


def natural_key(
    user_id: str, product_id: str, type_: str, ts: datetime, session_id: str | None, occurrence: int
) -> str:
    text = "\x1f".join(
        [user_id, product_id, type_, ts.isoformat(), session_id or "", str(occurrence)]
    )
    return "nk:" + hashlib.sha256(text.encode()).hexdigest()[:40]


def make_event(
    data: Mapping[str, object],
    weights: Mapping[str, float],
    *,
    occurrence: int = 0,
    now: datetime | None = None,
    form_checked: bool = False,
) -> EventRecord:
    """Validate one event given as a mapping (API body, CSV row already mapped).

    Keys: ``user_id``, ``product_id``, ``type``, optional ``timestamp``, ``event_id``,
    ``session_id``, ``recommendation_id``, ``strategy``, ``ad_id`` (a visual search ad's
    id), ``price``.

    ``form_checked``: the API's schema already checked each field's form (identifiers are
    strings of at most ``MAX_ID_LENGTH`` characters, the timestamp a datetime, the price a
    finite number >= 0), so that is not checked again; what a schema cannot know still is:
    identifiers blank once stripped, the shop's event types, the time range.
    """
    checked = form_checked
    user = _identifier("user_id", data.get("user_id"), required=True, checked=checked)
    product = _identifier("product_id", data.get("product_id"), required=True, checked=checked)
    type_ = _identifier("type", data.get("type"), required=True, checked=checked)
    assert user is not None and product is not None and type_ is not None
    if type_ not in weights:
        known = ", ".join(sorted(weights))
        raise EventError(f"unknown event type {type_!r}; known types: {known}")
    ts = event_time(data.get("timestamp"), now=now)  # type: ignore[arg-type]
    session = _identifier("session_id", data.get("session_id"), required=False, checked=checked)
    price_raw = data.get("price")
    price: float | None = None
    if checked:
        price = price_raw  # type: ignore[assignment]
    elif price_raw not in (None, ""):
        try:
            price = float(price_raw)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            raise EventError(f"price {price_raw!r} is not a number") from None
        if not math.isfinite(price) or price < 0:
            raise EventError(f"price {price_raw!r} must be a finite number >= 0")
    event_id = _identifier("event_id", data.get("event_id"), required=False, checked=checked)
    key = (
        "id:" + event_id if event_id else natural_key(user, product, type_, ts, session, occurrence)
    )
    return EventRecord(
        user_id=user,
        product_id=product,
        type=type_,
        ts=ts,
        event_key=key,
        session_id=session,
        recommendation_id=_identifier(
            "recommendation_id", data.get("recommendation_id"), required=False, checked=checked
        ),
        strategy=_identifier("strategy", data.get("strategy"), required=False, checked=checked),
        price=price,
        ad_id=_identifier("ad_id", data.get("ad_id"), required=False, checked=checked),
    )
