"""``vitrine db``: the database."""

from __future__ import annotations

import typer

from vitrine.cli.common import open_vitrine

db_app = typer.Typer(help="The database.", no_args_is_help=True)


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Apply the database migrations (also done on every start)."""
    vitrine = open_vitrine()
    typer.echo(
        f"database at {vitrine.engine.url.render_as_string(hide_password=True)} is up to date"
    )
