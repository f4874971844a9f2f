"""Keeps this process's index in step with changes made through other processes.

Several `vitrine serve` processes share one database and one blob store; each has its
own in-memory index. A follower thread reads the database's change feed (woken by
PostgreSQL NOTIFY, or polling on SQLite) and applies each changed product's current
state from the database through ``VisualSearch.reload`` / ``upsert``. Applying a state
is idempotent, so changes this process made itself, or saw twice, cost one read.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import Engine

from vitrine.catalog.change_feed import CHANNEL, FeedCursor, latest_id, prune
from vitrine.config import Settings
from vitrine.worker import BackgroundWorker

log = logging.getLogger(__name__)
APPLY_CHUNK = 500
PRUNE_EVERY_S = 60.0
SETTINGS_EVERY_S = 2.0  # how soon a CNN switch made elsewhere reaches this process


class ChangeFollower:
    """Follows the change feed from the moment it is created (the index loads after that).

    ``apply`` brings this process's in-memory parts in step with the database for some
    products, and says whether any part was there to update (until the index or the
    recommendation models are loaded there is nothing to update: they will load from the
    database, which already holds the changes).
    """

    def __init__(
        self,
        engine: Engine,
        settings: Settings,
        apply: Callable[[Sequence[str]], bool],
        follow_settings: Callable[[], None] | None = None,
    ) -> None:
        self.engine = engine
        self.follow_settings = follow_settings
        self._last_settings = 0.0
        self.retention_s = settings.change_feed_retention_s
        self.apply = apply
        self.cursor = FeedCursor(last_id=latest_id(engine))
        self.poll_s = max(0.01, settings.change_feed_poll_ms / 1000)
        self.applied = 0
        self._worker = BackgroundWorker("change-feed", self._round, interval=0)
        self._listener: Any = None
        self._last_prune = 0.0

    # -- lifecycle --------------------------------------------------------------------

    def start(self) -> None:
        self._worker.start()

    def stop(self) -> None:
        self._worker.stop()
        self._close_listener()

    def _round(self) -> float:
        """Apply what changed, then wait for the next change (a failing round is retried
        by the worker: the database may be away for a moment)."""
        self.catch_up()
        if self.follow_settings and time.monotonic() - self._last_settings > SETTINGS_EVERY_S:
            self._last_settings = time.monotonic()
            self.follow_settings()
        if time.monotonic() - self._last_prune > PRUNE_EVERY_S:
            self._last_prune = time.monotonic()
            prune(self.engine, self.retention_s)
        self._wait()
        return 0

    # -- waiting ----------------------------------------------------------------------

    def _wait(self) -> None:
        """Sleep until the poll interval ends, or until PostgreSQL notifies a change."""
        if self.engine.dialect.name != "postgresql":
            self._worker.sleep(self.poll_s)
            return
        try:
            if self._listener is None:
                self._listener = self._listen()
            for _ in self._listener.notifies(timeout=self.poll_s, stop_after=1):
                pass
        except Exception as exc:  # fall back to polling until it reconnects
            log.warning("change feed: LISTEN failed (%s); polling", type(exc).__name__)
            self._close_listener()
            self._worker.sleep(self.poll_s)

    def _listen(self) -> Any:
        import psycopg

        url = self.engine.url.set(drivername="postgresql")
        conn = psycopg.connect(url.render_as_string(hide_password=False), autocommit=True)
        conn.execute(f"LISTEN {CHANNEL}")
        return conn

    def _close_listener(self) -> None:
        if self._listener is not None:
            with contextlib.suppress(Exception):  # a broken connection may fail to close
                self._listener.close()
            self._listener = None

    # -- applying ---------------------------------------------------------------------

    def catch_up(self) -> int:
        """Apply every change not applied yet; returns how many products were refreshed."""
        total = 0
        while True:
            rows = self.cursor.read(self.engine)
            if not rows:
                return total
            ids = list(dict.fromkeys(pid for _, pid, _ in rows))
            applied = False
            for start in range(0, len(ids), APPLY_CHUNK):
                applied = self.apply(ids[start : start + APPLY_CHUNK]) or applied
            if applied:
                total += len(ids)
                self.applied += len(ids)
