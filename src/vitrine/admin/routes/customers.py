"""Customers: find a customer by id or among the most recently active, and see one
customer's history and the recommendations each strategy would give them now."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse

from vitrine.admin.security import Viewer, viewer
from vitrine.admin.templating import render

router = APIRouter(prefix="/admin/customers")


@router.get("", response_class=HTMLResponse)
def customers(
    request: Request, _: Annotated[Viewer, Depends(viewer)], q: str = "", cursor: str = ""
) -> HTMLResponse:
    partial = bool(request.headers.get("hx-request")) and not request.headers.get("hx-boosted")
    template = "partials/customer_results.html" if partial else "customers.html"
    try:
        listing = request.app.state.admin.customers.listing(q, cursor)
    except ValueError as exc:
        return render(request, template, 422, page="customers", q=q, listing=None, error=str(exc))
    return render(request, template, page="customers", q=q, listing=listing, error="")


@router.get("/{user_id:path}", response_class=HTMLResponse)
def customer(
    request: Request,
    user_id: str,
    _: Annotated[Viewer, Depends(viewer)],
    strategy: str = "",
    before: str = "",
) -> HTMLResponse:
    admin = request.app.state.admin
    try:
        view = admin.customers.view(
            user_id, strategy=strategy, before=before, recommender=admin.backends.recommendations
        )
    except ValueError as exc:
        return render(request, "error.html", 422, title="Cannot show this", message=str(exc))
    if view is None:
        message = f"No event has the customer id {user_id!r}."
        return render(
            request, "customers.html", 404, page="customers", q="", listing=None, error=message
        )
    return render(request, "customer.html", page="customers", view=view, user_id=user_id)
