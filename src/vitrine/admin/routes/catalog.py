"""Catalog: browse and filter products, a product's page, label corrections, thumbnails."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, Path, Query, Request
from fastapi.responses import HTMLResponse, Response
from starlette.concurrency import run_in_threadpool

from vitrine.admin.security import Viewer, editor, viewer
from vitrine.admin.templating import render
from vitrine.catalog.blobs import BlobNotFoundError
from vitrine.catalog.browse import BrowseFilter, ProductCard
from vitrine.catalog.thumbnails import SIZES, thumbnail

router = APIRouter(prefix="/admin")
PAGE = 48


def not_found(request: Request, message: str) -> HTMLResponse:
    return render(request, "error.html", 404, title="Not found", message=message)


@router.get("/catalog", response_class=HTMLResponse)
def catalog(
    request: Request,
    _: Annotated[Viewer, Depends(viewer)],
    q: str = "",
    attribute: str = "",
    color: str = "",
    label: str = "",
    min_confidence: str = "",
    available: str = "",
    after: str = "",
) -> HTMLResponse:
    browser = request.app.state.admin.browser
    error = ""
    try:
        confidence = float(min_confidence) if min_confidence.strip() else 0.0
    except ValueError:
        confidence, error = 0.0, f"Min. confidence {min_confidence!r} is not a number."
    filters = BrowseFilter(
        text=q,
        attribute=attribute,
        color=color,
        label=label,
        min_confidence=confidence,
        available={"yes": True, "no": False}.get(available),
    )
    cards: list[ProductCard] = []
    try:
        if not error:
            cards = browser.cards(filters, after=after or None, limit=PAGE + 1)
    except ValueError as exc:
        error = str(exc)
    more = len(cards) > PAGE
    cards = cards[:PAGE]
    params = {
        "q": q,
        "attribute": attribute,
        "color": color,
        "label": label,
        "min_confidence": confidence or "",
        "available": available,
    }
    context: dict[str, Any] = {
        "page": "catalog",
        "cards": cards,
        "params": params,
        "next_after": cards[-1].id if more and cards else None,
        "error": error,
    }
    if request.headers.get("hx-request") and request.headers.get("hx-target") == "results":
        return render(request, "partials/catalog_results.html", **context)
    context.update(
        colors=browser.colors(),
        attributes=browser.attribute_values(),
        label_fields=browser.label_fields(),
    )
    return render(request, "catalog.html", **context)


def _labels_context(request: Request, product_id: str) -> dict[str, Any]:
    found = request.app.state.admin.product_pages.labels(product_id)
    labels, choices = found if found is not None else ([], {})
    return {"labels": labels, "label_choices": choices, "product_id": product_id}


@router.get("/catalog/{product_id}", response_class=HTMLResponse)
def product_page(
    request: Request, product_id: str, _: Annotated[Viewer, Depends(viewer)]
) -> HTMLResponse:
    admin = request.app.state.admin
    view = admin.product_pages.view(product_id, recommender=admin.backends.recommendations)
    if view is None:
        return not_found(request, f"There is no product {product_id!r} in the catalog.")
    return render(
        request,
        "product.html",
        page="catalog",
        view=view,
        product=view.product,
        labels=view.labels,
        label_choices=view.label_choices,
        product_id=product_id,
    )


@router.post("/catalog/{product_id}/labels", response_class=HTMLResponse)
def correct_label(
    request: Request,
    product_id: str,
    who: Annotated[Viewer, Depends(editor)],
    field: Annotated[str, Form()],
    value: Annotated[str, Form()],
) -> HTMLResponse:
    """A person sets a label: recorded as feedback the classifier learns from."""
    admin = request.app.state.admin
    message, error = "", ""
    try:
        admin.backends.labels.correct(product_id, field, value, user=who.user.username)
        message = f"Saved: {field.strip()} = {value.strip()}"
    except ValueError as exc:
        error = str(exc)
    return render(
        request,
        "partials/labels.html",
        422 if error else 200,
        message=message,
        error=error,
        **_labels_context(request, product_id),
    )


@router.get("/images/{image_id}")
async def image(
    request: Request,
    image_id: Annotated[int, Path(ge=1, le=2**63 - 1)],
    _: Annotated[Viewer, Depends(viewer)],
    size: Annotated[int, Query()] = 320,
) -> Response:
    """A stored photo's thumbnail (made once, then kept in the blob store)."""
    admin = request.app.state.admin
    found = admin.browser.image_blob(image_id)
    if found is None or size not in SIZES:
        return Response(status_code=404)
    try:
        data = await run_in_threadpool(thumbnail, admin.vitrine.blobs, found[0], size)
    except (BlobNotFoundError, OSError):
        return Response(status_code=404)
    return Response(
        data, media_type="image/jpeg", headers={"Cache-Control": "private, max-age=86400"}
    )
