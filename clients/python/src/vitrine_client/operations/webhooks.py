"""Webhooks: subscriptions to the service's events, and their delivery logs (admin)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from vitrine_client.calls import NO_CONTENT, UNSET, Call, Unset, present
from vitrine_client.models import Delivery, Webhook, WebhookCreated
from vitrine_client.operation import operation


class WebhookOperations:
    """/v1/webhooks and /v1/webhooks/deliveries (admin keys)."""

    @operation("GET", "/v1/webhooks")
    def list_webhooks() -> Call[list[Webhook]]:
        """Every subscription with its delivery counts."""
        return Call(list[Webhook])

    @operation("POST", "/v1/webhooks")
    def create_webhook(
        url: str,
        events: Sequence[str],
        *,
        description: str | None = None,
        active: bool | None = None,
    ) -> Call[WebhookCreated]:
        """A new subscription; its signing ``secret`` is answered this once."""
        body = present(url=url, events=list(events), description=description, active=active)
        return Call(WebhookCreated, json=body)

    @operation("GET", "/v1/webhooks/{webhook_id}")
    def get_webhook(webhook_id: int) -> Call[Webhook]:
        """One subscription."""
        return Call(Webhook, path={"webhook_id": webhook_id})

    @operation("PATCH", "/v1/webhooks/{webhook_id}")
    def edit_webhook(
        webhook_id: int,
        *,
        url: str | Unset = UNSET,
        events: Sequence[str] | Unset = UNSET,
        description: str | Unset | None = UNSET,
        active: bool | Unset = UNSET,
    ) -> Call[Webhook]:
        """Change what is given (``active=False`` pauses)."""
        body = {"url": url, "events": events if isinstance(events, Unset) else list(events),
                "description": description, "active": active}  # fmt: skip
        return Call(Webhook, path={"webhook_id": webhook_id}, json=body)

    @operation("DELETE", "/v1/webhooks/{webhook_id}")
    def delete_webhook(webhook_id: int) -> Call[None]:
        """Delete a subscription and its delivery log."""
        return Call(NO_CONTENT, path={"webhook_id": webhook_id})

    @operation("POST", "/v1/webhooks/{webhook_id}/ping")
    def ping_webhook(webhook_id: int) -> Call[Delivery]:
        """Queue a ``ping`` to the subscription; raises ``Conflict`` when it is paused."""
        return Call(Delivery, path={"webhook_id": webhook_id})

    @operation("GET", "/v1/webhooks/{webhook_id}/deliveries")
    def list_deliveries(
        webhook_id: int,
        *,
        state: Literal["pending", "delivered", "failed"] | None = None,
        limit: int | None = None,
        before: int | None = None,
    ) -> Call[list[Delivery]]:
        """The subscription's delivery log, newest first."""
        query = {"state": state, "limit": limit, "before": before}
        return Call(list[Delivery], path={"webhook_id": webhook_id}, query=query)

    @operation("POST", "/v1/webhooks/deliveries/{delivery_id}/redeliver")
    def redeliver(delivery_id: int) -> Call[Delivery]:
        """Send a delivery again now, with a fresh set of attempts."""
        return Call(Delivery, path={"delivery_id": delivery_id})
