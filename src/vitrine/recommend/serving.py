"""Customers' lists: served from the list cache, or computed and kept.

A customer's list is reused while nothing it depends on changed (see
:mod:`~vitrine.recommend.list_cache`); the lists of the most recently active customers
are computed at training time (:meth:`UserLists.precompute`). After an event the
customer's new list is computed in the background (:meth:`UserLists.refresh`), so that
the next request finds it ready or being computed (and waits for it). After a catalog
change a kept list of the previous catalog generation is served for a while and
recomputed in the background.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

from vitrine.config import Settings
from vitrine.recommend.base import Explainer
from vitrine.recommend.compute import Explain, ListComputer, Produce, list_span, traced
from vitrine.recommend.data import History
from vitrine.recommend.hybrid import Hybrid
from vitrine.recommend.lifecycle import ModelLifecycle
from vitrine.recommend.list_cache import COLD, CachedList, ListCache, list_key
from vitrine.recommend.live_history import LiveHistories
from vitrine.recommend.models import ModelSet
from vitrine.recommend.responses import RecommendationList, cached_list
from vitrine.recommend.rules import Rules
from vitrine.recommend.strategies import Strategy, StrategyError

log = logging.getLogger(__name__)

# A catalog change makes every kept list of the previous generation stale after
# `recommend_catalog_refresh_s`. Computing them all in requests at once stalled serving
# (H&M load bench, new products at 0.5/s while serving 200 lists/s: p99 9.7 s, half the
# requests answered): while this many lists are being computed, or this many wait for
# the background refresher, a stale list (never holding a deleted or unavailable product)
# is served and recomputed in the background instead.
BUSY_COMPUTING = max(2, os.cpu_count() or 2)
BUSY_BACKLOG = 4

# Lists precomputed together: the hybrid's ranker runs once per block.
PRECOMPUTE_BLOCK = 256


@dataclass(frozen=True)
class ListJob:
    """Computing one customer's list: its cache key and what it is computed from."""

    key: tuple[Any, ...]
    strategy: Strategy
    history: History
    k: int
    rules: Rules
    models: ModelSet
    seq: int  # the customer's latest live event (0: none since the snapshot)


