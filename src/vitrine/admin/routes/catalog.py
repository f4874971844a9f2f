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
from vitrine.index.visual_search import UnknownProductError

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


def _imagenet_labels(product: dict[str, Any]) -> list[dict[str, Any]]:
    primary = next((i for i in product["images"] if i["is_primary"]), None)
    for feature in (primary or {}).get("features", []):
        if feature["kind"] == "embedding":
            return [
                {**lb, "model_version": feature["version"]}
                for lb in (feature.get("data") or {}).get("labels", [])
            ]
    return []


def _labels_context(request: Request, product_id: str) -> dict[str, Any]:
    admin = request.app.state.admin
    rows = admin.browser.labels(product_id)
    fields = admin.browser.label_fields()
    attributes = admin.browser.attribute_values()
    choices = {**{k: v for k, v in attributes.items()}, **fields}
    return {"labels": rows, "label_choices": choices, "product_id": product_id}


def _similar(admin: Any, product_id: str, k: int = 12) -> list[tuple[ProductCard, float]]:
    try:
        hits = admin.vitrine.search.similar(product_id, k)
    except UnknownProductError:
        return []  # its photo is not indexed (yet)
    ids = [h.product_id for h in hits]
    cards = {c.id: c for c in admin.browser.cards(BrowseFilter(), ids=ids, limit=max(1, len(ids)))}
    return [(cards[h.product_id], h.score) for h in hits if h.product_id in cards]


@router.get("/catalog/{product_id}", response_class=HTMLResponse)
def product_page(
    request: Request, product_id: str, _: Annotated[Viewer, Depends(viewer)]
) -> HTMLResponse:
    admin = request.app.state.admin
    vitrine = admin.vitrine
    product = vitrine.store.get_product(product_id)
    if product is None:
        return not_found(request, f"There is no product {product_id!r} in the catalog.")
    card = admin.browser.card(product_id)
    similar = _similar(admin, product_id) if product["images"] else []
    complementary = None
    backend = admin.backends.recommendations
    if backend is not None:
        complementary = backend.complementary(product_id, k=8)
    return render(
        request,
        "product.html",
        page="catalog",
        product=product,
        card=card,
        imagenet=_imagenet_labels(product),
        similar=similar,
        complementary=complementary,
        **_labels_context(request, product_id),
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
