"""A stratified, stable split of labelled products: train, calibration and evaluation.

Within each stratum (a class), products are ordered by a hash of their id, and every
``period``-th one is held out, alternately for evaluation and for calibration (the
temperature, the abstain threshold and the feature groups are chosen on calibration
rows; the reported metrics come from evaluation rows that chose nothing). Because the
order depends on the id only, a product keeps its side across retrainings, so a new
model and the old one are compared on products neither was trained on.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass
class HoldoutSplit:
    """Row indices of the three parts of a labelled field: train, calibrate, evaluate."""

    train: np.ndarray
    calibration: np.ndarray
    evaluation: np.ndarray


def _rank_key(product_id: str, seed: str) -> bytes:
    return hashlib.blake2b(f"{seed}:{product_id}".encode(), digest_size=8).digest()


def stratified_split(
    ids: Sequence[str], strata: Sequence[str], holdout: float = 0.2, seed: str = "vitrine"
) -> HoldoutSplit:
    """Row indices of each part; about ``holdout`` of every class is held out.

    Classes with at least ``period`` / 2 rows always give one row to evaluation first,
    so rare classes are evaluated, not silently left out.
    """
    if not 0 < holdout < 1:
        raise ValueError(f"holdout must be between 0 and 1, got {holdout}")
    period = max(2, round(1 / holdout))
    by_stratum: dict[str, list[int]] = defaultdict(list)
    for i, stratum in enumerate(strata):
        by_stratum[stratum].append(i)
    train: list[int] = []
    calibration: list[int] = []
    evaluation: list[int] = []
    offset = period // 2
    for rows in by_stratum.values():
        rows.sort(key=lambda i: _rank_key(ids[i], seed))
        held = 0
        for rank, i in enumerate(rows):
            if rank % period == offset:
                (evaluation if held % 2 == 0 else calibration).append(i)
                held += 1
            else:
                train.append(i)
    return HoldoutSplit(
        np.array(sorted(train), dtype=np.int64),
        np.array(sorted(calibration), dtype=np.int64),
        np.array(sorted(evaluation), dtype=np.int64),
    )
