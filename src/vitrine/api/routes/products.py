"""/v1/products: create, replace, change, read, list and delete products."""

from __future__ import annotations

import base64
import json
import math
from typing import Annotated, Any

from fastapi import APIRouter, Depends, File, Form, Path, Query, Request, Response, UploadFile

from vitrine.api.auth import require
from vitrine.api.openapi import UPLOAD_IMAGE_TYPES, UPLOAD_PROBLEMS, form_parts, problems
from vitrine.api.problems import Problem
from vitrine.api.schemas import ProductCreated, ProductOut, ProductPage, ProductPatch
from vitrine.api.views import product_out
from vitrine.catalog.blobs import BlobNotFoundError
from vitrine.catalog.products import (
    ID_RULE,
    InvalidChangeError,
    ProductExistsError,
    ProductNotFoundError,
    ProductService,
    Upload,
    valid_product_id,
)
from vitrine.catalog.store import ProductRecord

router = APIRouter(prefix="/v1/products", tags=["products"])
IMAGE_KEYS_HELP = (
    "Photos already in the blob store (e.g. S3 keys under the store's prefix), used in place "
    "of uploads; repeatable. They come after any uploaded images."
)


IMAGE_MEDIA_TYPES = {
    "JPEG": "image/jpeg",
    "MPO": "image/jpeg",
    "PNG": "image/png",
    "WEBP": "image/webp",
    "GIF": "image/gif",
    "BMP": "image/bmp",
    "TIFF": "image/tiff",
}
IMAGE_CONTENT = {
    media: {"schema": {"type": "string", "format": "binary"}}
    for media in [*dict.fromkeys(IMAGE_MEDIA_TYPES.values()), "application/octet-stream"]
}


def service(request: Request) -> ProductService:
    return request.app.state.runtime.products


async def read_uploads(request: Request, images: list[UploadFile]) -> list[Upload]:
    limit = request.app.state.runtime.settings.max_image_bytes
    uploads = []
    for image in images:
        data = await image.read(limit + 1)
        if len(data) > limit:
            raise Problem(
                413,
                f"{image.filename}: file is larger than the limit of {limit} bytes",
                "file_too_large",
            )
        uploads.append(Upload(data, image.filename or "<upload>"))
    return uploads


def parse_attributes(text: str | None) -> dict[str, Any]:
    if not text:
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise Problem(
            422, f"attributes must be a JSON object: {exc.msg}", "invalid-fields"
        ) from exc
    if not isinstance(value, dict):
        raise Problem(422, "attributes must be a JSON object", "invalid-fields")
    return value


def check_id(product_id: str) -> str:
    valid = valid_product_id(product_id)
    if valid is None:
        raise Problem(422, ID_RULE, "invalid-fields")
    return valid


async def _save(
    request: Request,
    products: ProductService,
    product_id: str,
    images: list[UploadFile] | None,
    image_keys: list[str] | None,
    title: str | None,
    description: str | None,
    price: float | None,
    available: bool,
    attributes: str | None,
    replace: bool,
) -> ProductCreated:
    if not images and not image_keys:
        raise Problem(
            422, "at least one image (or an image_keys entry) is required", "invalid-fields"
        )
    if price is not None and not 0 <= price < math.inf:  # also NaN
        raise Problem(422, "price must be a finite number >= 0", "invalid-fields")
    record = ProductRecord(
        id=check_id(product_id),
        title=title,
        description=description,
        price=price,
        available=available,
        attributes=parse_attributes(attributes),
    )
    from starlette.concurrency import run_in_threadpool

    uploads = await read_uploads(request, images or [])
    if image_keys:
        uploads += await run_in_threadpool(products.stored_uploads, image_keys)

    try:
        saved, analyses = await run_in_threadpool(products.save, record, uploads, replace=replace)
    except ProductExistsError as exc:
        raise Problem(
            409, f"product {record.id!r} already exists; use PUT to replace it", "product-exists"
        ) from exc
    request.app.state.metrics.images.inc(len(uploads))
    return ProductCreated(product=product_out(saved), analysis=[a.to_json() for a in analyses])


@router.post(
    "",
    status_code=201,
    response_model=ProductCreated,
    responses={**problems(409), **UPLOAD_PROBLEMS},
    openapi_extra=form_parts(images=UPLOAD_IMAGE_TYPES),
    dependencies=[Depends(require("write"))],
)
async def create_product(
    request: Request,
    products: Annotated[ProductService, Depends(service)],
    id: Annotated[str, Form(description="The shop's product id / SKU.")],
    images: Annotated[
        list[UploadFile] | None, File(description="One or more photos; the first is primary.")
    ] = None,
    image_keys: Annotated[list[str] | None, Form(description=IMAGE_KEYS_HELP)] = None,
    title: Annotated[str | None, Form(max_length=512)] = None,
    description: Annotated[str | None, Form()] = None,
    price: Annotated[float | None, Form(ge=0, allow_inf_nan=False)] = None,
    available: Annotated[bool, Form()] = True,
    attributes: Annotated[str | None, Form(description="JSON object of free fields.")] = None,
) -> ProductCreated:
    """Add a product with its photos; searchable as soon as this returns."""
    return await _save(
        request,
        products,
        id,
        images,
        image_keys,
        title,
        description,
        price,
        available,
        attributes,
        replace=False,
    )


