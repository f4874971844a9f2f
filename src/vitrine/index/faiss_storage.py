"""faiss indexes of the vector index: building them, and exact scoring of their stored rows.

Both index kinds keep the raw vectors in an ``IndexFlat`` (the index itself, or HNSW's
storage); exact scoring reads them there, in place for a few queries
(``compute_distance_subset``) or gathered for a BLAS product for many.
"""

from __future__ import annotations

from typing import Any, Final

import faiss
import numpy as np

KIND_FLAT: Final = "flat"
KIND_HNSW: Final = "hnsw"

# Rows scored at a time by exact search (a gather for many queries is 4k x 1280 x 4 B = 21 MB).
_EXACT_CHUNK: Final = 4096
# Up to this many queries, exact scoring reads rows in place (faiss compute_distance_subset).
_SUBSET_MAX_QUERIES: Final = 4


def new_faiss_index(kind: str, dim: int, m: int, ef_construction: int, ef_search: int) -> Any:
    """An empty inner-product index of ``kind`` (flat: exact; hnsw: approximate)."""
    if kind == KIND_FLAT:
        return faiss.IndexFlatIP(dim)
    if kind == KIND_HNSW:
        index = faiss.IndexHNSWFlat(dim, m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = ef_construction
        index.hnsw.efSearch = ef_search
        return index
    raise ValueError(f"unknown index kind {kind!r}")


def flat_storage(index: Any, kind: str) -> Any:
    """The ``IndexFlat`` holding the raw vectors (the index itself, or HNSW's storage)."""
    if kind == KIND_FLAT:
        return index
    return faiss.downcast_index(index.storage)


def stored_vectors(flat: Any) -> np.ndarray:
    """Zero-copy ``(ntotal, dim)`` view of the vectors of an ``IndexFlat``.

    Valid only while the index is not appended to.
    """
    n, dim = int(flat.ntotal), int(flat.d)
    if n == 0:
        return np.empty((0, dim), dtype=np.float32)
    return faiss.rev_swig_ptr(flat.get_xb(), n * dim).reshape(n, dim)


def exact_scores(flat: Any, queries: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Inner products ``(nq, len(rows))`` of the queries with the stored rows."""
    nq, m = queries.shape[0], int(rows.size)
    if nq > _SUBSET_MAX_QUERIES:  # many queries: one gather, then a BLAS matmul
        return queries @ stored_vectors(flat)[rows].T
    # few queries: faiss reads the rows in place (no gather copy), ~3x faster
    labels = np.ascontiguousarray(np.broadcast_to(rows, (nq, m)), dtype=np.int64)
    scores = np.empty((nq, m), dtype=np.float32)
    flat.compute_distance_subset(
        nq, faiss.swig_ptr(queries), m, faiss.swig_ptr(scores), faiss.swig_ptr(labels)
    )
    return scores


def exact_top_k(
    flat: Any, queries: np.ndarray, rows: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """The best ``k`` of ``rows`` for each query: scores and rows, best first."""
    nq = queries.shape[0]
    k = min(k, int(rows.size))
    best_scores = np.empty((nq, 0), dtype=np.float32)
    best_rows = np.empty((nq, 0), dtype=np.int64)
    for start in range(0, int(rows.size), _EXACT_CHUNK):
        chunk = rows[start : start + _EXACT_CHUNK]
        scores = exact_scores(flat, queries, chunk)
        if scores.shape[1] > k:
            top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
            scores = np.take_along_axis(scores, top, axis=1)
            chunk_rows = chunk[top]
        else:
            chunk_rows = np.broadcast_to(chunk, scores.shape)
        best_scores = np.concatenate([best_scores, scores], axis=1)
        best_rows = np.concatenate([best_rows, chunk_rows], axis=1)
    order = np.argsort(-best_scores, axis=1, kind="stable")[:, :k]
    return (
        np.take_along_axis(best_scores, order, axis=1),
        np.take_along_axis(best_rows, order, axis=1),
    )
