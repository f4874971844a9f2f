"""Nearest-neighbour index over product embeddings, keyed by the shop's product ids.

:class:`VectorIndex` maps string product ids (SKUs such as ``"0111565001"``; leading
zeros are kept) to float32 vectors and answers maximum-inner-product queries. For
L2-normalised vectors the score is the cosine similarity.

Storage
    Below ``hnsw_threshold`` live vectors the index is an exact ``faiss.IndexFlatIP``;
    once the count reaches the threshold it is rebuilt as ``faiss.IndexHNSWFlat``
    (``METRIC_INNER_PRODUCT``), or ``IndexHNSWSQ`` with ``storage="float16"``. In both
    cases the faiss label of a vector is its row (insertion position); a Python list maps
    rows to product ids and a dict maps ids back to rows.

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
    :meth:`VectorIndex.save` writes one file: the faiss index, the row-to-id table and a
    JSON metadata block (dim, kind, parameters, fingerprint, counts), atomically
    (:mod:`vitrine.index.index_file`). ``load(mmap=True)`` maps the stored vectors
    read-only (shared by every process); the first append reads an owned copy of the
    same file first (faiss cannot grow a mapped index).

Parts: this module holds the index; :mod:`~vitrine.index.concurrency` its locking,
:mod:`~vitrine.index.filtering` the bitmaps and the filter cache,
:mod:`~vitrine.index.index_file` its file format.
"""

from __future__ import annotations

import contextlib
import itertools
import math
import threading
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import faiss
import numpy as np

from vitrine.index.concurrency import ReadWriteLock, omp_threads
from vitrine.index.faiss_storage import (
    KIND_FLAT,
    KIND_HNSW,
    STORAGES,
    as_matrix,
    exact_top_k,
    flat_storage,
    gather,
    new_faiss_index,
    storage_of,
)
from vitrine.index.filtering import FilterRowCache, bit_masks, packed_membership
from vitrine.index.index_file import MappedSource, read_index_file, read_metadata, write_index_file

__all__ = ["KIND_FLAT", "KIND_HNSW", "Hit", "VectorIndex"]

# Vectors added to an HNSW graph per write-locked step: searches wait at most one chunk
# (HNSW inserts cost ~1-3 ms each at 100k x 1280 on 2 cores, so ~30-100 ms).
_HNSW_ADD_CHUNK: Final = 32
# Rows copied at a time when rebuilding (bounds temporary memory: 16k x 1280 x 4 B = 84 MB).
_GATHER_CHUNK: Final = 16_384


