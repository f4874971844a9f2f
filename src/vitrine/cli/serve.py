"""``vitrine serve``: the HTTP service."""

from __future__ import annotations

from typing import Annotated

import typer

from vitrine.config import load_settings


def serve(
    host: Annotated[str | None, typer.Option(help="Address to listen on.")] = None,
    port: Annotated[int | None, typer.Option(help="Port.")] = None,
    workers: Annotated[
        int | None,
        typer.Option(help="API processes (default VITRINE_WORKERS, 1); one leads background jobs."),
    ] = None,
) -> None:
    """Start the HTTP service."""
    import uvicorn

    from vitrine.api.logs import configure_logging

    settings = load_settings()
    configure_logging(settings.log_level)
    processes = workers or settings.workers
    if processes < 1:
        raise typer.BadParameter("--workers must be at least 1")
    uvicorn.run(
        "vitrine.api.app:create_served_app",
        factory=True,
        workers=processes if processes > 1 else None,
        host=host or settings.host,
        port=port or settings.port,
        log_config=None,
        access_log=False,
    )
