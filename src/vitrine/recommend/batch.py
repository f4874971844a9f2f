"""Recommendations for many customers at once (product ids only, nothing recorded).

Strategies are resolved once; customers with no history share one list per strategy;
large batches are split over forked worker processes, which share the models
copy-on-write and need no database.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Iterator, Sequence

import numpy as np

from vitrine.recommend.compute import ListComputer
from vitrine.recommend.hybrid import Hybrid
from vitrine.recommend.lifecycle import ModelLifecycle
from vitrine.recommend.live_history import LiveHistories
from vitrine.recommend.models import ModelSet
from vitrine.recommend.rules import reshape
from vitrine.recommend.strategies import Strategy

# Customers ranked together: the hybrid's ranker runs once per block and strategy.
BLOCK = 256


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
        self.cold: dict[str, list[str]] = {}  # per strategy: the list of no history

    def run(self, plan: Sequence[tuple[str, str]]) -> list[tuple[str, list[str]]]:
        out: list[tuple[str, list[str]]] = []
        for start in range(0, len(plan), BLOCK):
            out += self._run_block(plan[start : start + BLOCK])
        return out

    def _run_block(self, plan: Sequence[tuple[str, str]]) -> list[tuple[str, list[str]]]:
        """One block of customers: the first algorithm of each strategy ranks all of the
        block's customers with a history at once when it can (the hybrid's ranker is one
        call), then each customer's list is filled and reshaped as one by one."""
        models, data, k = self.models, self.models.data, self.k
        pool = max(2 * k, 24)
        rows = []
        for user_id, name in plan:
            history, _ = self.live.history(user_id, models)
            now = self.computer.now(models, history)
            rows.append((user_id, name, history, now))
        first: dict[int, tuple[np.ndarray, np.ndarray]] = {}  # row -> (items, valid)
        for name, chosen in self.strategies.items():
            algorithm = models.algorithms.get(chosen.model_key)
            if not isinstance(algorithm, Hybrid):
                continue
            batch = [r for r, row in enumerate(rows) if row[1] == name and len(row[2])]
            requests = [
                (rows[r][2], rows[r][3], self.computer.candidates(chosen.rules, data, rows[r][2]))
                for r in batch
            ]
            results = algorithm.recommend_explained_many(requests, pool)
            for r, request, (items, _, _) in zip(batch, requests, results, strict=True):
                first[r] = (items, request[2])
        out = []
        for r, (user_id, name, history, now) in enumerate(rows):
            if not len(history) and name in self.cold:
                out.append((user_id, self.cold[name]))
                continue
            chosen = self.strategies[name]
            if r in first:
                valid = first[r][1]
            else:
                valid = self.computer.candidates(chosen.rules, data, history)
            ranked: list[int] = []
            for position, key in enumerate([chosen.model_key, *chosen.fallback]):
                algorithm = models.algorithms.get(key)
                if algorithm is None:
                    continue
                if position == 0 and r in first:
                    items = first[r][0]
                else:
                    items, _ = algorithm.recommend(history, pool, now, valid)
                ranked += [i for i in items.tolist() if i not in ranked]
                if len(ranked) >= k:
                    break
            ids = [data.items[i] for i in reshape(chosen.rules, data, ranked, k)]
            if not len(history):
                self.cold[name] = ids
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
