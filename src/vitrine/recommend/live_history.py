"""The events that arrived since the models' snapshot, per customer.

A customer's history is the trained snapshot's plus these, so an event changes the
customer's next recommendations at once, without retraining. Each applied event gets a
sequence number: a model set remembers the last one its snapshot holds
(``ModelSet.snapshot_seq``), and a kept list the customer's latest one it was computed
with (see :mod:`~vitrine.recommend.list_cache`).
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping, Sequence

from vitrine.recommend.data import History, to_days
from vitrine.recommend.events import EventRecord
from vitrine.recommend.models import ModelSet

# (sequence number, product id, day, weight, purchase)
LiveEvent = tuple[int, str, float, float, bool]


class LiveHistories:
    """Customers' events since the snapshot, safe to use from any thread."""

    def __init__(self, weights: Mapping[str, float]) -> None:
        self.weights = weights
        self._events: dict[str, list[LiveEvent]] = {}
        self._seq = 0
        self._lock = threading.Lock()

    @property
    def seq(self) -> int:
        """The sequence number of the latest applied event (a new snapshot holds those
        up to it)."""
        return self._seq

    def apply(self, records: Iterable[EventRecord]) -> list[tuple[EventRecord, int]]:
        """Add events to the customers' histories: (event, its sequence number) of each."""
        applied = []
        with self._lock:
            for e in records:
                self._seq += 1
                self._events.setdefault(e.user_id, []).append(
                    (
                        self._seq,
                        e.product_id,
                        to_days(e.ts),
                        self.weights[e.type],
                        e.type == "purchase",
                    )
                )
                applied.append((e, self._seq))
        return applied

    def take_back(self, applied: Sequence[tuple[EventRecord, int]]) -> None:
        """Remove applied events again (not stored, or stored before: duplicates)."""
        seqs = {seq for _, seq in applied}
        with self._lock:
            for user in {e.user_id for e, _ in applied}:
                kept = [x for x in self._events.get(user, ()) if x[0] not in seqs]
                if kept:
                    self._events[user] = kept
                else:
                    self._events.pop(user, None)

    def history(self, user_id: str, models: ModelSet) -> tuple[History, int]:
        """The snapshot's history of a customer plus the events since, and the sequence
        number of its latest live event (0: none)."""
        history = models.history(user_id)
        with self._lock:
            live = [e for e in self._events.get(user_id, ()) if e[0] > models.snapshot_seq]
        index = models.data.item_index
        for _, product_id, day, weight, purchase in live:
            item = index.get(product_id)
            if item is not None:  # else a product nobody knows yet: at the next retrain
                history = history.appended(item, day, weight, purchase)
        return history, (live[-1][0] if live else 0)

    def rebase(self, snapshot_seq: int) -> None:
        """Forget the events a new snapshot holds (those up to ``snapshot_seq``)."""
        with self._lock:
            for user in list(self._events):
                kept = [e for e in self._events[user] if e[0] > snapshot_seq]
                if kept:
                    self._events[user] = kept
                else:
                    del self._events[user]
