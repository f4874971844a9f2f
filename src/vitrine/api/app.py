"""The FastAPI application: health and readiness for now; the /v1 API grows here."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.responses import JSONResponse
from sqlalchemy import text

from vitrine import __version__
from vitrine.config import Settings, load_settings
from vitrine.services.runtime import Vitrine


def create_app(settings: Settings | None = None) -> FastAPI:
    vitrine = Vitrine(settings or load_settings())

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        vitrine.close()

    app = FastAPI(title="Vitrine", version=__version__, lifespan=lifespan)
    app.state.vitrine = vitrine

    @app.get("/healthz", tags=["ops"])
    def healthz() -> dict[str, str]:
        """The process is up."""
        return {"status": "ok", "version": __version__}

    @app.get("/readyz", tags=["ops"])
    def readyz() -> JSONResponse:
        """The database answers."""
        try:
            with vitrine.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
        except Exception as exc:  # any database failure means not ready
            return JSONResponse({"status": "unavailable", "database": str(exc)}, status_code=503)
        return JSONResponse({"status": "ready", "products": vitrine.store.count_products()})

    return app
