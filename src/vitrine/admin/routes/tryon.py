"""Try-on: upload a person's photo, pick an eyewear, headwear or top product, see it on."""

from __future__ import annotations

import base64
from typing import Annotated

from fastapi import APIRouter, Depends, File, Form, Request, UploadFile
from fastapi.responses import HTMLResponse
from starlette.concurrency import run_in_threadpool

from vitrine.admin.security import Viewer, reader_post, viewer
from vitrine.admin.templating import render
from vitrine.catalog.tryon_service import TryOnError
from vitrine.vision.decode import ImageDecodeError

router = APIRouter(prefix="/admin")


@router.get("/tryon", response_class=HTMLResponse)
def tryon_page(request: Request, _: Annotated[Viewer, Depends(viewer)]) -> HTMLResponse:
    tryon = request.app.state.admin.vitrine.tryon
    return render(request, "tryon.html", page="tryon", kinds=tryon.categories.kinds)


@router.post("/tryon", response_class=HTMLResponse)
async def run_tryon(
    request: Request,
    _: Annotated[Viewer, Depends(reader_post)],
    photo: Annotated[UploadFile | None, File()] = None,
    product_id: Annotated[str, Form()] = "",
) -> HTMLResponse:
    vitrine = request.app.state.admin.vitrine

    def failed(message: str, status: int = 422) -> HTMLResponse:
        return render(request, "partials/tryon_result.html", status, error=message)

    if photo is None or not photo.filename:
        return failed("Choose a photo of a person, face visible.")
    if not product_id.strip():
        return failed("Give the id of an eyewear, headwear or top product.")
    limit = vitrine.settings.max_image_bytes
    data = await photo.read(limit + 1)
    if len(data) > limit:
        return failed(f"{photo.filename}: larger than the limit of {limit:,} bytes", 413)
    try:
        jpeg = await run_in_threadpool(
            vitrine.tryon.try_on, data, product_id.strip(), photo.filename
        )
    except ImageDecodeError as exc:
        return failed(str(exc), exc.status)
    except TryOnError as exc:
        return failed(str(exc), exc.status)
    image = "data:image/jpeg;base64," + base64.b64encode(jpeg).decode()
    return render(
        request, "partials/tryon_result.html", error="", image=image, product_id=product_id
    )
