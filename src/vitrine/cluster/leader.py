"""One leader among the API processes that share a catalog runs the background duties.

Several ``vitrine serve`` processes (``--workers`` on one machine, or machines sharing
one PostgreSQL) each answer requests and keep their own index in step, but the duties
that change shared state — running bulk import jobs, filling in missing photo layouts,
retraining classifiers on corrections — must run in exactly one of them, or a job is
imported twice and two retrains fight over the CPU.

Leadership is a lock held for as long as the process lives: a PostgreSQL advisory lock
on a connection of its own, or, on the embedded default, an OS file lock beside the
SQLite database. Either is released by the database or the OS when the process dies,
so a follower that tries again every few seconds takes over the duties.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Protocol

from sqlalchemy import Engine

from vitrine.worker import BackgroundWorker

log = logging.getLogger(__name__)

# pg_try_advisory_lock takes a signed 64-bit key; derive a fixed one from a name.
ADVISORY_KEY = int.from_bytes(hashlib.sha256(b"vitrine-leader").digest()[:8], "big", signed=True)


@dataclass(frozen=True)
class Duty:
    """A background duty that only the leader runs."""

    name: str
    start: Callable[[], None]
    stop: Callable[[], None]


class LeaderLock(Protocol):
    """The lock one process holds while it runs the background duties."""

    def try_acquire(self) -> bool: ...

    def still_held(self) -> bool: ...

    def release(self) -> None: ...


class FileLock:
    """An exclusive ``flock`` on a file: one holder per file across processes (and
    across opens within one process)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file: IO[bytes] | None = None

    def try_acquire(self) -> bool:
        if self._file is not None:
            return True
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = self.path.open("ab")
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            return False
        self._file = handle
        return True

    def still_held(self) -> bool:
        return self._file is not None

    def release(self) -> None:
        if self._file is not None:
            self._file.close()  # closing the file drops the lock
            self._file = None


class AdvisoryLock:
    """A PostgreSQL session advisory lock on a dedicated connection."""

    def __init__(self, engine: Engine) -> None:
        self.url = engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
        self._conn: Any = None

    def try_acquire(self) -> bool:
        if self._conn is not None:
            return True
        import psycopg

        conn = psycopg.connect(self.url, autocommit=True)
        row = conn.execute("SELECT pg_try_advisory_lock(%s)", (ADVISORY_KEY,)).fetchone()
        if not (row and row[0]):
            conn.close()
            return False
        self._conn = conn
        return True

    def still_held(self) -> bool:
        """False once the connection (and with it the lock) is gone."""
        if self._conn is None:
            return False
        try:
            self._conn.execute("SELECT 1")
            return True
        except Exception:  # a broken connection no longer holds the lock
            self.release()
            return False

    def release(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(Exception):  # a broken connection may fail to close
                self._conn.close()
            self._conn = None


def lock_for(engine: Engine, home: Path) -> LeaderLock:
    """The leader lock that fits the database: advisory on PostgreSQL, else a file lock
    beside the SQLite file (or in the home folder)."""
    if engine.dialect.name == "postgresql":
        return AdvisoryLock(engine)
    database = engine.url.database
    if engine.dialect.name == "sqlite" and database and database != ":memory:":
        return FileLock(Path(database).with_name(Path(database).name + ".leader"))
    return FileLock(home / "leader.lock")


class Leadership:
    """Runs the duties while this process holds the leader lock; tries to take the lock
    every ``retry_s`` seconds while it does not."""

    def __init__(self, lock: LeaderLock, duties: Sequence[Duty], retry_s: float = 5.0) -> None:
        self.lock = lock
        self.duties = list(duties)
        self.retry_s = retry_s
        self.leading = False
        self._started: list[Duty] = []
        self._stopped = False
        self._worker = BackgroundWorker(
            "vitrine-leader", self.step, interval=self.retry_s, wait_first=True
        )
        self._mutex = threading.Lock()

    def start(self) -> None:
        """Try once now (so a single process leads from its first request), then keep
        trying in the background."""
        if self._worker.running:
            return
        self._stopped = False
        self.step()
        self._worker.start()

    def stop(self) -> None:
        self._stopped = True
        self._worker.stop()
        with self._mutex:
            self._resign()

    def step(self) -> None:
        """One round: check a held lock, or try to take it."""
        with self._mutex:
            if self._stopped:
                return
            if self.leading:
                if not self.lock.still_held():
                    log.warning("lost the leader lock; stopping background duties")
                    self._resign()
                return
            try:
                acquired = self.lock.try_acquire()
            except Exception as exc:  # the database may be away for a moment
                log.warning("leader election failed (%s); retrying", type(exc).__name__)
                return
            if acquired:
                self.leading = True
                log.info("this process leads: running %s", ", ".join(d.name for d in self.duties))
                for duty in self.duties:
                    try:
                        duty.start()
                        self._started.append(duty)
                    except Exception:  # one broken duty must not keep the others down
                        log.exception("background duty %s failed to start", duty.name)

    def _resign(self) -> None:
        for duty in reversed(self._started):
            try:
                duty.stop()
            except Exception:
                log.exception("background duty %s failed to stop", duty.name)
        self._started.clear()
        if self.leading:
            self.lock.release()
        self.leading = False
