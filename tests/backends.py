"""Pytest plugin: the storage backends a test can run on, the embedded default and real servers.

``embedded`` is SQLite + local files under the test's home. ``server`` is a fresh
database on a real PostgreSQL 15 and a fresh prefix in a bucket of a real Swift s3api
server, both started once per session by ``tests/servers/servers.sh`` (which installs
them from Debian when missing) and stopped at the end.

When the servers cannot be started, the ``server`` tests fail with the script's
output: a scale-out regression must never hide behind a skip. A developer without
root or apt can opt out with ``VITRINE_TEST_SERVERS=off`` (those tests are then
skipped, saying so); CI never sets it.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from vitrine.config import Settings, load_settings

SCRIPT = Path(__file__).parent / "servers" / "servers.sh"
BUCKET = "vitrine-test"
BACKENDS = ["embedded", "server"]


@dataclass
class Servers:
    pg_url: str  # superuser URL of the 'postgres' database
    s3_endpoint: str
    s3_region: str
    aws_env: dict[str, str]

    def new_database(self) -> str:
        import psycopg
        from sqlalchemy.engine import make_url

        url = make_url(self.pg_url)
        name = f"t_{uuid.uuid4().hex[:12]}"
        dsn = url.set(drivername="postgresql").render_as_string(hide_password=False)
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return url.set(database=name).render_as_string(hide_password=False)


@dataclass
class Backend:
    name: str
    overrides: dict[str, Any] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)

    def settings_overrides(self) -> dict[str, Any]:
        return dict(self.overrides)

    def secrets(self) -> list[str]:
        """What must never appear in a log: the S3 secret key and the database password."""
        from sqlalchemy.engine import make_url

        found = [self.env["AWS_SECRET_ACCESS_KEY"]] if "AWS_SECRET_ACCESS_KEY" in self.env else []
        if "database_url" in self.overrides:
            found.append(make_url(self.overrides["database_url"]).password or "")
        return [s for s in found if s]

    def settings(self, home: Path) -> Settings:
        return load_settings(env={}).with_overrides(home=home, **self.overrides)


def _start_servers() -> tuple[Path, dict[str, str]]:
    state = Path(tempfile.mkdtemp(prefix="vitrine-servers-"))
    state.chmod(0o755)  # PostgreSQL runs as 'postgres' and must reach its data folder
    result = subprocess.run(
        ["bash", str(SCRIPT), "start", str(state)],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=900,
    )
    if result.returncode != 0:
        pytest.fail(
            f"could not start the test servers (PostgreSQL, Swift s3api): exit "
            f"{result.returncode}\n{result.stderr[-4000:]}\n"
            "Set VITRINE_TEST_SERVERS=off to skip the server tests on a machine without "
            "root/apt.",
            pytrace=False,
        )
    values = dict(line.split("=", 1) for line in result.stdout.splitlines() if "=" in line)
    return state, values


@pytest.fixture(scope="session")
def servers() -> Iterator[Servers]:
    if os.environ.get("VITRINE_TEST_SERVERS", "").lower() == "off":
        pytest.skip("VITRINE_TEST_SERVERS=off: PostgreSQL + S3 tests not run")
    state, values = _start_servers()
    aws_env = {
        "AWS_ACCESS_KEY_ID": values["VITRINE_TEST_S3_ACCESS_KEY"],
        "AWS_SECRET_ACCESS_KEY": values["VITRINE_TEST_S3_SECRET_KEY"],
    }
    saved = {k: os.environ.get(k) for k in aws_env}
    os.environ.update(aws_env)  # boto3 reads credentials only from the standard places
    try:
        found = Servers(
            pg_url=values["VITRINE_TEST_PG_URL"],
            s3_endpoint=values["VITRINE_TEST_S3_ENDPOINT"],
            s3_region=values["VITRINE_TEST_S3_REGION"],
            aws_env=aws_env,
        )
        from vitrine.catalog.s3 import S3Options, make_s3_client

        make_s3_client(S3Options(found.s3_endpoint, found.s3_region, True)).create_bucket(
            Bucket=BUCKET
        )
        yield found
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        subprocess.run(
            ["bash", str(SCRIPT), "stop", str(state)], stdin=subprocess.DEVNULL, check=False
        )


def make_backend(name: str, request: pytest.FixtureRequest) -> Backend:
    if name == "embedded":
        return Backend(name)
    found: Servers = request.getfixturevalue("servers")
    database_url = found.new_database()
    blob_url = f"s3://{BUCKET}/{uuid.uuid4().hex[:12]}"
    overrides = {
        "database_url": database_url,
        "blob_url": blob_url,
        "s3_endpoint_url": found.s3_endpoint,
        "s3_region": found.s3_region,
        "s3_path_style": True,
    }
    env = {f"VITRINE_{k.upper()}": str(v) for k, v in overrides.items()} | found.aws_env
    return Backend(name, overrides, env)


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> Backend:
    """Each test using it runs on the embedded default and on PostgreSQL + S3."""
    return make_backend(request.param, request)


@pytest.fixture(scope="module", params=BACKENDS)
def module_backend(request: pytest.FixtureRequest) -> Backend:
    """As ``backend``, shared by the tests of one module."""
    return make_backend(request.param, request)
