"""/v1/tryon: a shopper's photo with a catalog product on (eyewear, headwear, tops)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, File, Form, Request, Response, UploadFile
from starlette.concurrency import run_in_threadpool

from vitrine.api.auth import require
from vitrine.api.openapi import UPLOAD_IMAGE_TYPES, UPLOAD_PROBLEMS, form_parts, problems
from vitrine.api.problems import Problem, image_problem
from vitrine.api.routes.products import read_uploads
from vitrine.catalog.tryon_service import TryOnError
from vitrine.vision.decode import ImageDecodeError

router = APIRouter(tags=["search"], dependencies=[Depends(require("read"))])
JPEG = {"image/jpeg": {"schema": {"type": "string", "format": "binary"}}}


@router.post(
    "/v1/tryon",
    response_class=Response,
    responses={
        200: {"description": "The photo with the product on (JPEG).", "content": JPEG},
        **problems(404),
        **UPLOAD_PROBLEMS,
    },
    openapi_extra=form_parts(photo=UPLOAD_IMAGE_TYPES),
)
async def try_on(
    request: Request,
    photo: Annotated[UploadFile, File(description="A photo of a person, face visible.")],
    product_id: Annotated[str, Form(min_length=1, max_length=128)],
) -> Response:
    """Put an eyewear, headwear or top product on the person of the photo, placed by
    their face (position, size, tilt). 422: no face in the photo, or a product of a
    category that cannot be tried on (the message names those that can)."""
    upload = (await read_uploads(request, [photo]))[0]
    tryon = request.app.state.runtime.tryon
    try:
        jpeg = await run_in_threadpool(
            tryon.try_on, upload.data, product_id, upload.filename or "photo"
        )
    except ImageDecodeError as exc:
        raise image_problem(exc) from exc
    except TryOnError as exc:
        raise Problem(exc.status, str(exc), exc.kind) from exc
    request.app.state.metrics.images.inc()
    return Response(jpeg, media_type="image/jpeg")
