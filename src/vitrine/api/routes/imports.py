"""/v1/imports: bulk import jobs (CSV + zip of photos, or a folder on the server)."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, File, Form, Query, Request, UploadFile
from starlette.concurrency import run_in_threadpool

from vitrine.api.auth import require
from vitrine.api.openapi import form_parts
from vitrine.api.problems import Problem
from vitrine.api.schemas import ImportJobOut
from vitrine.catalog.csv_source import ColumnMapping
from vitrine.jobs.import_jobs import ImportJobs, ImportRequestError, ImportTooLargeError

router = APIRouter(prefix="/v1/imports", tags=["imports"])


def job_out(job: dict[str, Any]) -> ImportJobOut:
    return ImportJobOut(
        id=job["id"],
        status=job["status"],
        total=job["total"],
        processed=job["processed"],
        imported=job["imported"],
        skipped=job["skipped"],
        rejected=len(job["rejects"] or []),
        rejects=job["rejects"] or [],
        error=job["error"],
        created_at=job["created_at"],
        started_at=job["started_at"],
        finished_at=job["finished_at"],
    )


@router.post(
    "",
    status_code=202,
    response_model=ImportJobOut,
    openapi_extra=form_parts(csv="text/csv", images="application/zip"),
    dependencies=[Depends(require("write"))],
)
async def create_import(
    request: Request,
    csv: Annotated[UploadFile | None, File(description="Products CSV.")] = None,
    images: Annotated[UploadFile | None, File(description="Zip of the photos.")] = None,
    csv_path: Annotated[str | None, Form(description="Or: a CSV under the import root.")] = None,
    images_dir: Annotated[str | None, Form(description="...and its photo folder.")] = None,
    id_column: Annotated[str, Form()] = "id",
    image_path: Annotated[str | None, Form(description="e.g. {id}.jpg")] = None,
    image_column: Annotated[str | None, Form()] = None,
    title_column: Annotated[str | None, Form()] = None,
    price_column: Annotated[str | None, Form()] = None,
    encoding: Annotated[
        str | None,
        Form(
            max_length=64,
            description="The CSV's encoding when it is not UTF-8 or UTF-16 with a BOM, "
            "e.g. cp1252.",
        ),
    ] = None,
) -> ImportJobOut:
    """Queue an import; poll GET /v1/imports/{id} for progress and rejects."""
    jobs: ImportJobs = request.app.state.imports
    mapping = ColumnMapping(
        id_column=id_column,
        image_path=image_path,
        image_column=image_column,
        title_column=title_column,
        price_column=price_column,
        encoding=encoding or None,
    )
    try:
        if csv is not None:
            csv_data = await csv.read()
            zip_file: Path | None = None
            with tempfile.TemporaryDirectory() as tmp:
                if images is not None:
                    zip_file = Path(tmp) / "images.zip"
                    with zip_file.open("wb") as out:
                        await run_in_threadpool(shutil.copyfileobj, images.file, out)
                job_id = await run_in_threadpool(
                    jobs.create_from_upload, csv_data, zip_file, mapping
                )
        elif csv_path is not None:
            job_id = jobs.create_from_path(csv_path, images_dir or ".", mapping)
        else:
            raise Problem(422, "send a csv file (and an images zip), or csv_path", "invalid-fields")
    except ImportTooLargeError as exc:
        raise Problem(413, str(exc), "import-too-large") from exc
    except ImportRequestError as exc:
        raise Problem(422, str(exc), "invalid-import") from exc
    job = jobs.get(job_id)
    assert job is not None
    return job_out(job)


@router.get("/{job_id}", response_model=ImportJobOut, dependencies=[Depends(require("read"))])
def get_import(job_id: str, request: Request) -> ImportJobOut:
    job = request.app.state.imports.get(job_id)
    if job is None:
        raise Problem(404, f"import job {job_id!r} does not exist", "unknown-import")
    return job_out(job)


@router.get("", response_model=list[ImportJobOut], dependencies=[Depends(require("read"))])
def list_imports(
    request: Request, limit: Annotated[int, Query(ge=1, le=500)] = 50
) -> list[ImportJobOut]:
    return [job_out(j) for j in request.app.state.imports.list(limit)]