@dataclass(frozen=True, slots=True)
class Hit:
    """One search result: a product id and its inner-product score (cosine if normalised)."""

    product_id: str
    score: float


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
        storage: ``"float32"``, or ``"float16"`` (half the bytes) for the HNSW vectors.

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
        storage: str = "float32",
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
        if storage not in STORAGES:
            raise ValueError(f"storage must be one of {STORAGES}, got {storage!r}")
        self._storage = storage
        self._dim = int(dim)
        self._hnsw_threshold = int(hnsw_threshold)
        self._hnsw_m = int(hnsw_m)
        self._ef_construction = int(ef_construction)
        self._ef_search = int(ef_search)
        self._compact_ratio = float(compact_ratio)
        self._exact_filter_max = int(exact_filter_max)

        self._mutex = threading.RLock()  # serialises mutations, rebuilds and saves
        self._rw = ReadWriteLock()  # searches read; in-place changes and swaps write

        self._kind: str = KIND_FLAT
        self._index: Any = self._new_faiss_index(KIND_FLAT)
        self._source: MappedSource | None = None  # the file of a mapped index
        self._ids: list[str | None] = []  # row -> product id (None = tombstone)
        self._pos: dict[str, int] = {}  # product id -> row
        self._alive = np.zeros(0, dtype=bool)
        self._alive_bits: np.ndarray | None = None  # packed _alive, only while tombstones exist
        self._dead = 0
        self._generation = 0  # bumped by every change of rows; keys the filter cache
        self._filter_cache = FilterRowCache()

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
            "storage": self._storage,
        }

    @property
    def storage(self) -> str:
        """How the current faiss index keeps its vectors (a flat index: float32)."""
        return storage_of(self._index)

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
        matrix = as_matrix(self._dim, vectors, "vectors")
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
        if self._source is not None:  # mapped: read an owned copy first (searches go on)
            owned, self._source = self._source.read_owned(), self._source.close()
            with self._rw.write():
                self._index = owned
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
        stored = flat_storage(self._index, self._kind)
        for start in range(0, len(rows), _GATHER_CHUNK):
            new_index.add(np.ascontiguousarray(gather(stored, rows[start : start + _GATHER_CHUNK])))
        new_ids: list[str | None] = [self._ids[int(r)] for r in rows]
        if extra_ids:
            assert extra_vectors is not None
            new_index.add(extra_vectors)
            new_ids.extend(extra_ids)
        new_pos = {pid: i for i, pid in enumerate(new_ids) if pid is not None}
        del stored
        with self._rw.write():
            self._index, self._source = new_index, self._source and self._source.close()
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
        q = as_matrix(self._dim, query, "query")
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
        return self._search(as_matrix(self._dim, queries, "queries"), k, allowed, exclude)

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
        threads = omp_threads(1) if nq == 1 else contextlib.nullcontext()
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
                    bits = packed_membership(candidates, int(self._index.ntotal))
                elif excluded.size:
                    bits = bits.copy()
                    np.bitwise_and.at(bits, excluded >> 3, ~bit_masks(excluded))
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
                    np.bitwise_and.at(bits, excluded >> 3, ~bit_masks(excluded))
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
        """Sorted rows of ``allowed``, and their packed bitmap when past the exact limit
        (a ``frozenset`` passed again while the index is unchanged reuses its mapping)."""
        cacheable = isinstance(allowed, frozenset)
        if cacheable:
            cached = self._filter_cache.get(allowed, self._generation)  # type: ignore[arg-type]
            if cached is not None:
                return cached
        rows = np.unique(self._rows_of(allowed))
        bits = None
        if rows.size > self._exact_filter_max:
            bits = packed_membership(rows, int(self._index.ntotal))
        if cacheable:
            self._filter_cache.put(allowed, self._generation, rows, bits)  # type: ignore[arg-type]
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
        flat = flat_storage(self._index, self._kind)
        scores, best = exact_top_k(flat, queries, rows, k)
        ids = self._ids
        return [
            [
                Hit(ids[int(r)], float(sc))  # type: ignore[arg-type]
                for sc, r in zip(scores[i], best[i], strict=True)
            ]
            for i in range(queries.shape[0])
        ]

    def _new_faiss_index(self, kind: str) -> Any:
        return new_faiss_index(
            kind, self._dim, self._hnsw_m, self._ef_construction, self._ef_search, self._storage
        )

    # ------------------------------------------------------------------ persistence

    def save(self, path: Path, *, fingerprint: str = "") -> None:
        """Write the index, id table and metadata to ``path`` atomically
        (see :mod:`vitrine.index.index_file`)."""
        with self._mutex:
            meta = {
                "dim": self._dim,
                "kind": self._kind,
                "params": self.params,
                "fingerprint": fingerprint,
                "count": len(self._pos),
                "rows": int(self._index.ntotal),
                "tombstones": self._dead,
            }
            write_index_file(path, meta, self._ids, self._index)

    @classmethod
    def load(cls, path: Path, *, mmap: bool = False, **overrides: float | str) -> VectorIndex:
        """Read an index written by :meth:`save` (``mmap``: its vectors mapped read-only).

        ``overrides`` replace saved constructor parameters (e.g. ``ef_search=...`` from
        the current settings); ``hnsw_m`` / ``ef_construction`` then apply to rebuilds only.
        """
        path = Path(path)
        meta, ids, index, inst_source = read_index_file(path, mmap=mmap)
        kind = meta.get("kind")
        params = {**meta.get("params", {}), **overrides}
        try:
            inst = cls(int(meta["dim"]), **params)
        except (KeyError, TypeError) as exc:
            raise ValueError(f"{path}: bad metadata: {exc}") from exc
        expected_type = faiss.IndexHNSW if kind == KIND_HNSW else faiss.IndexFlatIP
        if kind not in (KIND_FLAT, KIND_HNSW) or not isinstance(index, expected_type):
            raise ValueError(f"{path}: index kind {kind!r} does not match {type(index).__name__}")
        if index.d != inst._dim or index.ntotal != len(ids):
            raise ValueError(
                f"{path}: faiss index has d={index.d}, ntotal={index.ntotal}; "
                f"metadata says dim={inst._dim}, rows={len(ids)}"
            )
        if kind == KIND_HNSW:
            index.hnsw.efSearch = inst._ef_search
        inst._index, inst._source = index, inst_source
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
        return read_metadata(path)

    @staticmethod
    def stored_fingerprint(path: Path) -> str | None:
        """The fingerprint saved with the index at ``path`` (reads only the metadata);
        None if the file is missing or is not a readable saved index."""
        fingerprint = (VectorIndex.read_metadata(path) or {}).get("fingerprint")
        return fingerprint if isinstance(fingerprint, str) else None
