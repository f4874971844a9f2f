"""Downloads: the catalog's labels as CSV (the same file as `vitrine export-labels`),
streamed so that a large catalog never sits in memory as one string."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import StreamingResponse

from vitrine.admin.security import Viewer, viewer

router = APIRouter(prefix="/admin")


@router.get("/catalog/labels.csv", response_class=StreamingResponse)
def labels_csv(
    request: Request,
    _: Annotated[Viewer, Depends(viewer)],
    fields: Annotated[str, Query(max_length=2000, description="comma-separated")] = "",
) -> StreamingResponse:
    chosen = [f.strip() for f in fields.split(",") if f.strip()] or None
    chunks = request.app.state.admin.vitrine.classification.labels_csv(chosen)
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M")
    return StreamingResponse(
        chunks,
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="vitrine-labels-{stamp}.csv"'},
    )
