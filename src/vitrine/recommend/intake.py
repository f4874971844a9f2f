"""Customer events in: validated, applied at once, stored, and the customers' lists refreshed.

Each post of events goes through three steps:

1. accept: validate every event (all or nothing: a bad event raises
   :class:`~vitrine.recommend.events.EventError` naming its position) and apply the
   distinct ones to the live histories, so that the customers' next requests see them;
2. store: write them; those stored before (re-sent) are taken back out of the live
   histories (their customers' lists are then computed again: exact), and all of them
   when writing fails;
3. refresh: start computing the customers' default lists in the background.

In the server (:meth:`EventIntake.post`) the first step runs in the event loop for a few
events (the customer's very next request sees them, whichever worker answers it), the
store in a worker thread, and the refresh only once the events are stored.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from anyio import to_thread

from vitrine.config import Settings
from vitrine.recommend.event_store import EventColumns, EventImportReport, EventStore
from vitrine.recommend.events import EventError, EventRecord, make_event
from vitrine.recommend.lifecycle import ModelLifecycle
from vitrine.recommend.live_history import LiveHistories
from vitrine.recommend.serving import UserLists
from vitrine.recommend.strategies import StrategyError

ACCEPT_IN_LOOP = 50  # events validated and applied in the event loop (more: in a thread)
REFRESHED_USERS = 100  # a bulk upload refreshes the rest lazily, on request


@dataclass
class PendingEvents:
    """Events accepted (validated, in the live histories) and not stored yet."""

    records: list[EventRecord]
    seqs: list[tuple[EventRecord, int]]  # each applied event and its sequence number


class EventIntake:
    """Takes customer events in: one post of events at a time, or a CSV event log."""

    def __init__(
        self,
        settings: Settings,
        events: EventStore,
        weights: dict[str, float],
        live: LiveHistories,
        lifecycle: ModelLifecycle,
        lists: UserLists,
    ) -> None:
        self.settings = settings
        self.events = events
        self.weights = weights
        self.live = live
        self.lifecycle = lifecycle
        self.lists = lists

    async def post(
        self, raw: Sequence[Mapping[str, Any]], *, form_checked: bool = False
    ) -> tuple[list[EventRecord], int]:
        """:meth:`add` from the server's event loop: a few events are accepted right here
        (no thread hop before the customers' next requests see them), stored in a worker
        thread, then their lists refreshed; a bulk upload goes to a worker thread whole.

        The worker threads are the server's (``anyio``'s, which Starlette's
        ``run_in_threadpool`` uses), as for every other blocking call of a request.
        ``form_checked``: see :func:`~vitrine.recommend.events.make_event`.
        """
        if len(raw) > ACCEPT_IN_LOOP:
            add = functools.partial(self.add, raw, form_checked=form_checked)
            return await to_thread.run_sync(add)
        pending = self._accept(raw, form_checked=form_checked)
        stored = await to_thread.run_sync(self._store, pending)
        self._refresh(pending)  # their new lists start now, before the answer is sent
        return stored

    def add(
        self, raw: Sequence[Mapping[str, Any]], *, form_checked: bool = False
    ) -> tuple[list[EventRecord], int]:
        """Validate (all or nothing: a bad event raises EventError naming its position),
        store, and apply to the customers' live histories, all in the calling thread.
        Returns (new events, duplicates)."""
        pending = self._accept(raw, form_checked=form_checked)
        stored = self._store(pending)
        self._refresh(pending)
        return stored

    def _accept(
        self, raw: Sequence[Mapping[str, Any]], *, form_checked: bool = False
    ) -> PendingEvents:
        """Validate events and apply them to the live histories before they are stored
        (cheap: the server's event loop calls it)."""
        records = []
        now = datetime.now().astimezone()
        for n, data in enumerate(raw):
            try:
                records.append(make_event(data, self.weights, now=now, form_checked=form_checked))
            except EventError as exc:
                prefix = f"event {n}: " if len(raw) > 1 else ""
                raise EventError(prefix + str(exc)) from None
        unique = list({e.event_key: e for e in records}.values())
        return PendingEvents(records, self._apply(unique))

    def _store(self, pending: PendingEvents) -> tuple[list[EventRecord], int]:
        """Store accepted events; those already stored before are taken back out of the
        live histories (their customers' lists are then computed again: exact)."""
        try:
            added = self.events.add(pending.records)
        except BaseException:
            self.live.take_back(pending.seqs)
            raise
        new = {e.event_key for e in added}
        duplicates = [(e, seq) for e, seq in pending.seqs if e.event_key not in new]
        if duplicates:
            self.live.take_back(duplicates)
        return added, len(pending.records) - len(added)

    def _refresh(self, pending: PendingEvents) -> None:
        """Start computing the default list of these events' customers, so that their next
        request finds it ready or being computed (then waits for it). Called once the
        events are stored: a computation started earlier holds the GIL while the storing
        thread waits for it (the POST answered 2x later in the load benchmark)."""
        k = self.settings.recommend_event_refresh_k
        if k <= 0 or self.settings.recommend_cache_size <= 0 or not self.lifecycle.ready:
            return
        users = list(dict.fromkeys(e.user_id for e, _ in pending.seqs))
        for user_id in users[:REFRESHED_USERS]:
            try:
                self.lists.refresh(user_id, k)
            except StrategyError:
                return

    def import_events(self, path: Path, columns: EventColumns) -> EventImportReport:
        """Import a CSV event log; each stored batch is applied to the live histories."""
        return self.events.import_csv(path, columns, self.weights, on_batch=self._apply)

    def _apply(self, records: Iterable[EventRecord]) -> list[tuple[EventRecord, int]]:
        """Add events to the live histories (none before the first models: those are
        trained from the stored events)."""
        if not self.lifecycle.ready:
            return []
        return self.live.apply(records)
