"""Recommendations for many customers at once (product ids only, nothing recorded).

Strategies are resolved once; customers with no history share one list per strategy;
large batches are split over forked worker processes, which share the models
copy-on-write and need no database.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Iterator, Sequence

from vitrine.recommend.compute import ListComputer
from vitrine.recommend.lifecycle import ModelLifecycle
from vitrine.recommend.live_history import LiveHistories
from vitrine.recommend.models import ModelSet
from vitrine.recommend.rules import reshape
from vitrine.recommend.strategies import Strategy


class BatchJob:
    """One batch of customers: what a forked worker needs (no database access)."""

    def __init__(
        self,
        computer: ListComputer,
        live: LiveHistories,
        models: ModelSet,
        strategies: dict[str, Strategy],
        k: int,
    ) -> None:
        self.computer = computer
        self.live = live
        self.models = models
        self.strategies = strategies
        self.k = k

    def run(self, plan: Sequence[tuple[str, str]]) -> list[tuple[str, list[str]]]:
        models, data, k = self.models, self.models.data, self.k
        cold: dict[str, list[str]] = {}
        out = []
        for user_id, name in plan:
            chosen = self.strategies[name]
            history, _ = self.live.history(user_id, models)
            if not len(history) and name in cold:
                out.append((user_id, cold[name]))
                continue
            now = self.computer.now(models, history)
            valid = self.computer.candidates(chosen.rules, data, history)
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


_BATCH: BatchJob | None = None  # the job forked workers inherit


def _run_batch_chunk(plan: list[tuple[str, str]]) -> list[tuple[str, list[str]]]:
    assert _BATCH is not None
    return _BATCH.run(plan)


class BatchRecommender:
    """Product ids for many customers, on a pool of forked processes when large."""

    def __init__(
        self, computer: ListComputer, lifecycle: ModelLifecycle, live: LiveHistories
    ) -> None:
        self.computer = computer
        self.lifecycle = lifecycle
        self.live = live

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
        computer = self.computer
        models = self.lifecycle.models
        base = computer.strategy(strategy, "any")
        top = computer.strategies.get(strategy or computer.settings.recommend_default_strategy)
        resolved: dict[str, Strategy] = {}
        for user_id in user_ids:
            if top is not None and top.splits:
                name = computer.strategy(strategy, user_id).name
            else:
                name = base.name
            if name not in resolved:
                resolved[name] = computer.strategy(name, user_id)
        if top is not None and top.splits:
            plan = [(u, computer.strategy(strategy, u).name) for u in user_ids]
        else:
            plan = [(u, base.name) for u in user_ids]
        job = BatchJob(computer, self.live, models, resolved, k)
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
