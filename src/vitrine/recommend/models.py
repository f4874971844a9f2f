"""A trained snapshot of every algorithm the strategies use, saved and swapped whole.

A :class:`ModelSet` is built from the database (catalog + event log), fitted, saved
under ``HOME/recommend/`` with a fingerprint of the data it saw, and replaced atomically
(one reference assignment) by the service when a newer one is ready: serving never
waits for training.
"""

from __future__ import annotations

import hashlib
import logging
import pickle
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from vitrine.private_fs import make_private_dir
from vitrine.recommend.base import Recommender
from vitrine.recommend.data import Dataset, History
from vitrine.recommend.model_file import read_mapped, write_mapped
from vitrine.recommend.strategies import ALGORITHMS

log = logging.getLogger(__name__)


def _code_version() -> str:
    """A hash of the recommender's source: a model pickled by other code is not loaded."""
    digest = hashlib.sha256()
    for path in sorted(Path(__file__).parent.glob("*.py")):
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


FORMAT = _code_version()


@dataclass
class ModelSet:
    """Every trained algorithm of one training run, over one snapshot of the data."""

    data: Dataset
    algorithms: dict[str, Recommender]
    fingerprint: str
    snapshot_seq: int = 0
    trained_at: float = field(default_factory=time.time)
    train_seconds: dict[str, float] = field(default_factory=dict)
    histories: list[History] = field(default_factory=list)
    # lists computed at training time, by list_cache.list_key (see the service)
    precomputed: dict[tuple[Any, ...], Any] = field(default_factory=dict)
    # how many catalog changes since training this set answers with (0: the snapshot;
    # see recommend/live_catalog.py), and the trained set it extends
    catalog_generation: int = 0
    trained: ModelSet | None = None

    @classmethod
    def train(
        cls,
        data: Dataset,
        models: Mapping[str, tuple[str, dict[str, Any]]],
        fingerprint: str,
        snapshot_seq: int = 0,
    ) -> ModelSet:
        """Fit ``models``: key -> (algorithm name, its parameters)."""
        algorithms: dict[str, Recommender] = {}
        seconds: dict[str, float] = {}
        for name, (algorithm, params) in models.items():
            started = time.perf_counter()
            algorithms[name] = ALGORITHMS[algorithm](**params).fit(data)
            seconds[name] = round(time.perf_counter() - started, 3)
            log.info("trained %s in %.1f s", name, seconds[name])
        return cls(
            data, algorithms, fingerprint, snapshot_seq, time.time(), seconds, data.histories()
        )

    def with_catalog(self, data: Dataset, generation: int) -> ModelSet:
        """The trained set answering over ``data``, its catalog extended by the changes
        since training (``live_catalog.extend``); histories and lists are shared."""
        trained = self.base
        return replace(
            trained,
            data=data,
            algorithms={k: a.with_catalog(data) for k, a in trained.algorithms.items()},
            catalog_generation=generation,
            trained=trained,
        )

    @property
    def base(self) -> ModelSet:
        """The trained set (itself, or the one it extends)."""
        return self.trained or self

    @property
    def reference_day(self) -> float:
        """Serving measures recency from the newest event seen (the wall clock for a live
        shop; the end of the log for an imported history)."""
        return self.data.last_day + 1e-6

    def history(self, user_id: str) -> History:
        row = self.data.user_index.get(user_id)
        return self.histories[row] if row is not None else History.empty()

    # -- persistence --------------------------------------------------------------------

    def save(self, directory: Path) -> Path:
        """Save the trained set; its large arrays are mapped read-only by whoever loads
        it (see :mod:`~vitrine.recommend.model_file`): workers share their pages."""
        make_private_dir(directory)
        path = directory / "models.pkl"
        write_mapped(path, {"format": FORMAT, "models": self.base})
        return path

    @staticmethod
    def load(directory: Path, fingerprint: str | None = None) -> ModelSet | None:
        """The saved set (our own file under HOME) if it matches ``fingerprint``."""
        path = directory / "models.pkl"
        if not path.is_file():
            return None
        try:
            saved = read_mapped(path)
        except (
            OSError,
            ValueError,
            pickle.UnpicklingError,
            EOFError,
            AttributeError,
            ImportError,
        ) as exc:
            log.warning("saved recommendation models unreadable (%s); retraining", exc)
            return None
        if not isinstance(saved, dict) or saved.get("format") != FORMAT:
            return None
        models: ModelSet = saved["models"]
        if fingerprint is not None and models.fingerprint != fingerprint:
            return None
        return models


def fallback_list(models: ModelSet, name: str, k: int) -> np.ndarray:
    algorithm = models.algorithms[name]
    items, _ = algorithm.recommend(
        History.empty(), k, models.reference_day, models.data.recommendable
    )
    return items
