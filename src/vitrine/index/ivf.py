"""Inverted-file indexes with 8-bit codes, as the catalog-sized scans build them.

:func:`train_ivf_sq8` trains an empty ``IndexIVFScalarQuantizer`` (inner product) on a
sample of the vectors it will hold: about ``2 sqrt(N)`` coarse lists (:func:`list_count`),
each code one byte per dimension, so a query reads ``nprobe`` lists and its cost grows with
the square root of the collection. Search by photo's aspect scans
(:mod:`vitrine.index.aspect_scan`) and the recommenders' candidate retrieval
(:mod:`vitrine.recommend.retrieval`) use it.
"""

from __future__ import annotations

import math
from typing import Final

import faiss
import numpy as np

__all__ = ["list_count", "train_ivf_sq8"]

# k-means of the coarse lists: points per list trained on, and iterations.
TRAIN_PER_LIST: Final = 64
TRAIN_ITERATIONS: Final = 12
SEED: Final = 1234


def list_count(n: int) -> int:
    """Inverted lists for ``n`` vectors: about ``2 sqrt(n)``, at least 39 points each."""
    return max(1, min(round(2 * math.sqrt(n)), n // 39))


def train_ivf_sq8(vectors: np.ndarray, nprobe: int) -> faiss.IndexIVFScalarQuantizer:
    """An empty IVF index (inner product, 8-bit codes) trained on a sample of ``vectors``
    (N x dim float32), reading ``nprobe`` lists per query unless told otherwise."""
    n, dim = vectors.shape
    nlist = list_count(n)
    quantizer = faiss.IndexFlatIP(dim)
    index = faiss.IndexIVFScalarQuantizer(
        quantizer, dim, nlist, faiss.ScalarQuantizer.QT_8bit, faiss.METRIC_INNER_PRODUCT
    )
    index.by_residual = False
    index.cp.niter = TRAIN_ITERATIONS
    index.cp.seed = SEED
    rng = np.random.default_rng(SEED)
    sample = min(n, nlist * TRAIN_PER_LIST)
    train = vectors if sample == n else vectors[np.sort(rng.choice(n, sample, replace=False))]
    index.train(np.ascontiguousarray(train, np.float32))
    index.nprobe = nprobe
    return index
