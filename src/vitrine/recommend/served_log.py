"""The log of served lists: what each recommendation id showed, under which strategy.

Clicks and purchases sent with a recommendation id are attributed through it, which
gives click-through and conversion per strategy
(:meth:`~vitrine.recommend.event_store.EventStore.strategy_stats`).
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from typing import Any

from vitrine.recommend.event_store import EventStore
from vitrine.worker import BackgroundWorker

log = logging.getLogger(__name__)


class ServedWriter:
    """Records served lists in the database from a background thread, in batches.

    A request only appends to a deque: no lock, no wake-up of the writer (waking it on
    every list handed the GIL to it and cost the event loop milliseconds under load);
    the writer looks every ``interval`` seconds and writes what piled up.
    """

    MAX_ROWS = 100_000

    def __init__(self, events: EventStore, interval: float = 0.2) -> None:
        self.events = events
        self.interval = interval
        self.rows: deque[dict[str, Any]] = deque()
        self._busy = False
        self._done = threading.Condition()
        self._worker = BackgroundWorker(
            "served-writer", self._write_all, interval=interval, on_stop=self._write_all
        )
        self._worker.start()

    def put(self, row: dict[str, Any]) -> None:
        if len(self.rows) >= self.MAX_ROWS:
            log.warning("served-recommendations queue full; dropping one record")
            return
        self.rows.append(row)

    def _write_all(self) -> None:
        with self._done:
            self._busy = True
        try:
            while self.rows:
                batch = []
                while self.rows and len(batch) < 500:
                    batch.append(self.rows.popleft())
                try:
                    self.events.record_served(batch)
                except Exception:  # keep serving even if the log cannot be written
                    log.exception("could not record served recommendations")
        finally:
            with self._done:
                self._busy = False
                self._done.notify_all()

    def wait_written(self) -> None:
        """Until every list put so far is in the database (or failed to be written)."""
        with self._done:
            while self._worker.running and (self.rows or self._busy):
                self._worker.wake()
                self._done.wait(0.05)

    def flush(self) -> None:
        """Stop, writing what is left."""
        self._worker.stop()
