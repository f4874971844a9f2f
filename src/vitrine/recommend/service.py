"""The recommendation service: events in, explained recommendations out, in real time.

What the API, the command line and the admin UI call. It keeps the current
:class:`~vitrine.recommend.models.ModelSet` (swapped atomically when a retrain in the
background finishes), and every event that arrived since that snapshot: a customer's
history is the snapshot's plus those, so an event changes the customer's next
recommendations at once, without retraining. Strategies (named configurations in the
database) choose the algorithm, aspect weights, business rules and fallback chain;
every response has a recommendation id, and served lists are recorded so that clicks
and purchases sent with that id give click-through and conversion per strategy.
"""

from __future__ import annotations

import gc
import itertools
import json
import logging
import multiprocessing
import os
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import threadpoolctl

from vitrine.catalog.models import RecommendationEvaluation
from vitrine.catalog.store import CatalogStore
from vitrine.config import Settings
from vitrine.recommend.als_factors import als_factors_stamp, with_als_factors
from vitrine.recommend.base import Explainer, Reason
from vitrine.recommend.data import Dataset, History, to_days
from vitrine.recommend.event_store import EventColumns, EventImportReport, EventStore
from vitrine.recommend.events import EventError, EventRecord, event_weights, make_event
from vitrine.recommend.list_cache import COLD, CachedList, ListCache, list_key
from vitrine.recommend.live_catalog import LiveCatalog, read_states
from vitrine.recommend.loading import load_dataset
from vitrine.recommend.models import ModelSet
from vitrine.recommend.rules import Rules, candidate_mask, reshape
from vitrine.recommend.strategies import Strategy, StrategyError, StrategyStore
from vitrine.recommend.visual import VisualSimilar
from vitrine.worker import BackgroundWorker

log = logging.getLogger(__name__)

ALWAYS_TRAINED = ("popularity", "trending", "similar", "complementary", "visual_profile")


# A catalog change makes every kept list of the previous generation stale after
# `recommend_catalog_refresh_s`. Computing them all in requests at once stalled serving
# (H&M load bench, new products at 0.5/s while serving 200 lists/s: p99 9.7 s, half the
# requests answered): while this many lists are being computed, or this many wait for
# the background refresher, a stale list (never holding a deleted or unavailable product)
# is served and recomputed in the background instead.
BUSY_COMPUTING = max(2, os.cpu_count() or 2)
BUSY_BACKLOG = 4


class NotReadyError(RuntimeError):
    """The first models are still being trained."""


class UnknownItemError(KeyError):
    """A product that is not in the catalog the models know."""


@dataclass
class RecommendedItem:
    product_id: str
    rank: int
    score: float
    source: str
    title: str | None
    explanation: Reason

    def to_json(self) -> dict[str, Any]:
        return {
            "product_id": self.product_id,
            "rank": self.rank,
            "score": round(self.score, 6),
            "source": self.source,
            "title": self.title,
            "explanation": self.explanation,
        }

    def to_response(self) -> dict[str, Any]:
        """As the API sends it (no null fields)."""
        return {k: v for k, v in self.to_json().items() if v is not None}


@dataclass
class RecommendationList:
    id: str
    strategy: str
    context: str
    items: list[RecommendedItem]
    took_ms: float = 0.0
    user_id: str | None = None
    fallback: bool = False
    extra: dict[str, Any] = field(default_factory=dict)
    items_json: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "recommendation_id": self.id,
            "strategy": self.strategy,
            "user_id": self.user_id,
            "items": [i.to_json() for i in self.items],
            "fallback_used": self.fallback,
            "took_ms": round(self.took_ms, 3),
            **self.extra,
        }

    def to_body(self) -> str:
        """The API's JSON document (null fields left out), the items serialised once per
        computed list rather than once per response."""
        items = self.items_json
        if items is None:
            items = json.dumps([i.to_response() for i in self.items], separators=(",", ":"))
        head = {k: v for k, v in self.to_json().items() if k != "items" and v is not None}
        return json.dumps(head, separators=(",", ":"))[:-1] + ',"items":' + items + "}"


def cached_list(items: list[RecommendedItem], fallback: bool) -> CachedList:
    return CachedList(
        tuple(items), fallback, json.dumps([i.to_response() for i in items], separators=(",", ":"))
    )


_ID_PREFIX = os.urandom(8).hex()  # this process's, re-drawn in forked children
_ID_COUNTER = itertools.count()


def _recommendation_id() -> str:
    """A unique recommendation id (32 hex digits): a random per-process prefix and a
    counter, without the system call of uuid4 (the event loop releases the GIL there,
    and under load waits to get it back)."""
    return f"{_ID_PREFIX}{next(_ID_COUNTER):016x}"


def _new_process_ids() -> None:
    global _ID_PREFIX
    _ID_PREFIX = os.urandom(8).hex()


os.register_at_fork(after_in_child=_new_process_ids)


class _ServedWriter:
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


