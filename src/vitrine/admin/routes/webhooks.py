"""Webhooks: subscriptions (made with their secret shown once, paused, resumed, pinged,
deleted) and the delivery log with redelivery; every change answers the panel again."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse

from vitrine.admin.security import Viewer, editor, viewer
from vitrine.admin.templating import render
from vitrine.webhooks.events import EVENT_KINDS
from vitrine.webhooks.service import (
    SubscriptionPaused,
    WebhookError,
    WebhookNotFound,
    WebhookService,
)

router = APIRouter(prefix="/admin/webhooks")
Reader = Annotated[Viewer, Depends(viewer)]
Editor = Annotated[Viewer, Depends(editor)]
LOG_SIZE = 50
EVENT_NOTES = {
    "product.labelled": "models labelled products (one event per batch)",
    "product.corrected": "a person corrected a label",
    "import.finished": "a bulk import ended",
    "model.activated": "a classifier version or another CNN went into service",
    "recommendations.retrained": "the recommendation models were trained again",
}


def _service(request: Request) -> WebhookService:
    return request.app.state.admin.vitrine.webhooks


def _log(service: WebhookService, subscriptions: list[dict[str, Any]]) -> dict[str, Any]:
    """The delivery log's rows, and each subscription's URL by id."""
    return {
        "deliveries": service.deliveries(None, limit=LOG_SIZE),
        "targets": {s["id"]: s["url"] for s in subscriptions},
    }


def _context(service: WebhookService, **extra: Any) -> dict[str, Any]:
    subscriptions = service.subscriptions()
    return {
        "subscriptions": subscriptions,
        **_log(service, subscriptions),
        "event_kinds": EVENT_KINDS,
        "event_notes": EVENT_NOTES,
        "message": extra.get("message", ""),
        "error": extra.get("error", ""),
        "secret": extra.get("secret"),
    }


@router.get("", response_class=HTMLResponse)
def webhooks_page(request: Request, _: Reader) -> HTMLResponse:
    return render(request, "webhooks.html", page="webhooks", **_context(_service(request)))


@router.get("/log", response_class=HTMLResponse)
def delivery_log(request: Request, _: Reader) -> HTMLResponse:
    """The delivery log alone (the page polls it)."""
    service = _service(request)
    return render(request, "partials/webhook_log.html", **_log(service, service.subscriptions()))


async def _act(
    request: Request, action: Callable[[WebhookService, Any], dict[str, Any]]
) -> HTMLResponse:
    """Run one change with the posted form; the panel with its message or error."""
    service = _service(request)
    form = await request.form()
    status = 200
    try:
        outcome = action(service, form)
    except WebhookNotFound as exc:
        status, outcome = 404, {"error": str(exc.args[0])}
    except (WebhookError, SubscriptionPaused) as exc:
        status, outcome = 422 if isinstance(exc, WebhookError) else 409, {"error": str(exc)}
    return render(request, "partials/webhooks_panel.html", status, **_context(service, **outcome))


@router.post("", response_class=HTMLResponse)
async def create(request: Request, _: Editor) -> HTMLResponse:
    def run(service: WebhookService, form: Any) -> dict[str, Any]:
        made = service.subscribe(
            str(form.get("url") or ""),
            [str(e) for e in form.getlist("events")],
            str(form.get("description") or ""),
        )
        return {"message": f"Subscribed {made['url']}.", "secret": made["secret"]}

    return await _act(request, run)


@router.post("/{sub_id}/active", response_class=HTMLResponse)
async def pause_or_resume(request: Request, sub_id: int, _: Editor) -> HTMLResponse:
    """``active`` yes: resume (what waited is sent now); no: pause."""

    def run(service: WebhookService, form: Any) -> dict[str, Any]:
        active = form.get("active") == "yes"
        service.edit(sub_id, {"active": active})
        if active:
            return {"message": f"Resumed webhook {sub_id}."}
        return {"message": f"Paused webhook {sub_id}: its events wait until it is resumed."}

    return await _act(request, run)


@router.post("/{sub_id}/delete", response_class=HTMLResponse)
async def delete(request: Request, sub_id: int, _: Editor) -> HTMLResponse:
    def run(service: WebhookService, form: Any) -> dict[str, Any]:
        service.delete(sub_id)
        return {"message": f"Deleted webhook {sub_id} and its deliveries."}

    return await _act(request, run)


@router.post("/{sub_id}/ping", response_class=HTMLResponse)
async def ping(request: Request, sub_id: int, _: Editor) -> HTMLResponse:
    def run(service: WebhookService, form: Any) -> dict[str, Any]:
        delivery = service.ping(sub_id)
        return {"message": f"Ping queued (delivery {delivery['id']}): see the log below."}

    return await _act(request, run)


@router.post("/deliveries/{delivery_id}/redeliver", response_class=HTMLResponse)
async def redeliver(request: Request, delivery_id: int, _: Editor) -> HTMLResponse:
    def run(service: WebhookService, form: Any) -> dict[str, Any]:
        service.redeliver(delivery_id)
        return {"message": f"Delivery {delivery_id} is sent again now."}

    return await _act(request, run)
