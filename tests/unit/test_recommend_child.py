"""The training child process: its answer, and that it never outlives the service."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from vitrine.catalog.database import make_engine, migrate
from vitrine.catalog.store import CatalogStore
from vitrine.config import Settings, load_settings
from vitrine.recommend.child import ChildRun, ChildStopped
from vitrine.recommend.service import RecommendationService


def _train_forever(settings: Settings) -> str:
    """A training child that never ends: says its pid, then sleeps."""
    (settings.home / "child.pid").write_text(str(os.getpid()))
    time.sleep(600)
    return "never"


def _fail(message: str) -> str:
    raise ValueError(message)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie (exited, not yet reaped) is gone too
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return True


def _wait_gone(pid: int, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not _alive(pid):
            return True
        time.sleep(0.1)
    return False


def test_a_child_gives_its_value_or_raises_its_exception() -> None:
    assert ChildRun(len, "four").result() == 4
    with pytest.raises(ValueError, match="no good"):
        ChildRun(_fail, "no good").result()
    child = ChildRun(time.sleep, 600)
    child.stop()
    with pytest.raises(ChildStopped):
        child.result()


def test_stopping_the_service_terminates_its_training_child(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'v.db'}")
    migrate(engine)
    settings = load_settings(env={}).with_overrides(home=tmp_path, recommend_retrain_minutes=0)
    service = RecommendationService(settings, engine, CatalogStore(engine))
    service.lifecycle._train_in_child = _train_forever
    service.start()  # the first round trains in a child: there are no saved models
    pid_file = tmp_path / "child.pid"
    deadline = time.monotonic() + 60
    while not pid_file.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    pid = int(pid_file.read_text())
    assert _alive(pid)
    stopping = threading.Thread(target=service.stop)
    stopping.start()
    stopping.join(30)
    assert not stopping.is_alive()
    assert _wait_gone(pid, 10), "the training child outlived the service"
    assert service.lifecycle.last_error is None  # a stop is not a training failure
    engine.dispose()


def test_a_child_dies_with_its_parent(tmp_path: Path) -> None:
    """The parent killed outright (no shutdown at all): the child ends too."""
    script = textwrap.dedent(
        """
        import sys, time
        from vitrine.recommend.child import ChildRun
        child = ChildRun(time.sleep, 600)
        print(child.pid, flush=True)
        time.sleep(600)
        """
    )
    parent = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, env=os.environ
    )
    try:
        assert parent.stdout is not None
        pid = int(parent.stdout.readline())
        time.sleep(1.0)  # the child is running its function
        assert _alive(pid)
    finally:
        parent.kill()
        parent.wait()
    assert _wait_gone(pid, 10), "the child outlived its killed parent"
