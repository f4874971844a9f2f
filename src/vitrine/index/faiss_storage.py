"""faiss indexes of the vector index: building them, and exact scoring of their stored rows.

Both index kinds keep the vectors in a *storage* index: the flat index itself, or HNSW's
storage, which is an ``IndexFlat`` (float32) or, with ``storage="float16"``, an
``IndexScalarQuantizer`` of half the bytes (for large catalogs: a million 1280-d vectors
are 5.1 GB in float32, 2.6 GB in float16; cosines move by about 1e-4). Exact scoring reads
float32 rows in place for a few queries (``compute_distance_subset``) or gathers them for
a BLAS product; float16 rows are decoded by faiss (``reconstruct_batch``) and multiplied.
"""

from __future__ import annotations

from typing import Any, Final

import faiss
import numpy as np

KIND_FLAT: Final = "flat"
KIND_HNSW: Final = "hnsw"
STORAGES: Final = ("float32", "float16")

# Rows scored at a time by exact search (a gather for many queries is 4k x 1280 x 4 B = 21 MB).
_EXACT_CHUNK: Final = 4096
# Up to this many queries, exact scoring reads rows in place (faiss compute_distance_subset).
_SUBSET_MAX_QUERIES: Final = 4


def new_faiss_index(
    kind: str, dim: int, m: int, ef_construction: int, ef_search: int, storage: str = "float32"
) -> Any:
    """An empty inner-product index of ``kind`` (flat: exact; hnsw: approximate), its
    vectors kept as ``storage`` (HNSW only: the flat index of a small catalog is float32)."""
    if storage not in STORAGES:
        raise ValueError(f"unknown vector storage {storage!r}; expected one of {STORAGES}")
    if kind == KIND_FLAT:
        return faiss.IndexFlatIP(dim)
    if kind == KIND_HNSW:
        if storage == "float16":
            quantizer = faiss.ScalarQuantizer.QT_fp16
            index = faiss.IndexHNSWSQ(dim, quantizer, m, faiss.METRIC_INNER_PRODUCT)
        else:
            index = faiss.IndexHNSWFlat(dim, m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = ef_construction
        index.hnsw.efSearch = ef_search
        return index
    raise ValueError(f"unknown index kind {kind!r}")


def as_matrix(dim: int, array: np.ndarray, what: str) -> np.ndarray:
    """``array`` as a C-contiguous float32 ``(n, dim)`` matrix; ValueError naming ``what``
    when its shape is not one or more rows of ``dim`` or it holds NaN or infinity."""
    matrix = np.asarray(array, dtype=np.float32)
    if matrix.ndim == 1:
        matrix = matrix.reshape(1, -1)
    if matrix.ndim != 2 or matrix.shape[1] != dim:
        raise ValueError(f"{what} must have shape ({dim},) or (n, {dim}), got {np.shape(array)}")
    if not np.isfinite(matrix).all():
        raise ValueError(f"{what} contain NaN or infinite values")
    return np.ascontiguousarray(matrix)


def flat_storage(index: Any, kind: str) -> Any:
    """The index holding the vectors (the index itself, or HNSW's storage): an
    ``IndexFlat``, or an ``IndexScalarQuantizer`` for float16 storage."""
    if kind == KIND_FLAT:
        return index
    return faiss.downcast_index(index.storage)


def storage_of(index: Any) -> str:
    """``"float16"`` or ``"float32"``: how a faiss index of the vector index keeps vectors."""
    return "float16" if isinstance(index, faiss.IndexHNSWSQ) else "float32"


def gather(storage: Any, rows: np.ndarray) -> np.ndarray:
    """The stored vectors of ``rows`` as float32 ``(len(rows), dim)`` (a copy)."""
    if isinstance(storage, faiss.IndexFlat):
        return stored_vectors(storage)[rows]
    keys = np.ascontiguousarray(rows, dtype=np.int64)
    if not len(keys):
        return np.empty((0, int(storage.d)), dtype=np.float32)
    return storage.reconstruct_batch(keys)


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
    if nq > _SUBSET_MAX_QUERIES or not isinstance(flat, faiss.IndexFlat):
        return queries @ gather(flat, rows).T  # one gather, then a BLAS matmul
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
