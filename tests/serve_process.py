"""Real `vitrine serve` processes for end-to-end tests: started on free ports, stopped after."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import IO

import httpx

VITRINE = [sys.executable, "-m", "vitrine.cli"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def process_env(home: Path, extra: Mapping[str, str]) -> dict[str, str]:
    """The environment of a vitrine process with its own home (and the test's model cache)."""
    home.mkdir(parents=True, exist_ok=True)
    models = home / "models"
    if not models.exists():
        cache = Path(__file__).resolve().parents[1] / ".cache" / "models"
        models.symlink_to(Path(os.environ.get("VITRINE_TEST_MODEL_DIR", cache)))
    src = str(Path(__file__).resolve().parents[1] / "src")
    path = os.pathsep.join(p for p in (src, os.environ.get("PYTHONPATH", "")) if p)
    return {
        **os.environ,
        "VITRINE_HOME": str(home),
        "VITRINE_API_RATE_LIMIT": "0",
        "PYTHONPATH": path,
        **extra,
    }


def create_key(env: Mapping[str, str], scope: str = "write") -> str:
    return subprocess.run(
        [*VITRINE, "keys", "create", "--name", f"e2e-{time.monotonic_ns()}", "--scope", scope],
        env=dict(env),
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()


@contextmanager
def serving(env: Mapping[str, str], secrets: Sequence[str] = ()) -> Iterator[str]:
    """Run `vitrine serve` until the block ends; yields its base URL once it is ready.

    On exit the process's output is checked: no secret may ever have been logged.
    """
    # Output goes to a file: a pipe nobody reads fills up and blocks the server's logging.
    with tempfile.TemporaryFile(mode="w+") as log:
        port = free_port()
        proc = subprocess.Popen(
            [*VITRINE, "serve", "--port", str(port)],
            env=dict(env),
            stdout=log,
            stderr=subprocess.STDOUT,
            text=True,
        )
        base = f"http://127.0.0.1:{port}"
        try:
            _wait_ready(proc, base, log)
            yield base
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            log.seek(0)
            output = log.read()
            for secret in secrets:
                assert secret not in output, "a secret must never be logged"


def _wait_ready(proc: subprocess.Popen[str], base: str, log: IO[str]) -> None:
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            log.seek(0)
            raise AssertionError(f"server exited: {log.read()[-3000:]}")
        try:
            if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            time.sleep(0.2)
    raise AssertionError("server did not become ready")
