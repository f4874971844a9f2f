"""The recommendation models' lifecycle: trained, saved, loaded, swapped, kept current.

The service answers from one :class:`~vitrine.recommend.models.ModelSet` at a time. It is
loaded from disk when the saved one matches the data (its fingerprint: the events, the
catalog, the event weights and the ALS factors), else trained: at start and on request
in a child process (training is mostly Python for minutes on a large catalog and would
starve the server's event loop), on schedule when the data changed. A trained set is
swapped in atomically. Catalog changes since training are followed by
:class:`~vitrine.recommend.live_catalog.LiveCatalog` and published as new catalog
generations over the same trained set, without retraining.
"""

from __future__ import annotations

import gc
import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from vitrine.catalog.store import CatalogStore
from vitrine.config import Settings
from vitrine.recommend.als_factors import als_factors_stamp, with_als_factors
from vitrine.recommend.child import ChildRun, ChildStopped
from vitrine.recommend.event_store import EventStore
from vitrine.recommend.list_cache import CachedList
from vitrine.recommend.live_catalog import LiveCatalog, read_states
from vitrine.recommend.live_history import LiveHistories
from vitrine.recommend.loading import load_dataset
from vitrine.recommend.models import ModelSet
from vitrine.recommend.responses import NotReadyError
from vitrine.recommend.strategies import StrategyStore
from vitrine.worker import BackgroundWorker

log = logging.getLogger(__name__)

ALWAYS_TRAINED = ("popularity", "trending", "similar", "complementary", "visual_profile")


class ModelLifecycle:
    """The current model set (``current``; None until the first is loaded or trained),
    its training and swapping, the background trainer, and the live catalog.

    ``precompute`` gives a newly trained set the lists to serve first;
    ``forget_lists`` drops the lists kept for the previous set at a swap.
    """

    def __init__(
        self,
        settings: Settings,
        store: CatalogStore,
        events: EventStore,
        weights: Mapping[str, float],
        strategies: StrategyStore,
        live: LiveHistories,
        *,
        precompute: Callable[[ModelSet], dict[tuple[Any, ...], CachedList]],
        forget_lists: Callable[[], None],
        train_in_child: Callable[[Settings], str],
        on_retrained: Callable[[ModelSet], None] | None = None,
    ) -> None:
        # A module-level function (picklable): trains and saves in a child process.
        self._train_in_child = train_in_child
        self.settings = settings
        self.store = store
        self.events = events
        self.weights = weights
        self.strategies = strategies
        self.live = live
        self.precompute = precompute
        self.forget_lists = forget_lists
        self.on_retrained = on_retrained  # called with each newly trained set (webhooks)
        self.model_dir: Path = settings.home / "recommend"
        self.current: ModelSet | None = None
        self.catalog = LiveCatalog(settings.recommend_catalog_refresh_s)
        self.last_error: str | None = None
        self._lock = threading.Lock()  # swapping ``current``
        self._train_lock = threading.Lock()
        period = settings.recommend_retrain_minutes * 60
        self._trainer = BackgroundWorker(
            "recommend-trainer", self._train_round, interval=period or None, join_timeout=5
        )
        self._trained_once = False
        self._retrain_requested = False
        self._publish_lock = threading.Lock()
        self._publish_timer: threading.Timer | None = None
        self._child: ChildRun | None = None  # the training child process while it runs

    @property
    def models(self) -> ModelSet:
        models = self.current
        if models is None:
            raise NotReadyError("the recommendation models are still being trained")
        return models

    @property
    def ready(self) -> bool:
        return self.current is not None

    # -- training and swapping ------------------------------------------------------------

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
            if s.splits:  # a paused A/B test serves its own configuration
                continue
            specs.setdefault(s.model_key, (s.algorithm, s.params))
            for name in s.fallback:
                specs.setdefault(name, (name, {}))
        path = self.settings.recommend_als_factors
        sample = self.settings.recommend_hybrid_customers_per_window
        for key, (algorithm, params) in specs.items():
            if algorithm == "hybrid":  # a strategy's own parameter wins
                specs[key] = (algorithm, {"customers_per_window": sample, **params})
        return {k: with_als_factors(a, p, path) for k, (a, p) in specs.items()}

    def train(self) -> ModelSet:
        """Build and fit a new model set from the database, save it and swap it in."""
        with self._train_lock:
            seq, counter = self.live.seq, self.catalog.counter
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
        self._trained(models)
        return models

    def _swap(self, models: ModelSet, catalog_counter: int | None = None) -> None:
        """Serve a newly trained set, with the catalog changes it was trained without
        (all those since this process started following the catalog, when unknown)."""
        self.catalog.rebase(catalog_counter if catalog_counter is not None else -1)
        if self.catalog.changes:
            data, generation = self.catalog.extended(models.data)
            models = models.with_catalog(data, generation)
        with self._lock:
            self.current = models
            self.forget_lists()  # entries of the old set would miss anyway: free them
            self.live.rebase(models.snapshot_seq)
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
        seq, counter = self.live.seq, self.catalog.counter
        child = ChildRun(self._train_in_child, self.settings)
        self._child = child
        try:
            if self._trainer.stopping:
                raise ChildStopped("the service is stopping")
            fingerprint = child.result()
        finally:
            self._child = None
            child.stop()
        models = ModelSet.load(self.model_dir, fingerprint)
        if models is None:
            raise RuntimeError(f"the trained models were not found in {self.model_dir}")
        models.snapshot_seq = seq
        self._swap(models, counter)
        self._trained(models)
        return models

    def _trained(self, models: ModelSet) -> None:
        if self.on_retrained is not None:
            self.on_retrained(models)

    # -- the background trainer -----------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._trainer.running

    def start(self) -> None:
        """Load or train in the background, then retrain on schedule or on demand."""
        self._trainer.start()

    def request_retrain(self) -> None:
        self._retrain_requested = True
        self._trainer.wake()

    def stop(self, *, wait: bool = True) -> None:
        """No new training round and no catalog publication; the training child process,
        if one runs, is terminated; with ``wait``, join the round in progress."""
        self._trainer.stop(timeout=0)
        child = self._child
        if child is not None:
            child.stop()
        if self._publish_timer is not None:
            self._publish_timer.cancel()
        if wait:
            self._trainer.stop()

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
        except ChildStopped:
            log.info("recommendation training stopped with the service")
        except Exception as exc:
            log.exception("recommendation %s failed", "training" if first else "retraining")
            self.last_error = str(exc)

    # -- the catalog since training -------------------------------------------------------

    def catalog_changed(self, product_ids: Sequence[str]) -> None:
        """These products were added, changed or deleted (the change feed says so): read
        their current state; removals apply at once, the rest at the next publication
        (see :class:`~vitrine.recommend.live_catalog.LiveCatalog`)."""
        models = self.current
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
            models = self.current
            if models is None or not self.catalog.pending or self._trainer.stopping:
                return
            data, generation = self.catalog.extended(models.base.data)
            extended = models.with_catalog(data, generation)
            with self._lock:
                if self.current is not None and self.current.base is models.base:
                    self.current = extended
        log.info(
            "catalog generation %d: %d products changed since training",
            generation,
            len(self.catalog.changes),
        )
