"""``vitrine serve``: the HTTP service."""

from __future__ import annotations

from typing import Annotated

import typer

from vitrine.config import Settings, load_settings


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
    _announce_setup(settings, host or settings.host, port or settings.port)
    uvicorn.run(
        "vitrine.api.app:create_served_app",
        factory=True,
        workers=processes if processes > 1 else None,
        host=host or settings.host,
        port=port or settings.port,
        log_config=None,
        access_log=False,
    )


def _announce_setup(settings: Settings, host: str, port: int) -> None:
    """With no admin account yet, show the one-time setup URL on the terminal (not in
    the JSON log, which may be shipped elsewhere)."""
    from vitrine.accounts.setup_token import SetupToken
    from vitrine.accounts.users import UserService
    from vitrine.catalog.database import make_engine, migrate
    from vitrine.private_fs import secure_home

    secure_home(settings.home)
    engine = make_engine(settings.resolved_database_url)
    try:
        migrate(engine)
        if UserService(engine).has_admin():
            return
    finally:
        engine.dispose()
    token = SetupToken(settings.home).ensure()
    shown = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
    typer.echo(
        "\nNo admin account yet. Create the first one in your browser (this link works once):\n"
        f"    http://{shown}:{port}/admin/setup?token={token}\n",
        err=True,
    )