@dataclass(frozen=True)
class _ListJob:
    """Computing one customer's list: its cache key and what it is computed from."""

    key: tuple[Any, ...]
    strategy: Strategy
    history: History
    k: int
    rules: Rules
    models: ModelSet
    seq: int  # the customer's latest live event (0: none since the snapshot)


@dataclass
class PendingEvents:
    """Events accepted (validated, in the live histories) and not stored yet."""

    records: list[EventRecord]
    seqs: list[tuple[EventRecord, int]]  # each applied event and its sequence number


class _BatchJob:
    """One batch of customers: what a forked worker needs (no database access)."""

    def __init__(
        self,
        service: RecommendationService,
        models: ModelSet,
        strategies: dict[str, Strategy],
        k: int,
    ) -> None:
        self.service = service
        self.models = models
        self.strategies = strategies
        self.k = k

    def run(self, plan: Sequence[tuple[str, str]]) -> list[tuple[str, list[str]]]:
        models, data, k = self.models, self.models.data, self.k
        cold: dict[str, list[str]] = {}
        out = []
        for user_id, name in plan:
            chosen = self.strategies[name]
            history = self.service.history(user_id, models)
            if not len(history) and name in cold:
                out.append((user_id, cold[name]))
                continue
            now = self.service._now(models, history)
            valid = self.service.candidates(chosen.rules, data, history)
            ranked: list[int] = []
            for key in [chosen.model_key, *chosen.fallback]:
                algorithm = models.algorithms.get(key)
                if algorithm is None:
                    continue
                items, _ = algorithm.recommend(history, max(2 * k, 24), now, valid)
                ranked += [i for i in items.tolist() if i not in ranked]
                if len(ranked) >= k:
                    break
            ids = [data.items[i] for i in reshape(chosen.rules, data, ranked, k)]
            if not len(history):
                cold[name] = ids
            out.append((user_id, ids))
        return out


_BATCH: _BatchJob | None = None  # the job forked workers inherit


def _run_batch_chunk(plan: list[tuple[str, str]]) -> list[tuple[str, list[str]]]:
    assert _BATCH is not None
    return _BATCH.run(plan)


