"""Health, readiness and Prometheus metrics."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from vitrine import __version__
from vitrine.catalog.database import ping

router = APIRouter(tags=["ops"])


@router.get("/healthz")
def healthz() -> dict[str, str]:
    """The process is up."""
    return {"status": "ok", "version": __version__}


READINESS = {
    "type": "object",
    "required": ["status"],
    "properties": {
        "status": {"type": "string", "enum": ["ready", "unavailable"]},
        "indexed": {"type": "integer", "description": "Products in the visual index."},
        "model": {"type": "string", "description": "The embedding model's version."},
        "database": {"type": "string", "description": "Why the database is unavailable."},
    },
}


@router.get(
    "/readyz",
    responses={
        200: {"description": "Ready", "content": {"application/json": {"schema": READINESS}}},
        503: {"description": "Not ready", "content": {"application/json": {"schema": READINESS}}},
    },
)
def readyz(request: Request) -> JSONResponse:
    """The database answers and the index is loaded."""
    vitrine = request.app.state.runtime
    try:
        ping(vitrine.engine)
    except Exception as exc:  # any database failure means not ready
        return JSONResponse(
            {"status": "unavailable", "database": type(exc).__name__}, status_code=503
        )
    return JSONResponse(
        {"status": "ready", "indexed": len(vitrine.search), "model": vitrine.embedder.model_version}
    )


@router.get(
    "/metrics",
    response_class=PlainTextResponse,
    responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}},
)
def metrics(request: Request) -> Response:
    """Prometheus metrics."""
    m = request.app.state.metrics
    m.index_size.set(len(request.app.state.runtime.search))
    return Response(generate_latest(m.registry), media_type=CONTENT_TYPE_LATEST)
