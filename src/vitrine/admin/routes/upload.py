"""Upload: one product with its photo (analysed on the spot), or a bulk import job."""

from __future__ import annotations

import math
import shutil
import tempfile
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, File, Form, Request, UploadFile
from fastapi.responses import HTMLResponse
from starlette.concurrency import run_in_threadpool

from vitrine.admin.security import Viewer, editor, viewer
from vitrine.admin.templating import render
from vitrine.catalog.csv_source import ColumnMapping
from vitrine.catalog.products import ID_RULE, ProductExistsError, Upload, valid_product_id
from vitrine.catalog.store import ProductRecord
from vitrine.jobs.import_jobs import ImportRequestError, ImportTooLargeError
from vitrine.vision.decode import ImageDecodeError

router = APIRouter(prefix="/admin")


class FormError(ValueError):
    """A field of the upload form that cannot be used."""


def parse_attribute_lines(text: str) -> dict[str, Any]:
    """``field=value`` lines (or ``;``-separated) into a dict."""
    out: dict[str, Any] = {}
    for number, line in enumerate(text.replace(";", "\n").splitlines(), 1):
        if not line.strip():
            continue
        key, sep, value = line.partition("=")
        if not sep or not key.strip():
            raise FormError(f"attributes, line {number}: expected field=value, got {line!r}")
        out[key.strip()] = value.strip()
    return out


def _optional(text: str) -> str | None:
    return text.strip() or None


@router.get("/upload", response_class=HTMLResponse)
def upload_page(request: Request, _: Annotated[Viewer, Depends(viewer)]) -> HTMLResponse:
    jobs = request.app.state.imports.list(10)
    return render(request, "upload.html", page="upload", jobs=jobs)


@router.post("/upload/product", response_class=HTMLResponse)
async def upload_product(
    request: Request,
    _: Annotated[Viewer, Depends(editor)],
    product_id: Annotated[str, Form()],
    image: Annotated[UploadFile, File()],
    title: Annotated[str, Form()] = "",
    price: Annotated[str, Form()] = "",
    attributes: Annotated[str, Form()] = "",
) -> HTMLResponse:
    def failed(message: str, status: int = 422) -> HTMLResponse:
        return render(request, "partials/upload_result.html", status, error=message)

    pid = valid_product_id(product_id)
    if pid is None:
        return failed(f"Product id: {ID_RULE.removeprefix('a product id is ')}.")
    try:
        value = float(price) if price.strip() else None
        if value is not None and not 0 <= value < math.inf:  # also NaN
            raise FormError("Price must be a finite number, not negative.")
        record = ProductRecord(
            id=pid,
            title=_optional(title),
            price=value,
            attributes=parse_attribute_lines(attributes),
        )
    except FormError as exc:
        return failed(str(exc))
    except ValueError:
        return failed(f"Price {price!r} is not a number.")
    limit = request.app.state.runtime.settings.max_image_bytes
    data = await image.read(limit + 1)
    if not data:
        return failed("Choose a photo of the product.")
    if len(data) > limit:
        return failed(f"{image.filename}: larger than the limit of {limit:,} bytes", 413)
    try:
        saved, analyses = await run_in_threadpool(
            request.app.state.runtime.products.save,
            record,
            [Upload(data, image.filename or "photo")],
            replace=False,
        )
    except ProductExistsError:
        return failed(f"Product {pid!r} already exists.", 409)
    except ImageDecodeError as exc:  # the API's status for the same file (415, 413, 422)
        return failed(str(exc), exc.status)
    request.app.state.metrics.images.inc()
    return render(
        request,
        "partials/upload_result.html",
        product=saved,
        labels=request.app.state.admin.product_pages.labels_of(saved),
        analysis=analyses[0].to_json(),
        image_id=saved["images"][0]["id"] if saved["images"] else None,
        error="",
    )


@router.post("/upload/bulk", response_class=HTMLResponse)
async def upload_bulk(
    request: Request,
    _: Annotated[Viewer, Depends(editor)],
    csv: Annotated[UploadFile, File()],
    images: Annotated[UploadFile | None, File()] = None,
    id_column: Annotated[str, Form()] = "id",
    image_path: Annotated[str, Form()] = "",
    image_column: Annotated[str, Form()] = "",
    title_column: Annotated[str, Form()] = "",
    price_column: Annotated[str, Form()] = "",
    encoding: Annotated[str, Form()] = "",
) -> HTMLResponse:
    jobs = request.app.state.imports
    mapping = ColumnMapping(
        id_column=id_column.strip() or "id",
        image_path=_optional(image_path),
        image_column=_optional(image_column),
        title_column=_optional(title_column),
        price_column=_optional(price_column),
        encoding=_optional(encoding),
    )
    csv_data = await csv.read()
    if not csv_data:
        return render(request, "partials/job.html", 422, job=None, error="Choose a CSV file.")
    try:
        with tempfile.TemporaryDirectory() as tmp:
            zip_file: Path | None = None
            if images is not None and images.filename:
                zip_file = Path(tmp) / "images.zip"
                with zip_file.open("wb") as out:
                    await run_in_threadpool(shutil.copyfileobj, images.file, out)
            job_id = await run_in_threadpool(jobs.create_from_upload, csv_data, zip_file, mapping)
    except ImportTooLargeError as exc:
        return render(request, "partials/job.html", 413, job=None, error=str(exc))
    except (ImportRequestError, ValueError) as exc:
        return render(request, "partials/job.html", 422, job=None, error=str(exc))
    return render(request, "partials/job.html", job=jobs.get(job_id), error="")


@router.get("/upload/jobs/{job_id}", response_class=HTMLResponse)
def job_status(
    request: Request, job_id: str, _: Annotated[Viewer, Depends(viewer)]
) -> HTMLResponse:
    job = request.app.state.imports.get(job_id)
    if job is None:
        return render(request, "partials/job.html", 404, job=None, error=f"No import job {job_id}.")
    return render(request, "partials/job.html", job=job, error="")