class RecommendationService:
    def __init__(self, settings: Settings, engine: Any, store: CatalogStore) -> None:
        # BLAS threads fight each other under concurrent requests and other load: one
        # thread per call measured 5-10x faster on the 2-core machine (see README).
        threadpoolctl.threadpool_limits(1, "blas")
        self.settings = settings
        self.engine = engine
        self.store = store
        self.events = EventStore(engine)
        self.weights = event_weights(settings.recommend_event_weights)
        self.strategies = StrategyStore(engine)
        self.strategies.ensure_builtins()
        self.model_dir: Path = settings.home / "recommend"
        self._models: ModelSet | None = None
        # per customer, the events since the snapshot: (seq, product id, day, weight, buy)
        self._live: dict[str, list[tuple[int, str, float, float, bool]]] = {}
        self._seq = 0
        self._lock = threading.Lock()
        self._train_lock = threading.Lock()
        period = settings.recommend_retrain_minutes * 60
        self._trainer = BackgroundWorker(
            "recommend-trainer", self._train_round, interval=period or None, join_timeout=5
        )
        self._trained_once = False
        self._retrain_requested = False
        self._served: _ServedWriter | None = None
        self._lists = ListCache(settings.recommend_cache_size)
        self.lists_served = 0  # from the cache or precomputed
        self.lists_computed = 0
        # lists being computed in the background (after an event, or for a newer catalog
        # generation): key -> (future, model set, seq); a request for one waits for it
        self._pending: dict[tuple[Any, ...], tuple[Future[CachedList], ModelSet, int]] = {}
        self._refresher = ThreadPoolExecutor(1, thread_name_prefix="list-refresh")
        self._computing = 0  # lists being computed right now, in requests or the refresher
        self.lists_stale = 0  # served from an older catalog generation under load
        self.catalog = LiveCatalog(settings.recommend_catalog_refresh_s)
        self._publish_lock = threading.Lock()
        self._publish_timer: threading.Timer | None = None
        self.last_error: str | None = None

    # -- models -------------------------------------------------------------------------

    def fingerprint(self) -> str:
        return (
            f"{self.events.fingerprint()}|{self.store.catalog_stamp()}|"
            + "|".join(sorted(self.weights))
            + als_factors_stamp(self.settings.recommend_als_factors)
        )

    def model_specs(self) -> dict[str, tuple[str, dict[str, Any]]]:
        """Every model the strategies need: key -> (algorithm, params)."""
        specs: dict[str, tuple[str, dict[str, Any]]] = {n: (n, {}) for n in ALWAYS_TRAINED}
        for s in self.strategies.list():
            if s.variants:
                continue
            specs.setdefault(s.model_key, (s.algorithm, s.params))
            for name in s.fallback:
                specs.setdefault(name, (name, {}))
        path = self.settings.recommend_als_factors
        return {k: with_als_factors(a, p, path) for k, (a, p) in specs.items()}

    def train(self) -> ModelSet:
        """Build and fit a new model set from the database, save it and swap it in."""
        with self._train_lock:
            seq, counter = self._seq, self.catalog.counter
            fingerprint = self.fingerprint()
            data = load_dataset(
                self.store,
                self.events,
                self.weights,
                category_field=self.settings.recommend_category_field,
            )
            models = ModelSet.train(data, self.model_specs(), fingerprint, snapshot_seq=seq)
            models.precomputed = self.precompute(models)
            models.save(self.model_dir)
            self._swap(models, counter)
            return models

    def _swap(self, models: ModelSet, catalog_counter: int | None = None) -> None:
        """Serve a newly trained set, with the catalog changes it was trained without
        (all those since this process started following the catalog, when unknown)."""
        self.catalog.rebase(catalog_counter if catalog_counter is not None else -1)
        if self.catalog.changes:
            data, generation = self.catalog.extended(models.data)
            models = models.with_catalog(data, generation)
        with self._lock:
            self._models = models
            self._lists.clear()  # entries of the old set would miss anyway: free them
            for user in list(self._live):
                kept = [e for e in self._live[user] if e[0] > models.snapshot_seq]
                if kept:
                    self._live[user] = kept
                else:
                    del self._live[user]
        # A model set lives until the next swap: keep its many objects out of the cyclic
        # collector's full passes, which stall serving. Frozen objects are never
        # collected, so what the old set left in reference cycles is collected first
        # (one pause per swap instead of one every few seconds).
        gc.unfreeze()
        gc.collect()
        gc.freeze()

    def load_or_train(self, *, separate_process: bool = False) -> ModelSet:
        """The saved models when they match the data, else newly trained ones."""
        saved = ModelSet.load(self.model_dir, self.fingerprint())
        if saved is not None and set(self.model_specs()) <= set(saved.algorithms):
            self._swap(saved)
            return saved
        return self.train_separately() if separate_process else self.train()

    def train_separately(self) -> ModelSet:
        """Train in a child process at a lower CPU priority, then load its saved models.

        Training is mostly Python and numpy for minutes on a large catalog; in the serving
        process it would hold the GIL and starve the event loop (requests stall).
        """
        seq, counter = self._seq, self.catalog.counter
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(1, mp_context=context, initializer=_lower_priority) as pool:
            fingerprint = pool.submit(_train_and_save, self.settings).result()
        models = ModelSet.load(self.model_dir, fingerprint)
        if models is None:
            raise RuntimeError(f"the trained models were not found in {self.model_dir}")
        models.snapshot_seq = seq
        self._swap(models, counter)
        return models

    @property
    def models(self) -> ModelSet:
        models = self._models
        if models is None:
            raise NotReadyError("the recommendation models are still being trained")
        return models

    @property
    def ready(self) -> bool:
        return self._models is not None

    def start(self) -> None:
        """Load or train in the background, then retrain on schedule or on demand."""
        if self._trainer.running:
            return
        self._served = _ServedWriter(self.events)
        self._trainer.start()

    def request_retrain(self) -> None:
        self._retrain_requested = True
        self._trainer.wake()

    def stop(self) -> None:
        self._trainer.stop(timeout=0)  # no new round; the one in progress is joined below
        if self._publish_timer is not None:
            self._publish_timer.cancel()
        self._refresher.shutdown(wait=False, cancel_futures=True)
        self._trainer.stop()
        if self._served is not None:
            self._served.flush()

    def _train_round(self) -> None:
        """The trainer's round: load or train at first, then retrain when asked, or on
        schedule when the events or the catalog changed."""
        first = not self._trained_once
        self._trained_once = True
        requested, self._retrain_requested = self._retrain_requested, False
        try:
            if first:
                self.load_or_train(separate_process=True)
            elif requested or self.fingerprint() != self.models.fingerprint:
                self.train_separately()
                self.last_error = None
        except Exception as exc:
            log.exception("recommendation %s failed", "training" if first else "retraining")
            self.last_error = str(exc)

    def add_events(self, raw: Sequence[Mapping[str, Any]]) -> tuple[list[EventRecord], int]:
        """Validate (all or nothing: a bad event raises EventError naming its position),
        store, and apply to the customers' live histories. Returns (new events, duplicates)."""
        pending = self.accept_events(raw)
        stored = self.store_events(pending)
        self.refresh_lists(pending)
        return stored

    def accept_events(self, raw: Sequence[Mapping[str, Any]]) -> PendingEvents:
        """Validate events and apply them to the live histories before they are stored
        (cheap: the server's event loop calls it); :meth:`store_events` then stores them
        and takes back the duplicates, and :meth:`refresh_lists` starts the customers'
        new lists."""
        records = []
        now = datetime.now().astimezone()
        for n, data in enumerate(raw):
            try:
                records.append(make_event(data, self.weights, now=now))
            except EventError as exc:
                prefix = f"event {n}: " if len(raw) > 1 else ""
                raise EventError(prefix + str(exc)) from None
        unique = list({e.event_key: e for e in records}.values())
        return PendingEvents(records, self._apply(unique))

    def refresh_lists(self, pending: PendingEvents) -> None:
        """Start computing the default list of these events' customers, so that their next
        request finds it ready or being computed (then waits for it). Called once the
        events are stored: a computation started earlier holds the GIL while the storing
        thread waits for it (the POST answered 2x later in the load benchmark)."""
        k = self.settings.recommend_event_refresh_k
        if k <= 0 or self.settings.recommend_cache_size <= 0 or self._models is None:
            return
        users = list(dict.fromkeys(e.user_id for e, _ in pending.seqs))
        for user_id in users[:100]:  # a bulk upload refreshes lazily, on request
            try:
                self._user_list(user_id, k, None, None, None, compute=False, refresh=True)
            except StrategyError:
                return

    def store_events(self, pending: PendingEvents) -> tuple[list[EventRecord], int]:
        """Store accepted events; those already stored before are taken back out of the
        live histories (their customers' lists are then computed again: exact)."""
        try:
            added = self.events.add(pending.records)
        except BaseException:
            self._take_back(pending.seqs)
            raise
        new = {e.event_key for e in added}
        duplicates = [(e, seq) for e, seq in pending.seqs if e.event_key not in new]
        if duplicates:
            self._take_back(duplicates)
        return added, len(pending.records) - len(added)

    def _take_back(self, applied: Sequence[tuple[EventRecord, int]]) -> None:
        seqs = {seq for _, seq in applied}
        with self._lock:
            for user in {e.user_id for e, _ in applied}:
                kept = [x for x in self._live.get(user, ()) if x[0] not in seqs]
                if kept:
                    self._live[user] = kept
                else:
                    self._live.pop(user, None)

    def import_events(self, path: Path, columns: EventColumns) -> EventImportReport:
        return self.events.import_csv(path, columns, self.weights, on_batch=self._apply)

    def _apply(self, records: Iterable[EventRecord]) -> list[tuple[EventRecord, int]]:
        """Add events to the live histories: (event, its sequence number) of each."""
        if self._models is None:
            return []
        applied = []
        with self._lock:
            for e in records:
                self._seq += 1
                self._live.setdefault(e.user_id, []).append(
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

    def history(self, user_id: str, models: ModelSet | None = None) -> History:
        """The snapshot's history of a customer plus the events since."""
        return self._history(user_id, models or self.models)[0]

    def _history(self, user_id: str, models: ModelSet) -> tuple[History, int]:
        """The history, and the sequence number of its latest live event (0: none)."""
        history = models.history(user_id)
        with self._lock:
            live = [e for e in self._live.get(user_id, ()) if e[0] > models.snapshot_seq]
        index = models.data.item_index
        for _, product_id, day, weight, purchase in live:
            item = index.get(product_id)
            if item is not None:  # else a product nobody knows yet: at the next retrain
                history = history.appended(item, day, weight, purchase)
        return history, (live[-1][0] if live else 0)

    # -- the catalog since training -----------------------------------------------------

    def catalog_changed(self, product_ids: Sequence[str]) -> None:
        """These products were added, changed or deleted (the change feed says so): read
        their current state; removals apply at once, the rest at the next publication
        (see :class:`~vitrine.recommend.live_catalog.LiveCatalog`)."""
        models = self._models
        if models is None or not product_ids:
            return  # the first models are read from the catalog as it is then
        self.catalog.record(read_states(self.store, product_ids, models.data.embedding_version))
        self._schedule_publish()

    def _schedule_publish(self) -> None:
        delay = self.catalog.publish_in()
        if delay <= 0:
            self.publish_catalog()
            return
        with self._publish_lock:
            timer = self._publish_timer
            if timer is None or not timer.is_alive():
                timer = threading.Timer(delay, self.publish_catalog)
                timer.daemon = True
                self._publish_timer = timer
                timer.start()

    def publish_catalog(self) -> None:
        """Serve the catalog changes recorded so far (a new catalog generation)."""
        with self._publish_lock:
            models = self._models
            if models is None or not self.catalog.pending or self._trainer.stopping:
                return
            data, generation = self.catalog.extended(models.base.data)
            extended = models.with_catalog(data, generation)
            with self._lock:
                if self._models is not None and self._models.base is models.base:
                    self._models = extended
        log.info(
            "catalog generation %d: %d products changed since training",
            generation,
            len(self.catalog.changes),
        )

    def candidates(self, rules: Rules, data: Dataset, history: History) -> np.ndarray:
        """The catalog items a list may hold: the rules' mask, less the products deleted or
        made unavailable since the catalog generation ``data`` shows."""
        valid = candidate_mask(rules, data, history)
        unlisted = list(self.catalog.unlisted)
        if unlisted:
            rows = [data.item_index.get(p, data.n_catalog) for p in unlisted]
            valid[[r for r in rows if r < data.n_catalog]] = False
        return valid

    def _now(self, models: ModelSet, history: History) -> float:
        latest = float(history.days.max()) if len(history) else 0.0
        return max(models.reference_day, latest + 1e-6)

    # -- strategies -----------------------------------------------------------------------

    def strategy(self, name: str | None, user_id: str | None = None) -> Strategy:
        name = name or self.settings.recommend_default_strategy
        strategy = self.strategies.get(name)
        if strategy is None:
            known = ", ".join(s.name for s in self.strategies.list())
            raise StrategyError(f"unknown strategy {name!r}; known: {known}")
        seen = {name}
        while strategy.variants:
            variant = strategy.variant_for(user_id or uuid.uuid4().hex)
            if variant is None or variant in seen:
                raise StrategyError(f"strategy {name!r}: variants form a cycle")
            seen.add(variant)
            chosen = self.strategies.get(variant)
            if chosen is None:
                raise StrategyError(f"strategy {name!r}: variant {variant!r} does not exist")
            strategy = chosen
        return strategy

    # -- recommendations -------------------------------------------------------------------

    def _run(
        self,
        strategy: Strategy,
        history: History,
        k: int,
        rules: Rules,
        context: str,
        produce: Callable[[Any, int, float, np.ndarray], tuple[np.ndarray, np.ndarray]] | None,
        explain: Callable[[Any, int, float], Reason] | None = None,
        models: ModelSet | None = None,
        record: dict[str, Any] | None = None,
        serve: bool = True,
    ) -> RecommendationList:
        started = time.perf_counter()
        models = models or self.models
        items, fallback = self._compute(strategy, history, k, rules, produce, explain, models)
        return self._serve(strategy, context, items, fallback, started, record, serve)

    def _compute(
        self,
        strategy: Strategy,
        history: History,
        k: int,
        rules: Rules,
        produce: Callable[[Any, int, float, np.ndarray], tuple[np.ndarray, np.ndarray]] | None,
        explain: Callable[[Any, int, float], Reason] | None,
        models: ModelSet,
    ) -> tuple[list[RecommendedItem], bool]:
        """The explained list and whether a fallback algorithm filled part of it."""
        data = models.data
        now = self._now(models, history)
        valid = self.candidates(rules, data, history)
        pool = max(4 * k, 50)
        ranked: list[int] = []
        source: dict[int, str] = {}
        explainers: dict[str, Explainer] = {}
        for position, name in enumerate([strategy.model_key, *strategy.fallback]):
            algorithm = models.algorithms.get(name)
            if algorithm is None:
                continue
            if position == 0 and produce is not None:
                items, _ = produce(algorithm, pool, now, valid)
            else:
                items, _, explainers[name] = algorithm.recommend_explained(
                    history, pool, now, valid
                )
            for item in items.tolist():
                if item not in source:
                    source[item] = name
                    ranked.append(item)
            if len(ranked) >= pool:
                break
        final = reshape(rules, data, ranked, k)
        fallback_used = any(source[i] != strategy.model_key for i in final)
        out = []
        for rank, item in enumerate(final, start=1):
            name = source[item]
            algorithm = models.algorithms[name]
            if explain is not None and name == strategy.model_key:
                reason = explain(algorithm, item, now)
            elif name in explainers:
                reason = explainers[name](item)
            else:
                reason = algorithm.explain(history, item, now)
            out.append(
                RecommendedItem(
                    data.items[item],
                    rank,
                    float(len(final) - rank + 1) / len(final),
                    name,
                    data.titles[item],
                    reason,
                )
            )
        return out, fallback_used and bool(out)

    def _serve(
        self,
        strategy: Strategy,
        context: str,
        out: list[RecommendedItem],
        fallback: bool,
        started: float,
        record: dict[str, Any] | None,
        serve: bool,
        items_json: str | None = None,
    ) -> RecommendationList:
        """A response with its own recommendation id, recorded as served."""
        result = RecommendationList(
            _recommendation_id(),
            strategy.name,
            context,
            out,
            (time.perf_counter() - started) * 1000,
            fallback=fallback,
            items_json=items_json,
        )
        if self._served is not None and serve:  # previews do not count as served
            self._served.put(
                {
                    "id": result.id,
                    "strategy": strategy.name,
                    "context": context,
                    "items": [i.product_id for i in out],
                    "created_at": datetime.now().astimezone(),
                    **(record or {}),
                }
            )
        return result

    def _rules(
        self, strategy: Strategy, filters: Sequence[str] | None, overrides: Mapping[str, Any] | None
    ) -> Rules:
        extra = dict(overrides or {})
        if filters:
            extra["filters"] = [*extra.get("filters", []), *filters]
        return strategy.rules.merged(extra)

    def recommend_user(
        self,
        user_id: str,
        k: int = 12,
        strategy: str | None = None,
        filters: Sequence[str] | None = None,
        rules: Mapping[str, Any] | None = None,
        preview: Strategy | None = None,
    ) -> RecommendationList:
        """Recommendations for a customer (unknown customers get the fallback chain).

        The customer's last list is reused while nothing it depends on changed (see
        :mod:`~vitrine.recommend.list_cache`); previews are always computed.
        """
        if preview is None:
            result = self._user_list(user_id, k, strategy, filters, rules, compute=True)
            assert isinstance(result, RecommendationList)
            return result
        models = self.models
        history, _ = self._history(user_id, models)
        result = self._run(
            preview,
            history,
            k,
            self._rules(preview, filters, rules),
            "user",
            None,
            models=models,
            record={"user_id": user_id},
            serve=False,
        )
        result.user_id = user_id
        return result

    def cached_user_list(
        self,
        user_id: str,
        k: int = 12,
        strategy: str | None = None,
        filters: Sequence[str] | None = None,
    ) -> RecommendationList | Future[CachedList] | None:
        """:meth:`recommend_user` when the list is cached or precomputed; else the list
        being computed in the background (wait for it, then ask again), or None: no
        computing here, so the server can answer it without a worker thread."""
        return self._user_list(user_id, k, strategy, filters, None, compute=False)

    def _user_list(
        self,
        user_id: str,
        k: int,
        strategy: str | None,
        filters: Sequence[str] | None,
        rules: Mapping[str, Any] | None,
        *,
        compute: bool,
        refresh: bool = False,
    ) -> RecommendationList | Future[CachedList] | None:
        """The customer's served list: cached, precomputed, or (when ``compute``) computed
        and cached. Without ``compute``: the background computation of it when one runs,
        else None (and with ``refresh`` such a computation is started)."""
        started = time.perf_counter()
        chosen = self.strategy(strategy, user_id)
        models = self.models
        history, seq = self._history(user_id, models)
        merged = self._rules(chosen, filters, rules)
        key = list_key(user_id if len(history) else COLD, chosen, k, merged)
        job = _ListJob(key, chosen, history, k, merged, models, seq)
        cached = self._cached(job)
        if cached is None or refresh:
            pending = self._pending_list(job)
            if refresh:
                if cached is None and pending is None:
                    self._compute_later(job)
                return None
            if pending is not None:
                if not compute:
                    return pending
                cached = pending.result()
            elif not compute:
                return None
            else:
                cached = self._compute_list(job)
            self.lists_computed += 1
        else:
            self.lists_served += 1
        result = self._serve(
            chosen,
            "user",
            list(cached.items),
            cached.fallback,
            started,
            {"user_id": user_id},
            True,
            cached.items_json,
        )
        result.user_id = user_id
        return result

    def _compute_list(self, job: _ListJob) -> CachedList:
        models = job.models
        with self._lock:
            self._computing += 1
        try:
            cached = cached_list(
                *self._compute(job.strategy, job.history, job.k, job.rules, None, None, models)
            )
        finally:
            with self._lock:
                self._computing -= 1
        self._lists.put(job.key, models.base, job.seq, models.catalog_generation, cached)
        return cached

    def _busy(self) -> bool:
        """Whether the cores already compute lists (or the refresher has a backlog): then
        a list of an older catalog generation is served while it is recomputed in the
        background, rather than computed in the request."""
        return self._computing >= BUSY_COMPUTING or len(self._pending) >= BUSY_BACKLOG

    def _running(self, job: _ListJob) -> Future[CachedList] | None:
        """The background computation of exactly this list, if one runs (hold the lock)."""
        found = self._pending.get(job.key)
        if found is None or found[1] is not job.models or found[2] != job.seq:
            return None
        return found[0]

    def _pending_list(self, job: _ListJob) -> Future[CachedList] | None:
        with self._lock:
            return self._running(job)

    def _compute_later(self, job: _ListJob) -> None:
        """Compute a list in the background thread (one list at a time, each once)."""
        key = job.key
        with self._lock:
            if self._running(job) is not None:
                return
            try:
                future = self._refresher.submit(self._compute_list, job)
            except RuntimeError:  # stopping
                return
            self._pending[key] = (future, job.models, job.seq)

        def done(f: Future[CachedList]) -> None:
            with self._lock:
                if self._pending.get(key, (None,))[0] is f:
                    del self._pending[key]

        future.add_done_callback(done)

    def _cached(self, job: _ListJob) -> CachedList | None:
        """The kept list of a job, when it may be served: computed with this model set
        and history, with none of its products deleted or unavailable since, and with the
        current catalog generation, or an older one while it is recomputed in the
        background: for ``recommend_catalog_refresh_s``, and longer while the cores are
        busy computing lists (:meth:`_busy`)."""
        key, models, seq = job.key, job.models, job.seq
        found = self._lists.get(key, models.base, seq)
        if found is None and seq == 0:
            precomputed = models.base.precomputed.get(key)
            found = None if precomputed is None else (0, precomputed)
        if found is None:
            return None
        generation, cached = found
        unlisted = self.catalog.unlisted
        if unlisted and any(i.product_id in unlisted for i in cached.items):
            return None
        if generation != models.catalog_generation:
            if not self.catalog.servable(generation):
                if not self._busy():
                    return None
                self.lists_stale += 1
            self._compute_later(job)
        return cached

    def list_stats(self) -> dict[str, int]:
        """Customers' lists: how many are kept, served again, and computed."""
        models = self._models
        return {
            "cached": len(self._lists),
            "precomputed": len(models.base.precomputed) if models is not None else 0,
            "served_from_cache": self.lists_served,
            "computed": self.lists_computed,
            "stale_under_load": self.lists_stale,
            "catalog_generation": models.catalog_generation if models is not None else 0,
        }

    def precompute(self, models: ModelSet, k: int = 12) -> dict[tuple[Any, ...], CachedList]:
        """The default strategy's lists for the most recently active customers (and for
        customers with no history), computed exactly as a request would, so that serving
        starts with them: ``recommend_precompute`` customers at most."""
        limit = self.settings.recommend_precompute
        if limit <= 0:
            return {}
        data = models.data
        last = np.full(data.n_users, -np.inf)
        np.maximum.at(last, data.ev_user, data.ev_day)
        recent = np.argsort(-last, kind="stable")[:limit]
        out: dict[tuple[Any, ...], CachedList] = {}
        started = time.perf_counter()
        for user_id in [COLD, *(data.users[u] for u in recent.tolist())]:
            try:
                chosen = self.strategy(None, user_id or None)
            except StrategyError:
                return out
            history = models.history(user_id) if user_id else History.empty()
            key = list_key(user_id if len(history) else COLD, chosen, k, chosen.rules)
            if key not in out:
                out[key] = cached_list(
                    *self._compute(chosen, history, k, chosen.rules, None, None, models)
                )
        log.info("precomputed %d lists in %.1f s", len(out), time.perf_counter() - started)
        return out

    def recommend_session(
        self,
        product_ids: Sequence[str],
        k: int = 12,
        strategy: str | None = None,
        filters: Sequence[str] | None = None,
        session_id: str | None = None,
        preview: Strategy | None = None,
    ) -> RecommendationList:
        """Recommendations for an anonymous session that looked at these products."""
        models = self.models
        chosen = preview or self.strategy(strategy, session_id)
        history = models.data.history_of(product_ids, models.reference_day, 2.0)
        result = self._run(
            chosen,
            history,
            k,
            self._rules(chosen, filters, None),
            "session",
            None,
            models=models,
            record={"session_id": session_id},
            serve=preview is None,
        )
        result.extra["unknown_products"] = [
            p for p in product_ids if p not in models.data.item_index
        ]
        return result

    def _item(self, models: ModelSet, product_id: str) -> int:
        data = models.data
        item = data.item_index.get(product_id)
        if (
            item is None
            or item >= data.n_catalog
            or not data.listed[item]
            or self.catalog.deleted(product_id)
        ):
            raise UnknownItemError(product_id)
        return item

    def similar(
        self,
        product_id: str,
        k: int = 12,
        strategy: str | None = None,
        weights: Mapping[str, float] | None = None,
        filters: Sequence[str] | None = None,
        preview: Strategy | None = None,
    ) -> RecommendationList:
        """Visually similar products, by embedding or by a strategy's aspect weights."""
        models = self.models
        item = self._item(models, product_id)
        chosen = preview or self.strategy(strategy or "similar")
        if weights is not None:
            chosen = Strategy.from_json(chosen.name, {**chosen.to_json(), "weights": weights})
        if chosen.algorithm != "similar":
            config = {**chosen.to_json(), "algorithm": "similar", "params": {}}
            chosen = Strategy.from_json(chosen.name, config)
        history = models.data.history_of([product_id], models.reference_day)

        def produce(alg: Any, pool: int, now: float, valid: np.ndarray) -> Any:
            assert isinstance(alg, VisualSimilar)
            valid = valid.copy()
            valid[item] = False
            return alg.similar_items(item, pool, now, valid, weights=chosen.weights or None)

        def explain(alg: Any, other: int, now: float) -> Reason:
            from vitrine.recommend.visual import looks_like

            reason = looks_like(models.data, item, other, "viewed", alg.title(item))
            reason["text"] = reason["text"].replace(" you viewed", "")
            return reason

        rules = self._rules(chosen, filters, None)
        return self._run(
            chosen, history, k, rules, "product", produce, explain, models, serve=preview is None
        )

    def complementary(
        self,
        product_id: str,
        k: int = 12,
        filters: Sequence[str] | None = None,
        strategy: str | None = None,
        preview: Strategy | None = None,
    ) -> RecommendationList:
        """Products bought together with this one, across categories ("complete the look")."""
        models = self.models
        item = self._item(models, product_id)
        chosen = preview or self.strategy(strategy or "complementary")
        history = models.data.history_of([product_id], models.reference_day)
        code = int(models.data.category[item])
        overrides: dict[str, Any] = {}
        if code >= 0:  # complements are of other categories, whatever the fallback finds
            overrides["exclude_categories"] = [
                *chosen.rules.exclude_categories,
                models.data.categories[code],
            ]

        def produce(alg: Any, pool: int, now: float, valid: np.ndarray) -> Any:
            return alg.similar_items(item, pool, now, valid)

        rules = self._rules(chosen, filters, overrides)
        return self._run(
            chosen, history, k, rules, "product", produce, None, models, serve=preview is None
        )

    def trending(self, k: int = 12, category: str | None = None) -> RecommendationList:
        models = self.models
        chosen = self.strategy("trending")
        if category is not None and category not in models.data.categories:
            raise UnknownItemError(f"category {category!r}")
        overrides = {"include_categories": [category]} if category else None
        return self._run(
            chosen,
            History.empty(),
            k,
            self._rules(chosen, None, overrides),
            "trending",
            None,
            models=models,
        )

    # -- batch ------------------------------------------------------------------------------

    def recommend_many(
        self,
        user_ids: Sequence[str],
        k: int = 12,
        strategy: str | None = None,
        workers: int | None = None,
    ) -> Iterator[tuple[str, list[str]]]:
        """Product ids for many customers, in order (no explanations, not recorded).

        Strategies are resolved once; customers with no history share one list per
        strategy; large batches are split over ``workers`` forked processes (default: one
        per core), which share the models copy-on-write.
        """
        models = self.models
        base = self.strategy(strategy, "any")
        top = self.strategies.get(strategy or self.settings.recommend_default_strategy)
        resolved: dict[str, Strategy] = {}
        for user_id in user_ids:
            if top is not None and top.variants:
                name = self.strategy(strategy, user_id).name
            else:
                name = base.name
            if name not in resolved:
                resolved[name] = self.strategy(name, user_id)
        if top is not None and top.variants:
            plan = [(u, self.strategy(strategy, u).name) for u in user_ids]
        else:
            plan = [(u, base.name) for u in user_ids]
        job = _BatchJob(self, models, resolved, k)
        workers = workers if workers is not None else (os.cpu_count() or 1)
        if workers <= 1 or len(plan) < 2_000:
            yield from job.run(plan)
            return
        chunks = [plan[i : i + 500] for i in range(0, len(plan), 500)]
        global _BATCH
        _BATCH = job
        try:
            with multiprocessing.get_context("fork").Pool(workers) as pool:
                for rows in pool.imap(_run_batch_chunk, chunks):
                    yield from rows
        finally:
            _BATCH = None

    # -- evaluation and analytics --------------------------------------------------------

    def evaluate(
        self,
        split: datetime,
        k: int = 12,
        algorithms: Sequence[str] | None = None,
        test_days: float | None = None,
        progress: Callable[[str], None] | None = None,
        whole_catalog: bool = False,
    ) -> dict[str, Any]:
        """Offline evaluation on the shop's own log; the result is stored for the admin UI."""
        from vitrine.recommend.evaluate import default_algorithms, evaluate

        data = load_dataset(
            self.store,
            self.events,
            self.weights,
            category_field=self.settings.recommend_category_field,
        )
        chosen = default_algorithms()
        if algorithms:
            unknown = sorted(set(algorithms) - set(chosen))
            if unknown:
                raise ValueError(f"unknown algorithms {unknown}; known: {', '.join(chosen)}")
            chosen = {n: f for n, f in chosen.items() if n in algorithms or n == "popularity_4w"}
        results, facts = evaluate(
            data, to_days(split), k, chosen, test_days, progress, whole_catalog
        )
        table = [r.to_json() for r in results]
        params = {"test_days": test_days, "whole_catalog": whole_catalog, **facts}
        with self.engine.begin() as conn:
            run_id = conn.execute(
                RecommendationEvaluation.__table__.insert().values(
                    split_date=split,
                    k=k,
                    params=params,
                    results=table,
                    created_at=datetime.now().astimezone(),
                )
            ).inserted_primary_key[0]
        return {
            "id": run_id,
            "split_date": split.isoformat(),
            "k": k,
            "params": params,
            "results": table,
            "_results": results,
        }

    def evaluations(self, limit: int = 20) -> list[dict[str, Any]]:
        """The latest stored evaluation runs, newest first."""
        table = RecommendationEvaluation.__table__
        with self.engine.connect() as conn:
            rows = conn.execute(table.select().order_by(table.c.id.desc()).limit(limit)).all()
        return [dict(r._mapping) for r in rows]

    def strategy_stats(
        self, since: datetime | None = None, until: datetime | None = None
    ) -> list[dict[str, Any]]:
        """Click-through and conversion per strategy, from attributed events."""
        if self._served is not None:  # make what was just served count
            self._served.wait_written()
        return self.events.strategy_stats(since, until)


def _lower_priority() -> None:
    os.nice(10)


def _train_and_save(settings: Settings) -> str:
    """In a child process: train the model set from the database and save it; its
    fingerprint says which saved set to load."""
    from vitrine.catalog.database import make_engine

    engine = make_engine(settings.resolved_database_url)
    try:
        service = RecommendationService(settings, engine, CatalogStore(engine))
        return service.train().fingerprint
    finally:
        engine.dispose()
