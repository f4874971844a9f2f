"""The recommendation service: events in, explained recommendations out, in real time.

What the API, the command line and the admin UI call. It keeps the current
:class:`~vitrine.recommend.models.ModelSet` (swapped atomically when a retrain in the
background finishes), and every event that arrived since that snapshot: a customer's
history is the snapshot's plus those, so an event changes the customer's next
recommendations at once, without retraining. Strategies (named configurations in the
database) choose the algorithm, aspect weights, business rules and fallback chain;
every response has a recommendation id, and served lists are recorded so that clicks
and purchases sent with that id give click-through and conversion per strategy.

:class:`RecommendationService` is a facade over parts with one purpose each:

- :mod:`~vitrine.recommend.lifecycle`: the model set, its training, swapping and
  background retraining, and the live catalog (``lifecycle``);
- :mod:`~vitrine.recommend.live_history`: the events since the snapshot (``live``);
- :mod:`~vitrine.recommend.intake`: events in (``intake``);
- :mod:`~vitrine.recommend.compute`: strategies resolved, one list computed and answered
  (``computer``), recorded by :mod:`~vitrine.recommend.served_log`;
- :mod:`~vitrine.recommend.serving`: customers' lists, kept and refreshed (``user_lists``);
- :mod:`~vitrine.recommend.contexts`: session, similar, complementary and trending lists;
- :mod:`~vitrine.recommend.batch`: many customers at once on a process pool;
- :mod:`~vitrine.recommend.evaluation_runs`: offline evaluations;
- :mod:`~vitrine.recommend.responses`: what it answers, and its errors.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import threadpoolctl

from vitrine.catalog.store import CatalogStore
from vitrine.config import Settings
from vitrine.recommend.batch import BatchRecommender
from vitrine.recommend.compute import ListComputer
from vitrine.recommend.contexts import ContextLists
from vitrine.recommend.data import Dataset, History
from vitrine.recommend.evaluation_runs import EvaluationRuns
from vitrine.recommend.event_store import EventColumns, EventImportReport, EventStore
from vitrine.recommend.events import EventRecord, event_weights
from vitrine.recommend.intake import EventIntake
from vitrine.recommend.lifecycle import ModelLifecycle
from vitrine.recommend.list_cache import CachedList, ListCache
from vitrine.recommend.live_catalog import LiveCatalog
from vitrine.recommend.live_history import LiveHistories
from vitrine.recommend.models import ModelSet
from vitrine.recommend.responses import (
    NotReadyError,
    RecommendationList,
    RecommendedItem,
    UnknownItemError,
)
from vitrine.recommend.rules import Rules
from vitrine.recommend.served_log import ServedWriter
from vitrine.recommend.serving import UserLists
from vitrine.recommend.strategies import Strategy, StrategyStore
from vitrine.webhooks.events import RECOMMENDATIONS_RETRAINED, Publish

__all__ = [
    "NotReadyError",
    "RecommendationList",
    "RecommendationService",
    "RecommendedItem",
    "UnknownItemError",
]


class RecommendationService:
    """Events in, explained recommendations out: one per process, composing the parts
    above; its constructor reads nothing but the strategies (:meth:`start` loads or
    trains the models in the background, :meth:`load_or_train` in the caller)."""

    def __init__(
        self,
        settings: Settings,
        engine: Any,
        store: CatalogStore,
        publish: Publish | None = None,
    ) -> None:
        # BLAS threads fight each other under concurrent requests and other load: one
        # thread per call measured 5-10x faster on the 2-core machine (see README).
        threadpoolctl.threadpool_limits(1, "blas")
        self.settings = settings
        self.engine = engine
        self.store = store
        self._publish = publish  # announces each newly trained model set (webhooks)
        self.events = EventStore(engine)
        self.weights = event_weights(settings.recommend_event_weights)
        self.strategies = StrategyStore(engine)
        self.strategies.ensure_builtins()
        self.live = LiveHistories(self.weights)
        lists = ListCache(settings.recommend_cache_size)
        self.lifecycle = ModelLifecycle(
            settings,
            store,
            self.events,
            self.weights,
            self.strategies,
            self.live,
            precompute=self.precompute,
            forget_lists=lists.clear,
            train_in_child=_train_and_save,
            on_retrained=self._retrained,
        )
        self.computer = ListComputer(settings, self.strategies, self.lifecycle)
        self.user_lists = UserLists(settings, self.computer, self.lifecycle, self.live, lists)
        self.contexts = ContextLists(self.computer, self.lifecycle)
        self.intake = EventIntake(
            settings, self.events, self.weights, self.live, self.lifecycle, self.user_lists
        )
        self.batch = BatchRecommender(self.computer, self.lifecycle, self.live)
        self.evaluation_runs = EvaluationRuns(settings, engine, store, self.events, self.weights)

    # -- models ---------------------------------------------------------------------------

    @property
    def models(self) -> ModelSet:
        """The current model set (NotReadyError until the first is loaded or trained)."""
        return self.lifecycle.models

    @property
    def ready(self) -> bool:
        return self.lifecycle.ready

    @property
    def model_dir(self) -> Path:
        return self.lifecycle.model_dir

    @property
    def catalog(self) -> LiveCatalog:
        return self.lifecycle.catalog

    @property
    def last_error(self) -> str | None:
        """Why the last background training failed (None once one succeeds)."""
        return self.lifecycle.last_error

    def fingerprint(self) -> str:
        return self.lifecycle.fingerprint()

    def model_specs(self) -> dict[str, tuple[str, dict[str, Any]]]:
        return self.lifecycle.model_specs()

    def train(self) -> ModelSet:
        return self.lifecycle.train()

    def load_or_train(self, *, separate_process: bool = False) -> ModelSet:
        return self.lifecycle.load_or_train(separate_process=separate_process)

    def train_separately(self) -> ModelSet:
        return self.lifecycle.train_separately()

    def request_retrain(self) -> None:
        self.lifecycle.request_retrain()

    def start(self) -> None:
        """Load or train in the background, then retrain on schedule or on demand; record
        served lists."""
        if self.lifecycle.running:
            return
        self.computer.served = ServedWriter(self.events)
        self.lifecycle.start()

    def stop(self) -> None:
        self.lifecycle.stop(wait=False)  # no new round; the one in progress is joined below
        self.user_lists.stop()
        self.lifecycle.stop()
        if self.computer.served is not None:
            self.computer.served.flush()

    def catalog_changed(self, product_ids: Sequence[str]) -> None:
        self.lifecycle.catalog_changed(product_ids)

    def publish_catalog(self) -> None:
        self.lifecycle.publish_catalog()

    # -- events ---------------------------------------------------------------------------

    def add_events(self, raw: Sequence[Mapping[str, Any]]) -> tuple[list[EventRecord], int]:
        """Validate (all or nothing: a bad event raises EventError naming its position),
        store, and apply to the customers' live histories. Returns (new events, duplicates)."""
        return self.intake.add(raw)

    async def post_events(
        self, raw: Sequence[Mapping[str, Any]], *, form_checked: bool = False
    ) -> tuple[list[EventRecord], int]:
        """:meth:`add_events` from the server's event loop (see :meth:`EventIntake.post`)."""
        return await self.intake.post(raw, form_checked=form_checked)

    def import_events(self, path: Path, columns: EventColumns) -> EventImportReport:
        return self.intake.import_events(path, columns)

    def history(self, user_id: str, models: ModelSet | None = None) -> History:
        """The snapshot's history of a customer plus the events since."""
        return self.live.history(user_id, models or self.models)[0]

    # -- recommendations ------------------------------------------------------------------

    def strategy(self, name: str | None, user_id: str | None = None) -> Strategy:
        return self.computer.strategy(name, user_id)

    def candidates(self, rules: Rules, data: Dataset, history: History) -> np.ndarray:
        return self.computer.candidates(rules, data, history)

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
        if preview is not None:
            return self.user_lists.preview(user_id, k, preview, filters, rules)
        return self.user_lists.recommend(user_id, k, strategy, filters, rules)

    def cached_user_list(
        self,
        user_id: str,
        k: int = 12,
        strategy: str | None = None,
        filters: Sequence[str] | None = None,
    ) -> RecommendationList | None:
        """:meth:`recommend_user` when the list is kept or precomputed, else None: no
        computing here, so the server can answer it without a worker thread."""
        return self.user_lists.cached(user_id, k, strategy, filters)

    def user_list_being_computed(
        self,
        user_id: str,
        k: int = 12,
        strategy: str | None = None,
        filters: Sequence[str] | None = None,
    ) -> Future[CachedList] | None:
        """The background computation of the customer's list (after an event), if one
        runs: wait for it, then ask :meth:`cached_user_list` again."""
        return self.user_lists.being_computed(user_id, k, strategy, filters)

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
        return self.contexts.session(product_ids, k, strategy, filters, session_id, preview)

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
        return self.contexts.similar(product_id, k, strategy, weights, filters, preview)

    def complementary(
        self,
        product_id: str,
        k: int = 12,
        filters: Sequence[str] | None = None,
        strategy: str | None = None,
        preview: Strategy | None = None,
    ) -> RecommendationList:
        """Products bought together with this one, across categories ("complete the look")."""
        return self.contexts.complementary(product_id, k, filters, strategy, preview)

    def trending(self, k: int = 12, category: str | None = None) -> RecommendationList:
        return self.contexts.trending(k, category)

    def recommend_many(
        self,
        user_ids: Sequence[str],
        k: int = 12,
        strategy: str | None = None,
        workers: int | None = None,
    ) -> Iterator[tuple[str, list[str]]]:
        """Product ids for many customers, in order (see :mod:`~vitrine.recommend.batch`)."""
        return self.batch.recommend_many(user_ids, k, strategy, workers)

    def _retrained(self, models: ModelSet) -> None:
        """Announce a newly trained set; its event id comes from the training data, so
        that several processes training on the same data announce it once."""
        if self._publish is None:
            return
        data = {
            "customers": int(models.data.n_users),
            "events": len(models.data.ev_day),
            "products": int(models.data.n_catalog),
            "algorithms": sorted(models.algorithms),
            "train_seconds": {k: round(float(v), 2) for k, v in models.train_seconds.items()},
        }
        digest = hashlib.sha256(models.fingerprint.encode()).hexdigest()[:40]
        self._publish(RECOMMENDATIONS_RETRAINED, data, f"recommendations-{digest}")

    # -- kept lists -----------------------------------------------------------------------

    def precompute(self, models: ModelSet, k: int = 12) -> dict[tuple[Any, ...], CachedList]:
        return self.user_lists.precompute(models, k)

    def list_stats(self) -> dict[str, int]:
        """Customers' lists: how many are kept, served again, and computed."""
        return self.user_lists.stats()

    @property
    def lists_served(self) -> int:
        return self.user_lists.served

    @property
    def lists_computed(self) -> int:
        return self.user_lists.computed

    @property
    def lists_stale(self) -> int:
        return self.user_lists.stale

    # -- evaluation and analytics ---------------------------------------------------------

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
        return self.evaluation_runs.evaluate(
            split, k, algorithms, test_days, progress, whole_catalog
        )

    def evaluations(self, limit: int = 20) -> list[dict[str, Any]]:
        """The latest stored evaluation runs, newest first."""
        return self.evaluation_runs.latest(limit)

    def strategy_stats(
        self, since: datetime | None = None, until: datetime | None = None
    ) -> list[dict[str, Any]]:
        """Click-through and conversion per strategy, from attributed events."""
        if self.computer.served is not None:  # make what was just served count
            self.computer.served.wait_written()
        return self.events.strategy_stats(since, until)


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
