"""Monitoring: traffic, latency per endpoint, errors, imports, index recall, CPU and memory."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, JSONResponse
from starlette.concurrency import run_in_threadpool

from vitrine.admin.security import Viewer, reader_post, viewer
from vitrine.admin.templating import render

router = APIRouter(prefix="/admin/monitoring")


def _panel(request: Request) -> dict[str, Any]:
    admin = request.app.state.admin
    monitor = admin.monitor
    search = admin.vitrine.opened().get("search")
    return {
        "endpoints": monitor.endpoints(),
        "latest": monitor.latest(),
        "recall": monitor.recall,
        "recall_minutes": admin.vitrine.settings.admin_recall_check_minutes,
        "inference": monitor.inference(),
        "index": {
            "size": len(search) if search is not None else None,
            "kind": search.vectors.kind if search is not None else None,
            "tombstones": search.vectors.tombstones if search is not None else None,
            "model": search.model_version if search is not None else None,
        },
        "jobs": request.app.state.imports.list(5),
    }


@router.get("", response_class=HTMLResponse)
def monitoring(request: Request, _: Annotated[Viewer, Depends(viewer)]) -> HTMLResponse:
    return render(request, "monitoring.html", page="monitoring", **_panel(request))


@router.get("/panel", response_class=HTMLResponse)
def panel(request: Request, _: Annotated[Viewer, Depends(viewer)]) -> HTMLResponse:
    return render(request, "partials/monitoring_panel.html", **_panel(request))


@router.get("/series.json")
def series(request: Request, _: Annotated[Viewer, Depends(viewer)]) -> JSONResponse:
    return JSONResponse(request.app.state.admin.monitor.series())


@router.post("/recall", response_class=HTMLResponse)
async def recall_now(request: Request, _: Annotated[Viewer, Depends(reader_post)]) -> HTMLResponse:
    await run_in_threadpool(request.app.state.admin.monitor.run_recall_check)
    return render(request, "partials/monitoring_panel.html", **_panel(request))