class UserLists:
    """Serves customers' lists from the list cache; computes, keeps and refreshes them."""

    def __init__(
        self,
        settings: Settings,
        computer: ListComputer,
        lifecycle: ModelLifecycle,
        live: LiveHistories,
        lists: ListCache,
    ) -> None:
        self.settings = settings
        self.computer = computer
        self.lifecycle = lifecycle
        self.live = live
        self.lists = lists
        self.served = 0  # from the cache or precomputed
        self.computed = 0
        self.stale = 0  # served from an older catalog generation under load
        # lists being computed in the background (after an event, or for a newer catalog
        # generation): key -> (future, model set, seq); a request for one waits for it
        self.pending: dict[tuple[Any, ...], tuple[Future[CachedList], ModelSet, int]] = {}
        self._refresher = ThreadPoolExecutor(1, thread_name_prefix="list-refresh")
        self._computing = 0  # lists being computed right now, in requests or the refresher
        self._lock = threading.Lock()  # pending and _computing

    # -- a customer's list ----------------------------------------------------------------

    def job(
        self,
        user_id: str,
        k: int,
        strategy: str | None,
        filters: Sequence[str] | None,
        rules: Mapping[str, Any] | None,
    ) -> ListJob:
        """The customer's list as it would be computed now."""
        chosen = self.computer.strategy(strategy, user_id)
        models = self.lifecycle.models
        history, seq = self.live.history(user_id, models)
        merged = self.computer.rules(chosen, filters, rules)
        key = list_key(user_id if len(history) else COLD, chosen, k, merged)
        return ListJob(key, chosen, history, k, merged, models, seq)

    def recommend(
        self,
        user_id: str,
        k: int,
        strategy: str | None,
        filters: Sequence[str] | None,
        rules: Mapping[str, Any] | None,
    ) -> RecommendationList:
        """The customer's list: kept, precomputed, being computed (waited for), or
        computed here and kept."""
        started = time.perf_counter()
        with list_span("user", k) as span:
            job = self.job(user_id, k, strategy, filters, rules)
            cached = self.servable_cached(job)
            hit = cached is not None
            if cached is None:
                running = self.refresh_of(job)
                cached = running.result() if running is not None else self.compute_and_cache(job)
                self.computed += 1
            else:
                self.served += 1
            return traced(span, self._answer(job, cached, started, user_id), hit)

    def cached(
        self, user_id: str, k: int, strategy: str | None, filters: Sequence[str] | None
    ) -> RecommendationList | None:
        """The customer's list when it is kept or precomputed (nothing computed here)."""
        started = time.perf_counter()
        with list_span("user", k) as span:
            job = self.job(user_id, k, strategy, filters, None)
            cached = self.servable_cached(job)
            if cached is None:
                span.set_attribute("vitrine.recommend.cache_hit", False)
                return None
            self.served += 1
            return traced(span, self._answer(job, cached, started, user_id), True)

    def being_computed(
        self, user_id: str, k: int, strategy: str | None, filters: Sequence[str] | None
    ) -> Future[CachedList] | None:
        """The background computation of the customer's list, if one runs."""
        return self.refresh_of(self.job(user_id, k, strategy, filters, None))

    def refresh(self, user_id: str, k: int) -> None:
        """Start computing the customer's default list in the background, unless it is
        kept or being computed already."""
        job = self.job(user_id, k, None, None, None)
        if self.servable_cached(job) is None and self.refresh_of(job) is None:
            self.refresh_in_background(job)

    def preview(
        self,
        user_id: str,
        k: int,
        preview: Strategy,
        filters: Sequence[str] | None,
        rules: Mapping[str, Any] | None,
    ) -> RecommendationList:
        """What an unsaved strategy would show the customer: computed, never kept, not
        recorded as served."""
        models = self.lifecycle.models
        history, _ = self.live.history(user_id, models)
        result = self.computer.compute_and_respond(
            preview,
            history,
            k,
            self.computer.rules(preview, filters, rules),
            "user",
            None,
            models=models,
            record={"user_id": user_id},
            serve=False,
        )
        result.user_id = user_id
        return result

    def _answer(
        self, job: ListJob, cached: CachedList, started: float, user_id: str
    ) -> RecommendationList:
        result = self.computer.respond(
            job.strategy,
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

    # -- the list cache and the background refresher ----------------------------------------

    def compute_and_cache(self, job: ListJob) -> CachedList:
        """Compute a list (in the calling thread) and keep it."""
        models = job.models
        with self._lock:
            self._computing += 1
        try:
            items, fallback = self.computer.compute_items(
                job.strategy, job.history, job.k, job.rules, None, None, models
            )
            cached = cached_list(items, fallback)
        finally:
            with self._lock:
                self._computing -= 1
        self.lists.put(job.key, models.base, job.seq, models.catalog_generation, cached)
        return cached

    def busy(self) -> bool:
        """Whether the cores already compute lists (or the refresher has a backlog): then
        a list of an older catalog generation is served while it is recomputed in the
        background, rather than computed in the request."""
        return self._computing >= BUSY_COMPUTING or len(self.pending) >= BUSY_BACKLOG

    def _running(self, job: ListJob) -> Future[CachedList] | None:
        """The background computation of exactly this list, if one runs (hold the lock)."""
        found = self.pending.get(job.key)
        if found is None or found[1] is not job.models or found[2] != job.seq:
            return None
        return found[0]

    def refresh_of(self, job: ListJob) -> Future[CachedList] | None:
        """The background computation of exactly this list, if one runs."""
        with self._lock:
            return self._running(job)

    def refresh_in_background(self, job: ListJob) -> None:
        """Compute a list in the background thread (one list at a time, each once)."""
        key = job.key
        with self._lock:
            if self._running(job) is not None:
                return
            try:
                future = self._refresher.submit(self.compute_and_cache, job)
            except RuntimeError:  # stopping
                return
            self.pending[key] = (future, job.models, job.seq)

        def done(f: Future[CachedList]) -> None:
            with self._lock:
                if self.pending.get(key, (None,))[0] is f:
                    del self.pending[key]

        future.add_done_callback(done)

    def servable_cached(self, job: ListJob) -> CachedList | None:
        """The kept list of a job, when it may be served: computed with this model set
        and history, with none of its products deleted or unavailable since, and with the
        current catalog generation, or an older one while it is recomputed in the
        background: for ``recommend_catalog_refresh_s``, and longer while the cores are
        busy computing lists (:meth:`busy`)."""
        key, models, seq = job.key, job.models, job.seq
        found = self.lists.get(key, models.base, seq)
        if found is None and seq == 0:
            precomputed = models.base.precomputed.get(key)
            found = None if precomputed is None else (0, precomputed)
        if found is None:
            return None
        generation, cached = found
        catalog = self.lifecycle.catalog
        unlisted = catalog.unlisted
        if unlisted and any(i.product_id in unlisted for i in cached.items):
            return None
        if generation != models.catalog_generation:
            if not catalog.servable(generation):
                if not self.busy():
                    return None
                self.stale += 1
            self.refresh_in_background(job)
        return cached

    def stop(self) -> None:
        self._refresher.shutdown(wait=False, cancel_futures=True)

    # -- statistics and precomputing --------------------------------------------------------

    def stats(self) -> dict[str, int]:
        """Customers' lists: how many are kept, served again, and computed."""
        models = self.lifecycle.current
        return {
            "cached": len(self.lists),
            "precomputed": len(models.base.precomputed) if models is not None else 0,
            "served_from_cache": self.served,
            "computed": self.computed,
            "stale_under_load": self.stale,
            "catalog_generation": models.catalog_generation if models is not None else 0,
        }

    def _hybrid_ranked(
        self,
        block: Mapping[tuple[Any, ...], tuple[Strategy, History]],
        k: int,
        models: ModelSet,
    ) -> dict[tuple[Any, ...], tuple[np.ndarray, np.ndarray, Explainer]]:
        """The hybrid's ranking of each list of ``block`` whose strategy starts with a
        hybrid, all ranked at once (:meth:`Hybrid.recommend_explained_many`), with the
        pool, day and products :meth:`ListComputer.compute_items` would use."""
        computer, data = self.computer, models.data
        keys: dict[str, list[tuple[Any, ...]]] = {}
        for key, (chosen, history) in block.items():
            if len(history) and isinstance(models.algorithms.get(chosen.model_key), Hybrid):
                keys.setdefault(chosen.model_key, []).append(key)
        out = {}
        for model_key, group in keys.items():
            hybrid = models.algorithms[model_key]
            assert isinstance(hybrid, Hybrid)
            requests = []
            for key in group:
                chosen, history = block[key]
                valid = computer.candidates(chosen.rules, data, history)
                requests.append((history, computer.now(models, history), valid))
            ranked = hybrid.recommend_explained_many(requests, max(4 * k, 50))
            out.update(zip(group, ranked, strict=True))
        return out

    def precompute(self, models: ModelSet, k: int = 12) -> dict[tuple[Any, ...], CachedList]:
        """The default strategy's lists for the most recently active customers (and for
        customers with no history), computed exactly as a request would, so that serving
        starts with them: ``recommend_precompute`` customers at most, for at most
        ``recommend_precompute_seconds`` (the others' lists are computed when asked)."""
        limit = self.settings.recommend_precompute
        if limit <= 0:
            return {}
        data = models.data
        last = np.full(data.n_users, -np.inf)
        np.maximum.at(last, data.ev_user, data.ev_day)
        recent = np.argsort(-last, kind="stable")[:limit]
        out: dict[tuple[Any, ...], CachedList] = {}
        started = time.perf_counter()
        computer = self.computer
        users = [COLD, *(data.users[u] for u in recent.tolist())]
        budget = self.settings.recommend_precompute_seconds
        for at in range(0, len(users), PRECOMPUTE_BLOCK):
            if at and budget > 0 and time.perf_counter() - started > budget:
                log.info("precompute stopped after %.0f s (%d lists)", budget, len(out))
                break
            block: dict[tuple[Any, ...], tuple[Strategy, History]] = {}
            for user_id in users[at : at + PRECOMPUTE_BLOCK]:
                try:
                    chosen = computer.strategy(None, user_id or None)
                except StrategyError:
                    return out
                history = models.history(user_id) if user_id else History.empty()
                key = list_key(user_id if len(history) else COLD, chosen, k, chosen.rules)
                if key not in out:
                    block[key] = (chosen, history)
            ranked = self._hybrid_ranked(block, k, models)
            for key, (chosen, history) in block.items():
                produce, explain = _given(ranked[key]) if key in ranked else (None, None)
                out[key] = cached_list(
                    *computer.compute_items(
                        chosen, history, k, chosen.rules, produce, explain, models
                    )
                )
        log.info("precomputed %d lists in %.1f s", len(out), time.perf_counter() - started)
        return out


def _given(ranked: tuple[np.ndarray, np.ndarray, Explainer]) -> tuple[Produce, Explain]:
    """``compute_items``' hooks answering with a ranking computed beforehand."""
    items, scores, explainer = ranked
    return (lambda *_: (items, scores)), (lambda _algorithm, item, _now: explainer(item))
