"""Webhook subscriptions, and the durable, signed, retried delivery of events to them.

:meth:`WebhookService.publish` writes one pending delivery per subscription to the event
in the database, in the caller's process: an event survives any restart from then on.
The delivery loop (:meth:`WebhookService.step`, run by the leading process only) sends
what is due, signed (:mod:`vitrine.webhooks.signing`), and schedules a failed attempt
again with exponential backoff: by default 1 min, 3, 9, 27, 81 min, then every 6 h, ten
attempts over about a day, after which the delivery is failed (it can be sent again on
demand). A 2xx answer is delivered; anything else, a redirect included, is a failure.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import httpx

from vitrine import __version__
from vitrine.catalog.models import utcnow
from vitrine.config import Settings
from vitrine.webhooks.events import EVENT_KINDS, PING
from vitrine.webhooks.signing import HEADER, new_secret, sign
from vitrine.webhooks.store import DELIVERED, FAILED, PENDING, WebhookStore
from vitrine.webhooks.targets import TargetError, check_public, check_url

log = logging.getLogger(__name__)

MAX_DESCRIPTION = 2000
MAX_ERROR = 500
PURGE_EVERY_S = 3600.0
EMPTY = {PENDING: 0, DELIVERED: 0, FAILED: 0}


class WebhookError(ValueError):
    """A subscription that cannot be made as asked (the message says why)."""


class WebhookNotFound(LookupError):
    """No such subscription or delivery."""


class SubscriptionPaused(RuntimeError):
    """The subscription is paused: nothing is sent to it until it is resumed."""


@dataclass(frozen=True)
class DeliveryOptions:
    """How deliveries are sent and retried (see ``webhook_*`` in the configuration)."""

    timeout_s: float = 10.0
    max_attempts: int = 10
    retry_base_s: float = 60.0
    retry_factor: float = 3.0
    retry_cap_s: float = 6 * 3600.0
    block_private: bool = False
    concurrency: int = 4
    batch: int = 50
    retention_days: int = 30

    @classmethod
    def from_settings(cls, s: Settings) -> DeliveryOptions:
        return cls(
            timeout_s=s.webhook_timeout_s,
            max_attempts=max(1, s.webhook_max_attempts),
            retry_base_s=s.webhook_retry_base_s,
            retry_cap_s=s.webhook_retry_cap_s,
            block_private=s.webhook_block_private,
            retention_days=s.webhook_retention_days,
        )

    def retry_delay(self, attempts: int) -> float:
        """Seconds between failed attempt number ``attempts`` (1-based) and the next."""
        return min(self.retry_base_s * self.retry_factor ** max(attempts - 1, 0), self.retry_cap_s)


def body_of(delivery: Mapping[str, Any]) -> bytes:
    """The exact bytes a delivery posts (and signs)."""
    created = delivery["created_at"]
    document = {
        "id": delivery["event_id"],
        "type": delivery["event"],
        "created_at": created.isoformat().replace("+00:00", "Z"),
        "data": delivery["payload"],
    }
    return json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode()


class WebhookService:
    """Subscriptions (made, changed, paused, deleted), events published to them, and the
    sending of what is due. ``transport``: an httpx transport (tests)."""

    def __init__(
        self,
        store: WebhookStore,
        options: DeliveryOptions | None = None,
        *,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.store = store
        self.options = options or DeliveryOptions()
        self._transport = transport
        self._client: httpx.Client | None = None
        self._last_purge = 0.0
        # Called when deliveries were queued (the delivery loop, where it runs, wakes).
        self.on_queued: Callable[[], None] | None = None

    # -- subscriptions ----------------------------------------------------------------

    def subscribe(
        self,
        url: str,
        events: Sequence[str],
        description: str | None = None,
        active: bool = True,
    ) -> dict[str, Any]:
        """A new subscription, with its signing secret: the only time the secret is shown."""
        values = self._checked({"url": url, "events": events, "description": description})
        secret = new_secret()
        sub_id = self.store.insert_subscription({**values, "active": active, "secret": secret})
        return {**self.subscription(sub_id), "secret": secret}

    def subscriptions(self) -> list[dict[str, Any]]:
        """Every subscription (no secrets), with its deliveries counted by state."""
        counts = self.store.counts()
        return [{**s, "deliveries": counts.get(s["id"], EMPTY)} for s in self.store.subscriptions()]

    def subscription(self, sub_id: int) -> dict[str, Any]:
        """One subscription (no secret), with its deliveries counted by state."""
        found = self.store.subscription(sub_id)
        if found is None:
            raise WebhookNotFound(f"there is no webhook subscription {sub_id}")
        return {**found, "deliveries": self.store.counts(sub_id).get(sub_id, EMPTY)}

    def edit(self, sub_id: int, changes: Mapping[str, Any]) -> dict[str, Any]:
        """Change the url, events, description or active flag given (pause: active False)."""
        self.subscription(sub_id)
        values = self._checked(changes)
        if "active" in changes:
            values["active"] = bool(changes["active"])
        if values:
            self.store.update_subscription(sub_id, values)
        resumed = bool(values.get("active"))
        if resumed and self.on_queued is not None:  # what waited while paused goes now
            self.on_queued()
        return self.subscription(sub_id)

    def delete(self, sub_id: int) -> None:
        """Delete a subscription and its delivery log."""
        if not self.store.delete_subscription(sub_id):
            raise WebhookNotFound(f"there is no webhook subscription {sub_id}")

    def _checked(self, given: Mapping[str, Any]) -> dict[str, Any]:
        values: dict[str, Any] = {}
        if "url" in given:
            try:
                values["url"] = check_url(str(given["url"] or ""))
                if self.options.block_private:
                    check_public(values["url"])
            except TargetError as exc:
                raise WebhookError(str(exc)) from exc
        if "events" in given:
            events = list(dict.fromkeys(str(e) for e in given["events"] or ()))
            unknown = [e for e in events if e not in EVENT_KINDS]
            if unknown or not events:
                raise WebhookError(
                    f"subscribe to one or more of {', '.join(EVENT_KINDS)}"
                    + (f" (not {', '.join(unknown)})" if unknown else "")
                )
            values["events"] = events
        if "description" in given:
            text = (given["description"] or "").strip()
            if len(text) > MAX_DESCRIPTION:
                raise WebhookError(f"a description is at most {MAX_DESCRIPTION} characters")
            values["description"] = text or None
        return values

    # -- events -----------------------------------------------------------------------

    def publish(self, kind: str, data: Mapping[str, Any], event_id: str | None = None) -> int:
        """Queue ``kind`` for every active subscription to it; returns how many
        deliveries were queued. ``event_id``: the event's own id when the same event may
        be published twice (each subscription gets it once)."""
        queued = self.store.queue(kind, event_id or uuid.uuid4().hex, data)
        if queued and self.on_queued is not None:
            self.on_queued()
        return len(queued)

    def ping(self, sub_id: int) -> dict[str, Any]:
        """Queue a ``ping`` to one subscription; returns its delivery."""
        if not self.subscription(sub_id)["active"]:
            raise SubscriptionPaused(f"webhook subscription {sub_id} is paused")
        data = {"subscription_id": sub_id, "message": "Vitrine says hello."}
        (delivery_id,) = self.store.queue(PING, uuid.uuid4().hex, data, sub_ids=[sub_id])
        if self.on_queued is not None:
            self.on_queued()
        return self.delivery(delivery_id)

    def delivery(self, delivery_id: int) -> dict[str, Any]:
        found = self.store.delivery(delivery_id)
        if found is None:
            raise WebhookNotFound(f"there is no webhook delivery {delivery_id}")
        return found

    def deliveries(
        self,
        sub_id: int | None,
        state: str | None = None,
        limit: int = 50,
        before: int | None = None,
    ) -> list[dict[str, Any]]:
        """The delivery log, newest first (of one subscription, when named)."""
        if sub_id is not None:
            self.subscription(sub_id)
        return self.store.deliveries(sub_id, state, limit, before)

    def redeliver(self, delivery_id: int) -> dict[str, Any]:
        """Send a delivery again now (delivered, failed or waiting), with fresh attempts."""
        delivery = self.delivery(delivery_id)
        if not self.subscription(delivery["subscription_id"])["active"]:
            raise SubscriptionPaused(
                f"webhook subscription {delivery['subscription_id']} is paused"
            )
        self.store.requeue(delivery_id)
        if self.on_queued is not None:
            self.on_queued()
        return self.delivery(delivery_id)

    # -- sending ----------------------------------------------------------------------

    def step(self) -> float | None:
        """One round of the delivery loop: at once again after a full batch."""
        if time.monotonic() - self._last_purge >= PURGE_EVERY_S:
            self._last_purge = time.monotonic()
            self.store.purge(utcnow() - timedelta(days=self.options.retention_days))
        return 0 if self.deliver_due() >= self.options.batch else None

    def deliver_due(self, now: datetime | None = None) -> int:
        """Attempt the due deliveries (a batch); returns how many were attempted."""
        now = now or utcnow()
        lease = now + timedelta(seconds=self.options.timeout_s + 60)
        claimed = [r for r in self.store.due(now, self.options.batch) if self.store.claim(r, lease)]
        if not claimed:
            return 0
        targets = self.store.secrets(sorted({r["subscription_id"] for r in claimed}))
        self.client  # noqa: B018 - made once, before the senders share it
        workers = max(1, min(self.options.concurrency, len(claimed)))
        with ThreadPoolExecutor(workers, thread_name_prefix="webhook-send") as pool:
            list(pool.map(lambda r: self._attempt(r, targets.get(r["subscription_id"])), claimed))
        return len(claimed)

    def _attempt(self, delivery: Mapping[str, Any], target: tuple[str, str, bool] | None) -> None:
        if target is None:  # deleted meanwhile: its deliveries went with it
            return
        url, secret, _active = target
        status, error = self._post(url, secret, delivery)
        attempts = int(delivery["attempts"]) + 1
        now = utcnow()
        values: dict[str, Any] = {"attempts": attempts, "last_status": status, "last_error": error}
        if error is None:
            values.update(state=DELIVERED, delivered_at=now, next_attempt_at=None)
        elif attempts >= self.options.max_attempts:
            values.update(state=FAILED, next_attempt_at=None)
            log.warning(
                "webhook delivery %s to subscription %s failed for good after %d attempts",
                delivery["id"], delivery["subscription_id"], attempts,
            )  # fmt: skip
        else:
            wait = self.options.retry_delay(attempts)
            values.update(state=PENDING, next_attempt_at=now + timedelta(seconds=wait))
        self.store.record(delivery["id"], values)

    def _post(
        self, url: str, secret: str, delivery: Mapping[str, Any]
    ) -> tuple[int | None, str | None]:
        """(status, error) of one attempt; error None: delivered."""
        body = body_of(delivery)
        headers = {
            "Content-Type": "application/json",
            "User-Agent": f"Vitrine-Webhooks/{__version__}",
            "Vitrine-Event": str(delivery["event"]),
            "Vitrine-Event-Id": str(delivery["event_id"]),
            "Vitrine-Delivery": str(delivery["id"]),
            HEADER: sign(secret, body),
        }
        try:
            if self.options.block_private:
                check_public(url)
            response = self.client.post(url, content=body, headers=headers)
        except TargetError as exc:
            return None, str(exc)[:MAX_ERROR]
        except (httpx.HTTPError, ValueError) as exc:  # ValueError: a URL httpx cannot send to
            return None, f"{type(exc).__name__}: {exc}"[:MAX_ERROR] or type(exc).__name__
        if 200 <= response.status_code < 300:
            return response.status_code, None
        return response.status_code, f"HTTP {response.status_code} {response.reason_phrase}"[
            :MAX_ERROR
        ]

    @property
    def client(self) -> httpx.Client:
        if self._client is None:
            self._client = httpx.Client(
                timeout=self.options.timeout_s,
                follow_redirects=False,
                transport=self._transport,
            )
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None
