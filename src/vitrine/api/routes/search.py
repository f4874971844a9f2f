"""/v1/analyze, /v1/search/image and /v1/products/{id}/similar."""

from __future__ import annotations

import json
import time
from typing import Annotated

from fastapi import APIRouter, Depends, File, Form, Query, Request, Response, UploadFile
from starlette.concurrency import run_in_threadpool

from vitrine.api.auth import require
from vitrine.api.openapi import UPLOAD_IMAGE_TYPES, UPLOAD_PROBLEMS, form_parts, problems
from vitrine.api.problems import Problem, image_problem
from vitrine.api.routes.products import read_uploads
from vitrine.api.schemas import Analysis, SearchResults
from vitrine.catalog.products import ProductService
from vitrine.index import Hit
from vitrine.index.visual_search import UnknownProductError
from vitrine.vision.decode import ImageDecodeError

router = APIRouter(tags=["search"])
# Photo search and similar products are open to storefront keys too; analysis is not.
STOREFRONT_READ = require("read", storefront=True)


def _results(request: Request, hits: list[Hit], min_score: float, started: float) -> Response:
    """The ``SearchResults`` document, serialised here: the hot path of similar products
    skips a second validation of what was just built."""
    search = request.app.state.runtime.search
    out = []
    for hit in hits:
        if hit.score < min_score:
            continue
        title, attrs = search.describe(hit.product_id)
        out.append(
            {
                "product_id": hit.product_id,
                "score": round(float(hit.score), 5),
                "title": title,
                "attributes": attrs,
            }
        )
    took = round((time.perf_counter() - started) * 1000, 2)
    body = json.dumps({"results": out, "took_ms": took}, separators=(",", ":"))
    return Response(body, media_type="application/json")


@router.post(
    "/v1/analyze",
    response_model=Analysis,
    dependencies=[Depends(require("read"))],
    responses=UPLOAD_PROBLEMS,
    openapi_extra=form_parts(image=UPLOAD_IMAGE_TYPES),
)
async def analyze(
    request: Request,
    image: Annotated[UploadFile, File()],
    title: Annotated[
        str | None,
        Form(max_length=2000, description="The product's title (and description), if known"),
    ] = None,
) -> Analysis:
    """The full analysis of one photo; nothing is stored."""
    uploads = await read_uploads(request, [image])
    products: ProductService = request.app.state.runtime.products
    analysis = (await run_in_threadpool(products.analyze, uploads))[0]
    request.app.state.metrics.images.inc()
    classification = request.app.state.runtime.classification
    described = await run_in_threadpool(classification.describe, analysis, title)
    return Analysis(**analysis.to_json(), **described)


@router.post(
    "/v1/search/image",
    response_model=SearchResults,
    dependencies=[Depends(STOREFRONT_READ)],
    responses={**problems(404), **UPLOAD_PROBLEMS},
    openapi_extra=form_parts(image=UPLOAD_IMAGE_TYPES),
)
async def search_image(
    request: Request,
    image: Annotated[UploadFile | None, File(description="A query photo.")] = None,
    product_id: Annotated[
        str | None, Form(description="Or a product already in the catalog.")
    ] = None,
    k: Annotated[int, Form(ge=1, le=200)] = 10,
    filter: Annotated[list[str] | None, Form(description="field=value; repeatable")] = None,
    min_score: Annotated[float, Form(ge=-1, le=1, allow_inf_nan=False)] = -1.0,
    weights: Annotated[
        str | None,
        Form(description="Photo re-ranking weights, e.g. embedding=2,color=1 (default: config)"),
    ] = None,
) -> Response:
    """Products that look like an uploaded photo, or like a product of the catalog.

    A photo's candidates come from the embedding index and scans of colour layout, colour
    and pattern (exact on a small catalog, inverted-file indexes on a large one), re-ranked
    by all aspects together; a product id reuses its stored embedding.
    """
    started = time.perf_counter()
    vitrine = request.app.state.runtime
    search = vitrine.search
    if (image is None) == (product_id is None):
        raise Problem(422, "send exactly one of image or product_id", "invalid-fields")
    try:
        aspect_weights = search.parse_weights(weights) if weights is not None else None
    except ValueError as exc:
        raise Problem(422, str(exc), "invalid-weights") from exc
    try:
        if product_id is not None:
            vector = search.vectors.vector(product_id)
            if vector is None:
                raise Problem(404, f"product {product_id!r} is not in the index", "unknown-product")
            hits = search.search(vector, k, filter, exclude={product_id})
        else:
            assert image is not None
            upload = (await read_uploads(request, [image]))[0]
            _, hits = await run_in_threadpool(
                vitrine.photo_search, upload.data, upload.filename, k, filter, aspect_weights
            )
            request.app.state.metrics.images.inc()
    except ImageDecodeError as exc:  # a ValueError too: the image's status, not a filter's
        raise image_problem(exc) from exc
    except ValueError as exc:
        raise Problem(422, str(exc), "invalid-filter") from exc
    return _results(request, hits, min_score, started)


@router.get(
    "/v1/products/{product_id}/similar",
    response_model=SearchResults,
    dependencies=[Depends(STOREFRONT_READ)],
)
async def similar(
    request: Request,
    product_id: str,
    k: Annotated[int, Query(ge=1, le=200)] = 10,
    filter: Annotated[list[str] | None, Query(description="field=value; repeatable")] = None,
    min_score: Annotated[float, Query(ge=-1, le=1, allow_inf_nan=False)] = -1.0,
) -> Response:
    """Products that look most like this one."""
    started = time.perf_counter()
    try:
        hits = request.app.state.runtime.search.similar(product_id, k, filter)
    except UnknownProductError as exc:
        raise Problem(
            404, f"product {product_id!r} is not in the index", "unknown-product"
        ) from exc
    except ValueError as exc:
        raise Problem(422, str(exc), "invalid-filter") from exc
    return _results(request, hits, min_score, started)
