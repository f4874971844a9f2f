"""Nearest-neighbour index over product embeddings, keyed by the shop's product ids.

:class:`VectorIndex` maps string product ids (SKUs such as ``"0111565001"``; leading
zeros are kept) to float32 vectors and answers maximum-inner-product queries. For
L2-normalised vectors the score is the cosine similarity.

Storage
    Below ``hnsw_threshold`` live vectors the index is an exact ``faiss.IndexFlatIP``;
    once the count reaches the threshold it is rebuilt as ``faiss.IndexHNSWFlat``
    (``METRIC_INNER_PRODUCT``). In both cases the faiss label of a vector is its row
    (insertion position); a Python list maps rows to product ids and a dict maps ids
    back to rows.

Updates
    Vectors are append-only. Replacing or removing a product marks its old row as a
    tombstone; searches filter tombstones out with a faiss ``IDSelectorBitmap``.
    When tombstones exceed ``compact_ratio`` of the rows the index is rebuilt from the
    live vectors (an HNSW index that shrank below half the threshold goes back to flat).

Filtered search
    ``allowed`` restricts results to a set of product ids. Small sets (up to
    ``exact_filter_max`` ids) are scored exactly by gathering their vectors; larger sets
    are searched through faiss with a bitmap selector and a raised ``efSearch``, falling
    back to exact scoring for any query that came back short. Either way a filtered
    search returns ``min(k, |allowed ∩ index|)`` hits. Mapping ``allowed`` ids to rows
    costs a dict probe per id; passing the same ``frozenset`` object again (as
    :meth:`vitrine.index.AttributeIndex.matching_frozen` does for repeated filters)
    reuses the mapping while the index is unchanged.

Concurrency
    Mutations (``upsert``, ``remove``, rebuilds, ``save``) are serialised by one lock.
    Searches take the read side of a readers-writer lock; a mutation takes the write
    side only for the short in-place steps (appending a chunk of vectors, marking
    tombstones, swapping in a rebuilt index). Rebuilds are built beside the live index,
    so searches keep running while a conversion or compaction is in progress. A
    single-query search runs faiss on one OpenMP thread (the setting is per calling
    thread), so concurrent requests don't oversubscribe the cores; batches use them all.

Persistence
    :meth:`VectorIndex.save` writes one file: a magic header, a small JSON metadata
    block (dim, kind, parameters, fingerprint, counts), the row-to-id table as JSON,
    then the faiss index. It is written to a temporary file in the same directory and
    moved into place with ``os.replace``. :meth:`VectorIndex.stored_fingerprint` reads
    only the header and metadata.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import math
import os
import struct
import tempfile
import threading
from collections import OrderedDict
from collections.abc import Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Final

import faiss
import numpy as np

__all__ = ["Hit", "VectorIndex"]

KIND_FLAT: Final = "flat"
KIND_HNSW: Final = "hnsw"

_MAGIC: Final = b"VITRIDX\x01"
_FORMAT: Final = "vitrine-vector-index"
_FORMAT_VERSION: Final = 1
_LEN: Final = struct.Struct("<Q")
_MAX_META_BYTES: Final = 1 << 20

# Vectors added to an HNSW graph per write-locked step: searches wait at most one chunk
# (HNSW inserts cost ~1-3 ms each at 100k x 1280 on 2 cores, so ~30-100 ms).
_HNSW_ADD_CHUNK: Final = 32
# Rows copied at a time when rebuilding (bounds temporary memory: 16k x 1280 x 4 B = 84 MB).
_GATHER_CHUNK: Final = 16_384
# Rows scored at a time by exact search (a gather for many queries is 4k x 1280 x 4 B = 21 MB).
_EXACT_CHUNK: Final = 4096
# Up to this many queries, exact scoring reads rows in place (faiss compute_distance_subset).
_SUBSET_MAX_QUERIES: Final = 4
# frozenset filters whose id -> row mapping is remembered (see VectorIndex._allowed_rows).
_FILTER_CACHE_SIZE: Final = 8


@dataclass(frozen=True, slots=True)
class Hit:
    """One search result: a product id and its inner-product score (cosine if normalised)."""

    product_id: str
    score: float


class _ReadWriteLock:
    """Many readers or one writer; waiting writers block new readers (no writer starvation)."""

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._readers = 0
        self._writer = False
        self._writers_waiting = 0

    @contextlib.contextmanager
    def read(self) -> Iterator[None]:
        with self._cond:
            while self._writer or self._writers_waiting:
                self._cond.wait()
            self._readers += 1
        try:
            yield
        finally:
            with self._cond:
                self._readers -= 1
                if self._readers == 0:
                    self._cond.notify_all()

    @contextlib.contextmanager
    def write(self) -> Iterator[None]:
        with self._cond:
            self._writers_waiting += 1
            try:
                while self._writer or self._readers:
                    self._cond.wait()
            finally:
                self._writers_waiting -= 1
            self._writer = True
        try:
            yield
        finally:
            with self._cond:
                self._writer = False
                self._cond.notify_all()


class VectorIndex:
    """Thread-safe inner-product index from product id to vector; flat below a size, HNSW above.

    Args:
        dim: vector dimensionality.
        hnsw_threshold: live-vector count at which the flat index is converted to HNSW.
        hnsw_m: HNSW graph degree ``M``.
        ef_construction: HNSW ``efConstruction``.
        ef_search: HNSW ``efSearch`` for unfiltered queries (raised to ``k`` if smaller).
        compact_ratio: rebuild once tombstones exceed this fraction of stored rows.
        exact_filter_max: ``allowed`` sets up to this size are scored exactly.

    The HNSW defaults (M=32, efConstruction=200, efSearch=64) come from
    ``bench/tune_index.py`` on synthetic clustered 100k x 1280 vectors: recall@10 0.998
    against exact search at about 0.4-0.5 ms per query on one core. Rerun it on real
    embeddings before changing them.
    """

    def __init__(
        self,
        dim: int,
        *,
        hnsw_threshold: int = 20_000,
        hnsw_m: int = 32,
        ef_construction: int = 200,
        ef_search: int = 64,
        compact_ratio: float = 0.2,
        exact_filter_max: int = 4096,
    ) -> None:
        if dim <= 0:
            raise ValueError(f"dim must be positive, got {dim}")
        if hnsw_threshold < 1:
            raise ValueError(f"hnsw_threshold must be >= 1, got {hnsw_threshold}")
        if hnsw_m < 2 or ef_construction < 1 or ef_search < 1:
            raise ValueError("hnsw_m must be >= 2 and ef_construction, ef_search >= 1")
        if not 0.0 < compact_ratio < 1.0:
            raise ValueError(f"compact_ratio must be in (0, 1), got {compact_ratio}")
        if exact_filter_max < 0:
            raise ValueError(f"exact_filter_max must be >= 0, got {exact_filter_max}")
        self._dim = int(dim)
        self._hnsw_threshold = int(hnsw_threshold)
        self._hnsw_m = int(hnsw_m)
        self._ef_construction = int(ef_construction)
        self._ef_search = int(ef_search)
        self._compact_ratio = float(compact_ratio)
        self._exact_filter_max = int(exact_filter_max)

        self._mutex = threading.RLock()  # serialises mutations, rebuilds and saves
        self._rw = _ReadWriteLock()  # searches read; in-place changes and swaps write

        self._kind: str = KIND_FLAT
        self._index: Any = self._new_faiss_index(KIND_FLAT)
        self._ids: list[str | None] = []  # row -> product id (None = tombstone)
        self._pos: dict[str, int] = {}  # product id -> row
        self._alive = np.zeros(0, dtype=bool)
        self._alive_bits: np.ndarray | None = None  # packed _alive, only while tombstones exist
        self._dead = 0
        self._generation = 0  # bumped by every change of rows; keys the filter cache
        self._filter_cache: OrderedDict[int, tuple[frozenset[str], int, np.ndarray, Any]] = (
            OrderedDict()
        )
        self._filter_cache_lock = threading.Lock()

    # ------------------------------------------------------------------ properties

    @property
    def dim(self) -> int:
        return self._dim

    @property
    def kind(self) -> str:
        """``"flat"`` (exact) or ``"hnsw"`` (approximate)."""
        return self._kind

    @property
    def params(self) -> dict[str, int | float]:
        """Constructor keyword arguments (excluding ``dim``); saved with the index."""
        return {
            "hnsw_threshold": self._hnsw_threshold,
            "hnsw_m": self._hnsw_m,
            "ef_construction": self._ef_construction,
            "ef_search": self._ef_search,
            "compact_ratio": self._compact_ratio,
            "exact_filter_max": self._exact_filter_max,
        }

    @property
    def tombstones(self) -> int:
        """Rows held by replaced or removed vectors, awaiting compaction."""
        return self._dead

    def __len__(self) -> int:
        return len(self._pos)

    def __contains__(self, product_id: object) -> bool:
        return product_id in self._pos

    def __repr__(self) -> str:
        return (
            f"VectorIndex(dim={self._dim}, kind={self._kind!r}, count={len(self._pos)}, "
            f"tombstones={self._dead})"
        )

    def ids(self) -> list[str]:
        """The product ids in the index (insertion order)."""
        with self._rw.read():
            return [pid for pid in self._ids if pid is not None]

    def vector(self, product_id: str) -> np.ndarray | None:
        """A copy of the stored vector for ``product_id``, or None if absent."""
        with self._rw.read():
            row = self._pos.get(product_id)
            if row is None:
                return None
            return np.array(self._index.reconstruct(row), dtype=np.float32)

    # ------------------------------------------------------------------ mutation

    def upsert(self, ids: Sequence[str], vectors: np.ndarray) -> None:
        """Add vectors, replacing any product already present (its old row becomes a tombstone).

        Duplicate ids within one call: the last occurrence wins.
        """
        if isinstance(ids, str):
            raise TypeError("ids must be a sequence of product ids, not one str")
        ids_list = list(ids)
        for pid in ids_list:
            if not isinstance(pid, str):
                raise TypeError(f"product ids must be str, got {type(pid).__name__}: {pid!r}")
        matrix = self._as_matrix(vectors, "vectors")
        if matrix.shape[0] != len(ids_list):
            raise ValueError(f"{len(ids_list)} ids but {matrix.shape[0]} vectors")
        if not ids_list:
            return
        last = {pid: i for i, pid in enumerate(ids_list)}
        if len(last) < len(ids_list):
            keep = sorted(last.values())
            ids_list = [ids_list[i] for i in keep]
            matrix = np.ascontiguousarray(matrix[keep])

        with self._mutex:
            added = sum(1 for pid in ids_list if pid not in self._pos)
            if self._kind == KIND_FLAT and len(self._pos) + added >= self._hnsw_threshold:
                self._rebuild(KIND_HNSW, ids_list, matrix)
                return
            step = _HNSW_ADD_CHUNK if self._kind == KIND_HNSW else len(ids_list)
            for start in range(0, len(ids_list), step):
                self._append(ids_list[start : start + step], matrix[start : start + step])
            self._maybe_compact()

    def remove(self, ids: Iterable[str]) -> int:
        """Remove products; returns how many of them were present."""
        if isinstance(ids, str):
            raise TypeError("ids must be an iterable of product ids, not one str")
        with self._mutex:
            rows = sorted({self._pos[pid] for pid in set(ids) if pid in self._pos})
            if not rows:
                return 0
            with self._rw.write():
                for row in rows:
                    pid = self._ids[row]
                    assert pid is not None
                    del self._pos[pid]
                    self._ids[row] = None
                self._alive[rows] = False
                self._dead += len(rows)
                self._refresh_bits()
                self._generation += 1
            self._maybe_compact()
            return len(rows)

    def compact(self) -> None:
        """Rebuild from live vectors now, dropping tombstones (normally automatic)."""
        with self._mutex:
            self._rebuild(self._target_kind(len(self._pos)))

    def _append(self, ids: list[str], matrix: np.ndarray) -> None:
        """Append rows for ``ids`` (unique within the call); caller holds the mutex."""
        with self._rw.write():
            base = int(self._index.ntotal)
            self._index.add(matrix)
            replaced = []
            for offset, pid in enumerate(ids):
                old = self._pos.get(pid)
                if old is not None:
                    self._ids[old] = None
                    replaced.append(old)
                self._pos[pid] = base + offset
                self._ids.append(pid)
            self._alive = np.concatenate([self._alive, np.ones(len(ids), dtype=bool)])
            if replaced:
                self._alive[replaced] = False
                self._dead += len(replaced)
            self._refresh_bits()
            self._generation += 1

    def _refresh_bits(self) -> None:
        self._alive_bits = np.packbits(self._alive, bitorder="little") if self._dead else None

    def _target_kind(self, live: int) -> str:
        if live >= self._hnsw_threshold:
            return KIND_HNSW
        if self._kind == KIND_HNSW and live >= self._hnsw_threshold // 2:
            return KIND_HNSW  # hysteresis: don't flip back and forth around the threshold
        return KIND_FLAT

    def _maybe_compact(self) -> None:
        if self._dead and self._dead > self._compact_ratio * self._index.ntotal:
            self._rebuild(self._target_kind(len(self._pos)))

    def _rebuild(
        self,
        kind: str,
        extra_ids: list[str] | None = None,
        extra_vectors: np.ndarray | None = None,
    ) -> None:
        """Build a fresh index of ``kind`` from the live rows plus ``extra``, then swap it in.

        The caller holds the mutex, so nothing else changes the current index while it is
        read here; searches continue against it until the final write-locked swap.
        """
        extra_ids = extra_ids or []
        replaced = {self._pos[pid] for pid in extra_ids if pid in self._pos}
        rows = np.flatnonzero(self._alive)
        if replaced:
            rows = rows[~np.isin(rows, np.fromiter(replaced, dtype=np.int64))]
        new_index = self._new_faiss_index(kind)
        stored = self._stored_vectors()
        for start in range(0, len(rows), _GATHER_CHUNK):
            new_index.add(np.ascontiguousarray(stored[rows[start : start + _GATHER_CHUNK]]))
        new_ids: list[str | None] = [self._ids[int(r)] for r in rows]
        if extra_ids:
            assert extra_vectors is not None
            new_index.add(extra_vectors)
            new_ids.extend(extra_ids)
        new_pos = {pid: i for i, pid in enumerate(new_ids) if pid is not None}
        del stored
        with self._rw.write():
            self._index = new_index
            self._kind = kind
            self._ids = new_ids
            self._pos = new_pos
            self._alive = np.ones(len(new_ids), dtype=bool)
            self._dead = 0
            self._alive_bits = None
            self._generation += 1

    # ------------------------------------------------------------------ search

    def search(
        self,
        query: np.ndarray,
        k: int = 10,
        *,
        allowed: Collection[str] | None = None,
        exclude: Collection[str] = (),
    ) -> list[Hit]:
        """The ``k`` best products for one query vector, best first.

        Args:
            query: shape ``(dim,)`` or ``(1, dim)``.
            allowed: if given, only these product ids may be returned (unknown ids are
                ignored); the result still has ``min(k, matching)`` hits.
            exclude: product ids never returned (e.g. the query product itself).
        """
        q = self._as_matrix(query, "query")
        if q.shape[0] != 1:
            raise ValueError(f"search takes one query, got {q.shape[0]}; use search_batch")
        return self._search(q, k, allowed, exclude)[0]

    def search_batch(
        self,
        queries: np.ndarray,
        k: int = 10,
        *,
        allowed: Collection[str] | None = None,
        exclude: Collection[str] = (),
    ) -> list[list[Hit]]:
        """:meth:`search` for each row of ``queries`` (shape ``(n, dim)``)."""
        return self._search(self._as_matrix(queries, "queries"), k, allowed, exclude)

    def _search(
        self,
        queries: np.ndarray,
        k: int,
        allowed: Collection[str] | None,
        exclude: Collection[str],
    ) -> list[list[Hit]]:
        nq = queries.shape[0]
        empty: list[list[Hit]] = [[] for _ in range(nq)]
        if k <= 0 or nq == 0:
            return empty
        # A single query runs on the calling thread only: OpenMP teams for one query cost
        # more than they save, and oversubscribe the CPU when requests search concurrently.
        threads = _omp_threads(1) if nq == 1 else contextlib.nullcontext()
        with threads, self._rw.read():
            live = len(self._pos)
            if live == 0:
                return empty
            excluded = np.unique(self._rows_of(exclude))

            if allowed is not None:
                rows, bits = self._allowed_rows(allowed)
                candidates = rows
                if excluded.size:
                    candidates = np.setdiff1d(rows, excluded, assume_unique=True)
                if candidates.size == 0:
                    return empty
                if candidates.size <= self._exact_filter_max:
                    return self._exact(queries, candidates, k)
                if bits is None:
                    bits = _packed_membership(candidates, int(self._index.ntotal))
                elif excluded.size:
                    bits = bits.copy()
                    np.bitwise_and.at(bits, excluded >> 3, ~_bit_masks(excluded))
                want = min(k, int(candidates.size))
                ef = max(self._ef_search, want)
                ef = min(math.ceil(ef * live / candidates.size), max(4 * ef, 1024))
                selector = faiss.IDSelectorBitmap(bits)
                scores, labels = self._faiss_search(queries, want, selector, ef)
                return self._collect(queries, scores, labels, want, candidates)

            want = min(k, live - int(excluded.size))
            if want <= 0:
                return empty
            selector = None
            if excluded.size or self._dead:
                if self._alive_bits is not None:
                    bits = self._alive_bits.copy()
                else:
                    bits = np.packbits(self._alive, bitorder="little")
                if excluded.size:
                    np.bitwise_and.at(bits, excluded >> 3, ~_bit_masks(excluded))
                selector = faiss.IDSelectorBitmap(bits)
            scores, labels = self._faiss_search(queries, want, selector, self._ef_search)
            return self._collect(queries, scores, labels, want, None, excluded)

    def _rows_of(self, ids: Collection[str]) -> np.ndarray:
        """Rows of those ``ids`` that are in the index (one dict probe per id, in C)."""
        rows = np.fromiter(
            map(self._pos.get, ids, itertools.repeat(-1)), dtype=np.int64, count=len(ids)
        )
        return rows[rows >= 0]

    def _allowed_rows(self, allowed: Collection[str]) -> tuple[np.ndarray, np.ndarray | None]:
        """Sorted rows of ``allowed``, and their packed bitmap when past the exact limit.

        Mapping ids to rows costs one dict probe per id, which dominates a broadly
        filtered search (~50k ids). A ``frozenset`` passed again unchanged (same object)
        while the index is unchanged reuses the previous mapping.
        """
        key = id(allowed)
        cacheable = isinstance(allowed, frozenset)
        if cacheable:
            with self._filter_cache_lock:
                entry = self._filter_cache.get(key)
                if entry is not None and entry[0] is allowed and entry[1] == self._generation:
                    self._filter_cache.move_to_end(key)
                    return entry[2], entry[3]
        rows = np.unique(self._rows_of(allowed))
        bits = None
        if rows.size > self._exact_filter_max:
            bits = _packed_membership(rows, int(self._index.ntotal))
        if cacheable:
            with self._filter_cache_lock:
                self._filter_cache[key] = (allowed, self._generation, rows, bits)
                self._filter_cache.move_to_end(key)
                while len(self._filter_cache) > _FILTER_CACHE_SIZE:
                    self._filter_cache.popitem(last=False)
        return rows, bits

    def _faiss_search(
        self, queries: np.ndarray, k: int, selector: Any, ef: int
    ) -> tuple[np.ndarray, np.ndarray]:
        if self._kind == KIND_HNSW:
            params: Any = faiss.SearchParametersHNSW()
            params.efSearch = max(ef, k)
        else:
            params = faiss.SearchParameters() if selector is not None else None
        if selector is not None:
            params.sel = selector
        scores, labels = self._index.search(queries, k, params=params)
        return scores, labels

    def _collect(
        self,
        queries: np.ndarray,
        scores: np.ndarray,
        labels: np.ndarray,
        want: int,
        candidates: np.ndarray | None,
        excluded: np.ndarray | None = None,
    ) -> list[list[Hit]]:
        """Turn faiss output into hits; rows that came back short are redone exactly."""
        ids = self._ids
        results: list[list[Hit]] = []
        for i in range(queries.shape[0]):
            row = [
                Hit(ids[int(label)], float(score))  # type: ignore[arg-type]
                for score, label in zip(scores[i], labels[i], strict=True)
                if label >= 0 and ids[int(label)] is not None
            ]
            if len(row) < want:
                pool = candidates
                if pool is None:
                    pool = np.flatnonzero(self._alive)
                    if excluded is not None and excluded.size:
                        pool = np.setdiff1d(pool, excluded)
                row = self._exact(queries[i : i + 1], pool, want)[0]
            results.append(row)
        return results

    def _exact(self, queries: np.ndarray, rows: np.ndarray, k: int) -> list[list[Hit]]:
        """Exact top-k over the given live rows (caller holds the read lock)."""
        nq = queries.shape[0]
        k = min(k, int(rows.size))
        best_scores = np.empty((nq, 0), dtype=np.float32)
        best_rows = np.empty((nq, 0), dtype=np.int64)
        for start in range(0, int(rows.size), _EXACT_CHUNK):
            chunk = rows[start : start + _EXACT_CHUNK]
            scores = self._scores(queries, chunk)
            if scores.shape[1] > k:
                top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
                scores = np.take_along_axis(scores, top, axis=1)
                chunk_rows = chunk[top]
            else:
                chunk_rows = np.broadcast_to(chunk, scores.shape)
            best_scores = np.concatenate([best_scores, scores], axis=1)
            best_rows = np.concatenate([best_rows, chunk_rows], axis=1)
        order = np.argsort(-best_scores, axis=1, kind="stable")[:, :k]
        ids = self._ids
        return [
            [
                Hit(ids[int(r)], float(s))  # type: ignore[arg-type]
                for s, r in zip(best_scores[i, order[i]], best_rows[i, order[i]], strict=True)
            ]
            for i in range(nq)
        ]

    def _scores(self, queries: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """Inner products ``(nq, len(rows))`` of the queries with the stored rows."""
        flat = self._flat_storage()
        nq, m = queries.shape[0], int(rows.size)
        if nq > _SUBSET_MAX_QUERIES:  # many queries: one gather, then a BLAS matmul
            return queries @ self._stored_vectors()[rows].T
        # few queries: faiss reads the rows in place (no gather copy), ~3x faster
        labels = np.ascontiguousarray(np.broadcast_to(rows, (nq, m)), dtype=np.int64)
        scores = np.empty((nq, m), dtype=np.float32)
        flat.compute_distance_subset(
            nq, faiss.swig_ptr(queries), m, faiss.swig_ptr(scores), faiss.swig_ptr(labels)
        )
        return scores

    # ------------------------------------------------------------------ faiss helpers

    def _new_faiss_index(self, kind: str) -> Any:
        if kind == KIND_FLAT:
            return faiss.IndexFlatIP(self._dim)
        if kind == KIND_HNSW:
            index = faiss.IndexHNSWFlat(self._dim, self._hnsw_m, faiss.METRIC_INNER_PRODUCT)
            index.hnsw.efConstruction = self._ef_construction
            index.hnsw.efSearch = self._ef_search
            return index
        raise ValueError(f"unknown index kind {kind!r}")

    def _flat_storage(self) -> Any:
        """The ``IndexFlat`` holding the raw vectors (the index itself, or HNSW's storage)."""
        if self._kind == KIND_FLAT:
            return self._index
        return faiss.downcast_index(self._index.storage)

    def _stored_vectors(self) -> np.ndarray:
        """Zero-copy ``(ntotal, dim)`` view of the stored vectors.

        Valid only while the index is not appended to: callers hold the read lock or
        the mutation lock.
        """
        n = int(self._index.ntotal)
        if n == 0:
            return np.empty((0, self._dim), dtype=np.float32)
        ptr = self._flat_storage().get_xb()
        return faiss.rev_swig_ptr(ptr, n * self._dim).reshape(n, self._dim)

    def _as_matrix(self, array: np.ndarray, what: str) -> np.ndarray:
        matrix = np.asarray(array, dtype=np.float32)
        if matrix.ndim == 1:
            matrix = matrix.reshape(1, -1)
        if matrix.ndim != 2 or matrix.shape[1] != self._dim:
            raise ValueError(
                f"{what} must have shape ({self._dim},) or (n, {self._dim}), got {np.shape(array)}"
            )
        if not np.isfinite(matrix).all():
            raise ValueError(f"{what} contain NaN or infinite values")
        return np.ascontiguousarray(matrix)

    # ------------------------------------------------------------------ persistence

    def save(self, path: Path, *, fingerprint: str = "") -> None:
        """Write the index, id table and metadata to ``path`` atomically.

        The file is written next to ``path`` under a temporary name, fsynced, then moved
        over ``path`` with ``os.replace``; readers see either the old or the new file.
        """
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with self._mutex:
            meta = {
                "format": _FORMAT,
                "version": _FORMAT_VERSION,
                "dim": self._dim,
                "kind": self._kind,
                "params": self.params,
                "fingerprint": fingerprint,
                "count": len(self._pos),
                "rows": int(self._index.ntotal),
                "tombstones": self._dead,
            }
            meta_bytes = json.dumps(meta, sort_keys=True).encode()
            ids_bytes = json.dumps(self._ids, ensure_ascii=False).encode()
            fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
            try:
                with os.fdopen(fd, "wb") as fh:
                    fh.write(_MAGIC)
                    fh.write(_LEN.pack(len(meta_bytes)))
                    fh.write(meta_bytes)
                    fh.write(_LEN.pack(len(ids_bytes)))
                    fh.write(ids_bytes)
                    writer = faiss.PyCallbackIOWriter(fh.write)
                    faiss.write_index(self._index, writer)
                    del writer
                    fh.flush()
                    os.fsync(fh.fileno())
                os.replace(tmp_name, path)
            except BaseException:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(tmp_name)
                raise
        _fsync_dir(path.parent)

    @classmethod
    def load(cls, path: Path, **overrides: float) -> VectorIndex:
        """Read an index written by :meth:`save`.

        ``overrides`` replace saved constructor parameters (e.g. ``ef_search=...`` from
        the current settings); ``hnsw_m`` / ``ef_construction`` then apply to rebuilds only.
        """
        path = Path(path)
        with open(path, "rb") as fh:
            meta = _read_meta(fh, path)
            ids_len = _read_len(fh, path)
            ids = json.loads(fh.read(ids_len))
            reader = faiss.PyCallbackIOReader(fh.read)
            index = faiss.read_index(reader)
            del reader
        if not isinstance(ids, list) or not all(i is None or isinstance(i, str) for i in ids):
            raise ValueError(f"{path}: corrupt id table")
        kind = meta.get("kind")
        params = {**meta.get("params", {}), **overrides}
        try:
            inst = cls(int(meta["dim"]), **params)
        except (KeyError, TypeError) as exc:
            raise ValueError(f"{path}: bad metadata: {exc}") from exc
        expected_type = faiss.IndexHNSWFlat if kind == KIND_HNSW else faiss.IndexFlatIP
        if kind not in (KIND_FLAT, KIND_HNSW) or not isinstance(index, expected_type):
            raise ValueError(f"{path}: index kind {kind!r} does not match {type(index).__name__}")
        if index.d != inst._dim or index.ntotal != len(ids):
            raise ValueError(
                f"{path}: faiss index has d={index.d}, ntotal={index.ntotal}; "
                f"metadata says dim={inst._dim}, rows={len(ids)}"
            )
        if kind == KIND_HNSW:
            index.hnsw.efSearch = inst._ef_search
        inst._index = index
        inst._kind = kind
        inst._ids = ids
        inst._pos = {pid: row for row, pid in enumerate(ids) if pid is not None}
        if len(inst._pos) != sum(1 for pid in ids if pid is not None):
            raise ValueError(f"{path}: duplicate product ids in id table")
        inst._alive = np.fromiter((pid is not None for pid in ids), dtype=bool, count=len(ids))
        inst._dead = len(ids) - len(inst._pos)
        inst._refresh_bits()
        return inst

    @staticmethod
    def read_metadata(path: Path) -> dict[str, Any] | None:
        """The metadata block of a saved index, or None if missing or not a saved index."""
        try:
            with open(path, "rb") as fh:
                return _read_meta(fh, Path(path))
        except (OSError, ValueError):
            return None

    @staticmethod
    def stored_fingerprint(path: Path) -> str | None:
        """The fingerprint saved with the index at ``path`` (reads only the header).

        None if the file is missing or is not a readable saved index.
        """
        meta = VectorIndex.read_metadata(path)
        if meta is None:
            return None
        fingerprint = meta.get("fingerprint")
        return fingerprint if isinstance(fingerprint, str) else None


@contextlib.contextmanager
def _omp_threads(n: int) -> Iterator[None]:
    """Run faiss with ``n`` OpenMP threads on this thread (the setting is per thread)."""
    previous = faiss.omp_get_max_threads()
    if previous == n:
        yield
        return
    faiss.omp_set_num_threads(n)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(previous)


def _packed_membership(rows: np.ndarray, n: int) -> np.ndarray:
    """Bitmap (little-endian bits, as faiss.IDSelectorBitmap reads them) of ``rows`` in ``n``."""
    member = np.zeros(n, dtype=bool)
    member[rows] = True
    return np.packbits(member, bitorder="little")


def _bit_masks(rows: np.ndarray) -> np.ndarray:
    return np.left_shift(np.uint8(1), (rows & 7).astype(np.uint8))


def _read_len(fh: BinaryIO, path: Path) -> int:
    raw = fh.read(_LEN.size)
    if len(raw) != _LEN.size:
        raise ValueError(f"{path}: truncated vector index file")
    return int(_LEN.unpack(raw)[0])


def _read_meta(fh: BinaryIO, path: Path) -> dict[str, Any]:
    if fh.read(len(_MAGIC)) != _MAGIC:
        raise ValueError(f"{path}: not a vitrine vector index file")
    size = _read_len(fh, path)
    if size > _MAX_META_BYTES:
        raise ValueError(f"{path}: metadata block too large ({size} bytes)")
    try:
        meta = json.loads(fh.read(size))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: corrupt metadata: {exc}") from exc
    if not isinstance(meta, dict) or meta.get("format") != _FORMAT:
        raise ValueError(f"{path}: not a vitrine vector index file")
    if meta.get("version") != _FORMAT_VERSION:
        raise ValueError(f"{path}: unsupported vector index version {meta.get('version')!r}")
    return meta


def _fsync_dir(directory: Path) -> None:
    """Make a rename durable (best effort; not every platform can open directories)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