@router.put(
    "/{product_id}",
    response_model=ProductCreated,
    responses=UPLOAD_PROBLEMS,
    openapi_extra=form_parts(images=UPLOAD_IMAGE_TYPES),
    dependencies=[Depends(require("write"))],
)
async def replace_product(
    request: Request,
    product_id: str,
    products: Annotated[ProductService, Depends(service)],
    images: Annotated[list[UploadFile] | None, File()] = None,
    image_keys: Annotated[list[str] | None, Form(description=IMAGE_KEYS_HELP)] = None,
    title: Annotated[str | None, Form(max_length=512)] = None,
    description: Annotated[str | None, Form()] = None,
    price: Annotated[float | None, Form(ge=0, allow_inf_nan=False)] = None,
    available: Annotated[bool, Form()] = True,
    attributes: Annotated[str | None, Form()] = None,
) -> ProductCreated:
    """Create or replace a product and all of its photos."""
    return await _save(
        request,
        products,
        product_id,
        images,
        image_keys,
        title,
        description,
        price,
        available,
        attributes,
        replace=True,
    )


@router.patch("/{product_id}", response_model=ProductOut, dependencies=[Depends(require("write"))])
def patch_product(
    product_id: str, patch: ProductPatch, products: Annotated[ProductService, Depends(service)]
) -> ProductOut:
    """Change some fields; attributes are merged."""
    changes = patch.model_dump(exclude_unset=True)
    try:
        return product_out(products.update(product_id, changes))
    except ProductNotFoundError as exc:
        raise Problem(404, f"product {product_id!r} does not exist", "unknown-product") from exc
    except InvalidChangeError as exc:
        raise Problem(422, str(exc), "invalid-fields") from exc


@router.get("/{product_id}", response_model=ProductOut, dependencies=[Depends(require("read"))])
def get_product(product_id: str, request: Request) -> ProductOut:
    product = request.app.state.runtime.store.get_product(product_id)
    if product is None:
        raise Problem(404, f"product {product_id!r} does not exist", "unknown-product")
    return product_out(product)


@router.get(
    "/{product_id}/images/{image_id}",
    response_class=Response,
    responses={200: {"description": "The photo, as stored.", "content": IMAGE_CONTENT}},
    dependencies=[Depends(require("read"))],
)
def get_image(
    product_id: str,
    image_id: Annotated[int, Path(ge=1, le=2**63 - 1, description="The image's id.")],
    request: Request,
) -> Response:
    vitrine = request.app.state.runtime
    product = vitrine.store.get_product(product_id)
    image = next((i for i in (product or {}).get("images", []) if i["id"] == image_id), None)
    if image is None:
        raise Problem(404, f"product {product_id!r} has no image {image_id}", "unknown-image")
    try:
        data = vitrine.blobs.get(image["blob_key"])
    except BlobNotFoundError as exc:
        raise Problem(404, "the image file is missing from the blob store", "missing-blob") from exc
    return Response(
        data,
        media_type=IMAGE_MEDIA_TYPES.get(image["format"], "application/octet-stream"),
        headers={"Cache-Control": "public, max-age=31536000, immutable"},
    )


@router.delete("/{product_id}", status_code=204, dependencies=[Depends(require("write"))])
def delete_product(
    product_id: str, products: Annotated[ProductService, Depends(service)]
) -> Response:
    try:
        products.delete(product_id)
    except ProductNotFoundError as exc:
        raise Problem(404, f"product {product_id!r} does not exist", "unknown-product") from exc
    return Response(status_code=204)


def _encode_cursor(last_id: str) -> str:
    return base64.urlsafe_b64encode(last_id.encode()).decode().rstrip("=")


def _decode_cursor(cursor: str) -> str:
    try:
        return base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (ValueError, UnicodeDecodeError) as exc:
        raise Problem(422, "cursor is not valid", "invalid-fields") from exc


@router.get("", response_model=ProductPage, dependencies=[Depends(require("read"))])
def list_products(
    request: Request,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: str | None = None,
    available: bool | None = None,
    filter: Annotated[list[str] | None, Query(description="field=value; repeatable")] = None,
) -> ProductPage:
    """Products in id order, a page at a time; pass next_cursor back for the next page."""
    attributes: dict[str, str] = {}
    for text in filter or []:
        field, sep, value = text.partition("=")
        if not sep or not field:
            raise Problem(422, f"invalid filter {text!r}: expected field=value", "invalid-fields")
        attributes[field] = value
    after = _decode_cursor(cursor) if cursor else None
    store = request.app.state.runtime.store
    rows = store.list_products(
        after=after, limit=limit + 1, attributes=attributes, available=available
    )
    more = len(rows) > limit
    rows = rows[:limit]
    items = [product_out({**row, "images": []}) for row in rows]
    return ProductPage(items=items, next_cursor=_encode_cursor(rows[-1]["id"]) if more else None)
