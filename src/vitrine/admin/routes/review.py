"""Review: confirm or correct the model labels the model is least sure of, one keystroke
each (see admin/review.py for the queue and admin/static/review.js for the keys)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse

from vitrine.admin.review import MAX_PAGE, PAGE, UnknownFieldError
from vitrine.admin.security import Viewer, editor, viewer
from vitrine.admin.templating import render

router = APIRouter(prefix="/admin/review")
MAX_REVIEWED = 1_000_000


def _count(raw: str, what: str, default: int, high: int) -> int:
    """A whole number from a form or query field (empty: ``default``)."""
    raw = raw.strip()
    if not raw:
        return default
    if not raw.isdigit() or int(raw) > high:
        raise ValueError(f"{what} must be a whole number from 0 to {high}, not {raw!r}")
    return int(raw)


@router.get("", response_class=HTMLResponse)
def review(
    request: Request,
    _: Annotated[Viewer, Depends(viewer)],
    field: str = "",
    size: str = "",
    reviewed: str = "",
) -> HTMLResponse:
    """The queue of one field (``size`` cards; ``reviewed``: this session's count so far)."""
    partial = bool(request.headers.get("hx-request")) and not request.headers.get("hx-boosted")
    template = "partials/review_queue.html" if partial else "review.html"
    try:
        queue = request.app.state.admin.review.page(
            field,
            size=_count(size, "size", PAGE, MAX_PAGE),
            reviewed=_count(reviewed, "reviewed", 0, MAX_REVIEWED),
        )
    except UnknownFieldError as exc:
        return render(request, template, 404, page="review", queue=None, error=str(exc))
    except ValueError as exc:
        return render(request, template, 422, page="review", queue=None, error=str(exc))
    return render(request, template, page="review", queue=queue, error="")


@router.post("/decide", response_class=HTMLResponse)
def decide(
    request: Request,
    who: Annotated[Viewer, Depends(editor)],
    field: Annotated[str, Form()] = "",
    product_id: Annotated[str, Form()] = "",
    action: Annotated[str, Form()] = "correct",
    value: Annotated[str, Form()] = "",
    other: Annotated[str, Form()] = "",
    size: Annotated[str, Form()] = "",
    reviewed: Annotated[str, Form()] = "",
) -> HTMLResponse:
    """A person confirms the model's label or picks / types another value; the queue
    comes back without that card (and with the next one)."""
    template = "partials/review_queue.html"
    try:
        queue = request.app.state.admin.review.decide(
            field,
            product_id,
            action=action,
            value=value or other,
            user=who.user.username,
            size=_count(size, "size", PAGE, MAX_PAGE),
            reviewed=_count(reviewed, "reviewed", 0, MAX_REVIEWED),
        )
    except UnknownFieldError as exc:
        return render(request, template, 404, page="review", queue=None, error=str(exc))
    except ValueError as exc:
        return render(request, template, 422, page="review", queue=None, error=str(exc))
    return render(request, template, queue.status, page="review", queue=queue, error="")
