"""One function run in a child process that never outlives the service that started it.

Training runs in a spawned child at a lower CPU priority (see
:meth:`~vitrine.recommend.lifecycle.ModelLifecycle.train_separately`). A
``ProcessPoolExecutor``'s worker would outlive a stopped ``vitrine serve``, training for
minutes. :class:`ChildRun` can terminate its child (the service's shutdown does),
and the child ends itself when its parent dies without saying so: on Linux the kernel
sends it SIGTERM (``prctl(PR_SET_PDEATHSIG)``), elsewhere a watchdog thread sees its
parent change.
"""

from __future__ import annotations

import contextlib
import ctypes
import multiprocessing
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from multiprocessing.connection import Connection, wait
from typing import Any

PR_SET_PDEATHSIG = 1  # linux/prctl.h


class ChildStopped(RuntimeError):
    """The child was terminated (the service is stopping) before it answered."""


def die_with_parent(parent: int) -> None:
    """In a child process: end this process when ``parent`` (its parent's pid) exits."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    if os.getppid() != parent:  # the parent died before the signal was asked for
        os._exit(1)

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def _child_main(
    conn: Connection, fn: Callable[[Any], Any], arg: Any, parent: int, nice: int
) -> None:
    die_with_parent(parent)
    if nice:
        with contextlib.suppress(OSError):
            os.nice(nice)
    try:
        value = fn(arg)
    except BaseException as exc:  # every failure is the parent's to raise
        try:
            conn.send(("error", exc))
        except Exception:  # an exception that does not pickle
            conn.send(("error", RuntimeError(repr(exc))))
    else:
        conn.send(("ok", value))
    finally:
        conn.close()


class ChildRun:
    """``fn(arg)`` in a spawned child process at ``nice`` lower priority: started at once,
    its value (or exception) given by :meth:`result`, ended by :meth:`stop`."""

    def __init__(self, fn: Callable[[Any], Any], arg: Any, nice: int = 10) -> None:
        context = multiprocessing.get_context("spawn")
        self._conn, child_conn = context.Pipe(duplex=False)
        self._stopped = False
        self.process = context.Process(
            target=_child_main,
            args=(child_conn, fn, arg, os.getpid(), nice),
            name="vitrine-train",
            daemon=True,
        )
        self.process.start()
        child_conn.close()

    @property
    def pid(self) -> int | None:
        return self.process.pid

    def result(self) -> Any:
        """Wait for the child's value; raise its exception, or :class:`ChildStopped`."""
        try:
            wait([self._conn, self.process.sentinel])
            status, value = self._conn.recv()
        except (EOFError, OSError):
            self.process.join()
            if self._stopped:
                raise ChildStopped("the child process was stopped") from None
            raise RuntimeError(
                f"the child process ended without a result (exit code {self.process.exitcode})"
            ) from None
        finally:
            self._conn.close()
        self.process.join()
        if status == "error":
            raise value
        return value

    def stop(self, timeout: float = 5.0) -> None:
        """Terminate the child if it still runs (SIGTERM, then SIGKILL after ``timeout``)."""
        self._stopped = True
        process = self.process
        if process.is_alive():
            process.terminate()
            process.join(timeout)
            if process.is_alive():
                process.kill()
                process.join()
