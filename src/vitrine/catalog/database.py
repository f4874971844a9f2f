"""Database engine and schema migrations (SQLite in WAL mode by default, or PostgreSQL)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import make_url

from vitrine.catalog.change_feed import install_triggers
from vitrine.private_fs import private_sqlite_file

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


def _configure_sqlite(dbapi_connection: object, _record: object) -> None:
    cursor = dbapi_connection.cursor()  # type: ignore[attr-defined]
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def make_engine(url: str) -> Engine:
    """An engine for ``url``; SQLite gets WAL, foreign keys and a busy timeout, and its
    file (made before SQLite opens it) is the owner's only: 0600 in a 0700 folder."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            private_sqlite_file(Path(parsed.database))
        engine = create_engine(url, connect_args={"check_same_thread": False})
        event.listen(engine, "connect", _configure_sqlite)
        return engine
    return create_engine(url, pool_pre_ping=True)


def ping(engine: Engine) -> None:
    """Raise unless the database answers a trivial query."""
    with engine.connect() as conn:
        conn.execute(text("SELECT 1"))


def alembic_config(engine: Engine) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("sqlalchemy.url", engine.url.render_as_string(hide_password=False))
    return config


def migrate(engine: Engine) -> None:
    """Bring the schema up to the newest migration."""
    config = alembic_config(engine)
    with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            # Several processes may start at once: one migrates, the others wait for it.
            connection.execute(text("SELECT pg_advisory_xact_lock(7469727269)"))
        config.attributes["connection"] = connection
        command.upgrade(config, "head")
        # A later migration that rebuilds a table (SQLite batch mode) drops its triggers.
        install_triggers(connection)
