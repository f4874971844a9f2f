"""The one way Vitrine runs a loop in the background: a named daemon thread per worker.

Every loop of the service (import jobs, retraining, the change feed, the leader
election, the monitor, the CNN micro-batcher, the served-list writer, ...) is a
:class:`BackgroundWorker` around a ``step`` function. The worker calls ``step`` again and
again until it is stopped; ``step`` returns how long to wait before the next call
(``None``: the worker's ``interval``; ``0``: at once), and the wait ends early when
:meth:`BackgroundWorker.wake` is called or the worker stops. An exception in a step is
logged and the loop goes on after ``error_wait`` seconds: a background loop never takes
the service down.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

log = logging.getLogger(__name__)

Step = Callable[[], float | None]


class BackgroundWorker:
    """Runs ``step`` in a loop on its own daemon thread until :meth:`stop`.

    Args:
        name: the thread's name (shown in logs and thread dumps).
        step: one round of work; returns the seconds to wait before the next round
            (``None`` for ``interval``, ``0`` to go again at once).
        interval: the default wait between rounds; ``None`` waits until woken.
        wait_first: wait one interval before the first round.
        error_wait: seconds to wait after a round that raised.
        join_timeout: how long :meth:`stop` waits for the round in progress.
        on_stop: called on the worker's thread after its last round.
        once: run one round, then end (a one-off background task).
    """

    def __init__(
        self,
        name: str,
        step: Step,
        *,
        interval: float | None = 1.0,
        wait_first: bool = False,
        error_wait: float = 1.0,
        join_timeout: float = 10.0,
        on_stop: Callable[[], None] | None = None,
        once: bool = False,
    ) -> None:
        self.name = name
        self._step = step
        self.interval = interval
        self.wait_first = wait_first
        self.error_wait = error_wait
        self.join_timeout = join_timeout
        self._on_stop = on_stop
        self.once = once
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    @property
    def stopping(self) -> bool:
        """True once :meth:`stop` was called: a long step may check it to end early."""
        return self._stop.is_set()

    def start(self) -> None:
        """Start the thread (a running worker is left as it is)."""
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()

    def wake(self) -> None:
        """End the current wait: the next round starts now."""
        self._wake.set()

    def stop(self, timeout: float | None = None) -> None:
        """Ask the loop to end, and wait for the round in progress to finish."""
        self._stop.set()
        self._wake.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(self.join_timeout if timeout is None else timeout)
            if not thread.is_alive():
                self._thread = None

    def sleep(self, seconds: float | None) -> bool:
        """Wait ``seconds`` (``None``: until woken) unless woken or stopped; True when
        the worker is stopping. For steps that wait inside themselves."""
        self._wake.wait(seconds)
        self._wake.clear()
        return self._stop.is_set()

    def _run(self) -> None:
        try:
            if self.wait_first and self.sleep(self.interval):
                return
            while not self._stop.is_set():
                try:
                    delay = self._step()
                except Exception:
                    log.exception("%s: a background round failed; going on", self.name)
                    delay = self.error_wait
                if self._stop.is_set() or self.once:
                    return
                if delay is None:
                    delay = self.interval
                if (delay is None or delay > 0) and self.sleep(delay):
                    return
        finally:
            if self._on_stop is not None:
                try:
                    self._on_stop()
                except Exception:
                    log.exception("%s: stopping failed", self.name)
