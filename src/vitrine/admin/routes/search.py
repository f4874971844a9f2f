"""Visual search: drop, paste or pick a photo (or name a product), see ranked results."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, File, Form, Request, UploadFile
from fastapi.responses import HTMLResponse
from starlette.concurrency import run_in_threadpool

from vitrine.admin.scene_view import preview, scene_boxes
from vitrine.admin.security import Viewer, reader_post, viewer
from vitrine.admin.templating import render
from vitrine.catalog.browse import BrowseFilter
from vitrine.index.scene_search import LocalizerNotTrained
from vitrine.vision.decode import ImageDecodeError

router = APIRouter(prefix="/admin")


@router.get("/search", response_class=HTMLResponse)
def search_page(request: Request, _: Annotated[Viewer, Depends(viewer)]) -> HTMLResponse:
    browser = request.app.state.admin.browser
    return render(request, "search.html", page="search", attributes=browser.attribute_values())


def split_filters(text: str) -> list[str]:
    return [line.strip() for line in text.replace(";", "\n").splitlines() if line.strip()]


@router.post("/search", response_class=HTMLResponse)
async def run_search(
    request: Request,
    _: Annotated[Viewer, Depends(reader_post)],
    image: Annotated[UploadFile | None, File()] = None,
    product_id: Annotated[str, Form()] = "",
    k: Annotated[int, Form(ge=1, le=100)] = 24,
    filters: Annotated[str, Form()] = "",
    min_score: Annotated[float, Form(ge=-1, le=1, allow_inf_nan=False)] = -1.0,
    mode: Annotated[Literal["product", "scene"], Form()] = "product",
) -> HTMLResponse:
    admin = request.app.state.admin
    vitrine = admin.vitrine
    started = time.perf_counter()
    has_image = image is not None and bool(image.filename)

    def failed(message: str, status: int = 422) -> HTMLResponse:
        return render(request, "partials/search_results.html", status, error=message, results=[])

    if has_image == bool(product_id.strip()):
        return failed("Drop or choose a photo, or give a product id (one of the two).")
    if mode == "scene":
        if image is None or not has_image:
            return failed("Every product in a photo: drop or choose a photo.")
        return await _scene(request, image, k, filters, failed)
    try:
        if has_image:
            assert image is not None
            limit = vitrine.settings.max_image_bytes
            data = await image.read(limit + 1)
            if len(data) > limit:
                return failed(f"{image.filename}: larger than the limit of {limit:,} bytes", 413)
            _, hits = await run_in_threadpool(
                vitrine.photo_search, data, image.filename or "photo", k, split_filters(filters)
            )
            request.app.state.metrics.images.inc()
        else:
            pid = product_id.strip()
            vector = vitrine.search.vectors.vector(pid)
            if vector is None:
                return failed(f"Product {pid!r} is not in the visual index.")
            hits = vitrine.search.search(vector, k, split_filters(filters), exclude={pid})
    except ImageDecodeError as exc:  # the API's status for the same file (415, 413, 422)
        return failed(str(exc), exc.status)
    except ValueError as exc:
        return failed(f"Filter: {exc}")
    hits = [h for h in hits if h.score >= min_score]
    cards = {
        c.id: c
        for c in admin.browser.cards(
            BrowseFilter(), ids=[h.product_id for h in hits], limit=max(1, len(hits))
        )
    }
    results = [(cards[h.product_id], h.score) for h in hits if h.product_id in cards]
    return render(
        request,
        "partials/search_results.html",
        results=results,
        took_ms=round((time.perf_counter() - started) * 1000, 1),
        error="",
    )


async def _scene(
    request: Request,
    image: UploadFile,
    k: int,
    filters: str,
    failed: Callable[..., HTMLResponse],
) -> HTMLResponse:
    """Every product found in the photo, drawn as boxes; a box shows its matches."""
    admin = request.app.state.admin
    vitrine = admin.vitrine
    started = time.perf_counter()
    limit = vitrine.settings.max_image_bytes
    data = await image.read(limit + 1)
    if len(data) > limit:
        return failed(f"{image.filename}: larger than the limit of {limit:,} bytes", 413)
    try:
        name, chosen = image.filename or "photo", split_filters(filters)
        objects = await run_in_threadpool(vitrine.scene_search, data, name, min(k, 24), chosen)
    except ImageDecodeError as exc:
        return failed(str(exc), exc.status)
    except LocalizerNotTrained:
        return failed(
            "No localiser is trained yet: train one on the Models & jobs page "
            "(Products in real photos), then search again.",
            409,
        )
    except ValueError as exc:
        return failed(f"Filter: {exc}")
    request.app.state.metrics.images.inc()
    photo, width, height = preview(data)
    return render(
        request,
        "partials/scene_results.html",
        photo=photo,
        boxes=scene_boxes(objects, width, height, admin.browser),
        took_ms=round((time.perf_counter() - started) * 1000, 1),
    )
