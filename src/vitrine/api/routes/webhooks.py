"""/v1/webhooks: subscriptions to the shop's events, pings, and the delivery log with
redelivery (admin keys only: a subscription's secret signs what the shop sends)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from pydantic import BaseModel, Field

from vitrine.api.auth import require
from vitrine.api.openapi import UTCDateTime, problems
from vitrine.api.problems import Problem
from vitrine.api.schemas import _not_nullable
from vitrine.webhooks.events import EVENT_KINDS
from vitrine.webhooks.service import (
    SubscriptionPaused,
    WebhookError,
    WebhookNotFound,
    WebhookService,
)
from vitrine.webhooks.store import STATES
from vitrine.webhooks.targets import MAX_URL

router = APIRouter(tags=["webhooks"], dependencies=[Depends(require("admin"))])
WebhookId = Annotated[int, Path(ge=1, le=2**63 - 1, description="The subscription's id.")]
DeliveryId = Annotated[int, Path(ge=1, le=2**63 - 1, description="The delivery's id.")]
EventKind = Literal[EVENT_KINDS]  # type: ignore[valid-type]
Url = Annotated[
    str,
    Field(
        min_length=1,
        max_length=MAX_URL,
        pattern=r"^https?://[^\s/?#@]+([/?#]\S*)?$",
        description="Where the events are posted (http or https).",
    ),
]
Events = Annotated[list[EventKind], Field(min_length=1, max_length=len(EVENT_KINDS))]


class WebhookIn(BaseModel):
    """A new subscription: the events it receives, posted to ``url``."""

    model_config = {"extra": "forbid"}

    url: Url
    events: Events
    description: str | None = Field(default=None, max_length=2000)
    active: bool = Field(default=True, strict=True, description="false: made paused")


class WebhookPatch(BaseModel):
    """What to change (pause: ``{"active": false}``; a null description removes it)."""

    model_config = {"extra": "forbid"}

    url: Url = Field(default=None, json_schema_extra=_not_nullable)  # type: ignore[assignment]
    events: Events = Field(default=None, json_schema_extra=_not_nullable)  # type: ignore[assignment]
    description: str | None = Field(default=None, max_length=2000)
    active: bool = Field(default=None, strict=True, json_schema_extra=_not_nullable)  # type: ignore[assignment]


class DeliveryCounts(BaseModel):
    pending: int
    delivered: int
    failed: int


class WebhookOut(BaseModel):
    id: int
    url: str
    events: list[str]
    active: bool
    description: str | None
    deliveries: DeliveryCounts
    created_at: UTCDateTime
    updated_at: UTCDateTime


class WebhookCreated(WebhookOut):
    secret: str = Field(
        description="Signs every delivery (Vitrine-Signature); shown this once only."
    )


class DeliveryOut(BaseModel):
    """One event for one subscription, and how its sending went."""

    id: int
    subscription_id: int
    event_id: str = Field(description="The same in every subscription's copy of the event.")
    event: str
    payload: dict[str, Any] = Field(description="The body's ``data``.")
    state: Literal["pending", "delivered", "failed"]
    attempts: int
    next_attempt_at: UTCDateTime | None = Field(description="null: no attempt planned")
    last_status: int | None = Field(description="The receiver's last HTTP status.")
    last_error: str | None
    created_at: UTCDateTime
    updated_at: UTCDateTime
    delivered_at: UTCDateTime | None


def webhooks(request: Request) -> WebhookService:
    return request.app.state.runtime.webhooks


Webhooks = Annotated[WebhookService, Depends(webhooks)]


@contextmanager
def webhook_problems() -> Iterator[None]:
    try:
        yield
    except WebhookNotFound as exc:
        raise Problem(404, str(exc), "unknown-webhook") from exc
    except SubscriptionPaused as exc:
        raise Problem(409, str(exc), "webhook-paused") from exc
    except WebhookError as exc:
        raise Problem(422, str(exc), "invalid-webhook") from exc


@router.get("/v1/webhooks", response_model=list[WebhookOut])
def list_webhooks(svc: Webhooks) -> list[dict[str, Any]]:
    """Every subscription, with its deliveries counted by state (never the secrets)."""
    return svc.subscriptions()


@router.post("/v1/webhooks", status_code=201, response_model=WebhookCreated)
def create_webhook(svc: Webhooks, body: WebhookIn) -> dict[str, Any]:
    """A new subscription, with the secret that signs its deliveries: keep it, it is not
    shown again. 422: a URL that is not http(s), or a refused private address."""
    with webhook_problems():
        return svc.subscribe(body.url, body.events, body.description, body.active)


@router.get("/v1/webhooks/{webhook_id}", response_model=WebhookOut)
def get_webhook(svc: Webhooks, webhook_id: WebhookId) -> dict[str, Any]:
    with webhook_problems():
        return svc.subscription(webhook_id)


@router.patch("/v1/webhooks/{webhook_id}", response_model=WebhookOut)
def edit_webhook(svc: Webhooks, webhook_id: WebhookId, body: WebhookPatch) -> dict[str, Any]:
    """Change the fields given; a paused subscription receives no new events, and what
    it had waiting is sent when it is resumed."""
    with webhook_problems():
        return svc.edit(webhook_id, body.model_dump(exclude_unset=True))


@router.delete("/v1/webhooks/{webhook_id}", status_code=204)
def delete_webhook(svc: Webhooks, webhook_id: WebhookId) -> Response:
    """Delete a subscription and its delivery log."""
    with webhook_problems():
        svc.delete(webhook_id)
    return Response(status_code=204)


@router.post(
    "/v1/webhooks/{webhook_id}/ping",
    status_code=202,
    response_model=DeliveryOut,
    responses=problems(409),
)
def ping_webhook(svc: Webhooks, webhook_id: WebhookId) -> dict[str, Any]:
    """Queue a ``ping`` event to this subscription (sent within seconds; its delivery
    shows how it went). 409: the subscription is paused."""
    with webhook_problems():
        return svc.ping(webhook_id)


@router.get("/v1/webhooks/{webhook_id}/deliveries", response_model=list[DeliveryOut])
def list_deliveries(
    svc: Webhooks,
    webhook_id: WebhookId,
    state: Annotated[Literal[STATES] | None, Query()] = None,  # type: ignore[valid-type]
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    before: Annotated[
        int | None, Query(ge=1, le=2**63 - 1, description="deliveries older than this id")
    ] = None,
) -> list[dict[str, Any]]:
    """The subscription's delivery log, newest first."""
    with webhook_problems():
        return svc.deliveries(webhook_id, state, limit, before)


@router.post(
    "/v1/webhooks/deliveries/{delivery_id}/redeliver",
    status_code=202,
    response_model=DeliveryOut,
    responses=problems(409),
)
def redeliver(svc: Webhooks, delivery_id: DeliveryId) -> dict[str, Any]:
    """Send a delivery again now, with a fresh set of attempts (whatever its state).
    409: its subscription is paused."""
    with webhook_problems():
        return svc.redeliver(delivery_id)
