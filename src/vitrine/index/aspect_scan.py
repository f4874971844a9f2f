"""Candidate scans over the aspects that do not grow with the catalog: one IVF index per scan.

Search by photo takes candidates from the embedding's ANN search and from *scans* of cheap
aspects (:data:`vitrine.index.fusion.DEFAULT_SCANS`: the coarse colour layout; colour +
pattern), each scoring the weighted mean cosine of its aspects. An exact scan reads every
product's rows per query (:meth:`AspectStore.scan`): a few milliseconds at 35k products,
linear in the catalog. :class:`AspectScans` answers the same question sublinearly once the
catalog is large:

* each scan is a faiss inverted-file index (``IndexIVFScalarQuantizer``, 8-bit codes,
  inner product) over the concatenation of its unit aspect rows; the query is the
  concatenation of its unit rows times the scan's weights over their sum, so an inner
  product *is* the exact scan's score (up to the codes' rounding). About ``2 sqrt(N)``
  lists, ``nprobe`` of them read per query: the cost grows with the square root of the
  catalog, and the re-ranking that follows uses the exact rows anyway;
* below ``min_products`` the exact scan runs as before (cheap, and exact);
* a filter that allows at most ``exact_filter_max`` products is scored exactly on their
  rows; a larger one is a faiss ID selector, with an exact scan for a query that comes back
  short;
* changes (:meth:`refresh`) remove and re-add the changed products' codes; the lists are
  trained again when the catalog has doubled or halved since they were trained;
* :meth:`save` / :meth:`load` keep the indexes beside the vector index with a fingerprint
  of the aspects they were built from, so a restart does not train them again.

``bench/bench_aspect_scan.py`` measures recall against the exact scan and the latency of
both at growing catalog sizes.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path
from typing import Any, Final

import faiss
import numpy as np

from vitrine.index.aspect_store import AspectStore
from vitrine.index.concurrency import ReadWriteLock, omp_threads
from vitrine.index.fusion import DEFAULT_SCANS
from vitrine.index.index_file import read_index_file, read_metadata, write_index_file
from vitrine.index.ivf import train_ivf_sq8
from vitrine.index.vector_index import Hit

__all__ = ["AspectScans", "ScanIndex"]

log = logging.getLogger(__name__)

_FORMAT: Final = 1


def _unit(vector: np.ndarray) -> np.ndarray:
    v = np.asarray(vector, np.float32).reshape(-1)
    norm = float(np.linalg.norm(v))
    return v / norm if norm > 1e-12 else np.zeros_like(v)


class ScanIndex:
    """One scan (aspect kinds and their weights) as a faiss IVF index keyed by product id.

    Args:
        weights: kind -> weight of the scan (kinds with weight 0 take no part).
        dims: kind -> dimension of its rows.
        nprobe: inverted lists read per query.
    """

    def __init__(self, weights: Mapping[str, float], dims: Mapping[str, int], nprobe: int) -> None:
        self.kinds = tuple(k for k, w in weights.items() if w > 0)
        if not self.kinds:
            raise ValueError("a scan needs an aspect with a positive weight")
        self.weights = {k: float(weights[k]) for k in self.kinds}
        self.dims = {k: int(dims[k]) for k in self.kinds}
        self.dim = sum(self.dims.values())
        self.nprobe = int(nprobe)
        self.trained_on = 0  # products when the lists were trained
        self._index: Any = None
        self._ids: list[str | None] = []  # faiss label -> product id (None: removed)
        self._labels: dict[str, int] = {}  # product id -> faiss label
        self._next = 0
        self._rw = ReadWriteLock()

    def __len__(self) -> int:
        return len(self._labels)

    @property
    def trained(self) -> bool:
        return self._index is not None

    # -- vectors ----------------------------------------------------------------------

    def stack(self, rows: Mapping[str, np.ndarray]) -> np.ndarray:
        """Stored vectors: the unit rows of the scan's kinds side by side (N x dim)."""
        return np.ascontiguousarray(
            np.hstack([np.asarray(rows[k], np.float32) for k in self.kinds]), np.float32
        )

    def query(self, query_aspects: Mapping[str, Any]) -> np.ndarray | None:
        """The query vector (weighted unit rows over the weights' sum), None if no kind."""
        parts, used = [], 0.0
        for kind in self.kinds:
            q = query_aspects.get(kind)
            if isinstance(q, np.ndarray) and q.size == self.dims[kind]:
                parts.append(self.weights[kind] * _unit(q))
                used += self.weights[kind]
            else:
                parts.append(np.zeros(self.dims[kind], np.float32))
        if used == 0.0:
            return None
        return (np.concatenate(parts) / np.float32(used)).astype(np.float32)[None, :]

    # -- building and changes ---------------------------------------------------------

    def build(self, ids: Sequence[str], vectors: np.ndarray) -> None:
        """Train the lists on ``vectors`` (a sample of them) and add them all."""
        n = len(ids)
        index = train_ivf_sq8(vectors, self.nprobe)
        labels = np.arange(n, dtype=np.int64)
        index.add_with_ids(vectors, labels)
        with self._rw.write():
            self._index = index
            self._ids = list(ids)
            self._labels = {pid: i for i, pid in enumerate(ids)}
            self._next = n
            self.trained_on = n

    def remove(self, ids: Collection[str]) -> None:
        labels = [self._labels[pid] for pid in ids if pid in self._labels]
        if not labels or self._index is None:
            return
        selector = faiss.IDSelectorBatch(np.asarray(labels, np.int64))
        with self._rw.write():
            self._index.remove_ids(selector)
            for label in labels:
                del self._labels[self._ids[label]]  # type: ignore[index]
                self._ids[label] = None

    def add(self, ids: Sequence[str], vectors: np.ndarray) -> None:
        """Add products (already removed if they were present)."""
        if not len(ids) or self._index is None:
            return
        labels = np.arange(self._next, self._next + len(ids), dtype=np.int64)
        with self._rw.write():
            self._index.add_with_ids(np.ascontiguousarray(vectors, np.float32), labels)
            self._ids.extend(ids)
            for label, pid in zip(labels.tolist(), ids, strict=True):
                self._labels[pid] = label
            self._next += len(ids)

    # -- queries ----------------------------------------------------------------------

    def search(
        self, query: np.ndarray, k: int, allowed: Collection[str] | None = None
    ) -> list[Hit]:
        """The ``k`` best products by inner product with ``query`` (1 x dim)."""
        params = faiss.SearchParametersIVF()
        params.nprobe = self.nprobe
        with self._rw.read():
            if self._index is None:
                return []
            if allowed is not None:
                labels = [self._labels[p] for p in allowed if p in self._labels]
                if not labels:
                    return []
                selector = faiss.IDSelectorBatch(np.asarray(labels, np.int64))
                params.sel = selector
            with omp_threads(1):
                scores, found = self._index.search(query, k, params=params)
            return [
                Hit(self._ids[int(label)], float(score))  # type: ignore[arg-type]
                for score, label in zip(scores[0], found[0], strict=True)
                if label >= 0
            ]

    # -- files ------------------------------------------------------------------------

    def save(self, path: Path, meta: Mapping[str, Any]) -> None:
        """Write the index, its id table and ``meta`` to one file (atomically)."""
        with self._rw.read():
            extra = {"next": self._next, "trained_on": self.trained_on}
            write_index_file(path, {**meta, **extra}, self._ids, self._index)

    def load(self, path: Path, meta: Mapping[str, Any]) -> bool:
        """Read a file written by :meth:`save` with the same ``meta``; False if it differs."""
        stored = read_metadata(path)
        if stored is None or any(stored.get(key) != value for key, value in meta.items()):
            return False
        stored, table, index, _ = read_index_file(path)
        labels = {pid: label for label, pid in enumerate(table) if pid is not None}
        if index.d != self.dim or index.ntotal != len(labels) or len(table) != stored["next"]:
            raise ValueError(f"{path}: not an index of this scan")
        with self._rw.write():
            self._index = index
            self._ids = table
            self._labels = labels
            self._next = int(stored["next"])
            self.trained_on = int(stored["trained_on"])
        return True


class AspectScans:
    """The candidate scans of search by photo: exact on a small catalog, IVF on a large one.

    Args:
        aspects: the aspect store the scans read (and stay in step with through
            :meth:`refresh`).
        scans: the scans (kind -> weight each), :data:`DEFAULT_SCANS` by default.
        min_products: below this many products the scans are exact.
        nprobe: inverted lists read per query.
        exact_filter_max: a filter allowing at most this many products is scored exactly.
    """

    def __init__(
        self,
        aspects: AspectStore,
        scans: Sequence[Mapping[str, float]] = DEFAULT_SCANS,
        *,
        min_products: int = 50_000,
        nprobe: int = 24,
        exact_filter_max: int = 4096,
    ) -> None:
        if min_products < 0 or nprobe < 1 or exact_filter_max < 0:
            raise ValueError("min_products and exact_filter_max must be >= 0, nprobe >= 1")
        self.aspects = aspects
        self.scans = [dict(s) for s in scans]
        self.min_products = int(min_products)
        self.nprobe = int(nprobe)
        self.exact_filter_max = int(exact_filter_max)
        self.dirty = False
        self._indexes: list[ScanIndex] = []
        self._lock = threading.Lock()  # serialises builds and refreshes

    @property
    def kinds(self) -> set[str]:
        """The aspect kinds the scans read."""
        return {kind for weights in self.scans for kind, w in weights.items() if w > 0}

    @property
    def approximate(self) -> bool:
        """Whether queries go to the IVF indexes (else to the exact scans)."""
        return bool(self._indexes)

    def __repr__(self) -> str:
        mode = "ivf" if self.approximate else "exact"
        return f"AspectScans({mode}, products={len(self.aspects)}, scans={len(self.scans)})"

    # -- queries ----------------------------------------------------------------------

    def search(
        self,
        query_aspects: Mapping[str, Any],
        k: int,
        allowed: Collection[str] | None = None,
    ) -> list[Hit]:
        """The top ``k`` of every scan, one list after the other (as the exact scans)."""
        indexes = self._indexes
        out: list[Hit] = []
        for n, weights in enumerate(self.scans):
            index = indexes[n] if indexes else None
            out.extend(self._search_one(index, weights, query_aspects, k, allowed))
        return out

    def _search_one(
        self,
        index: ScanIndex | None,
        weights: Mapping[str, float],
        query_aspects: Mapping[str, Any],
        k: int,
        allowed: Collection[str] | None,
    ) -> list[Hit]:
        small_filter = allowed is not None and len(allowed) <= self.exact_filter_max
        query = index.query(query_aspects) if index is not None else None
        if index is None or query is None or small_filter:
            return self._exact(weights, query_aspects, k, allowed)
        hits = index.search(query, k, allowed)
        if len(hits) < k and (allowed is not None or len(hits) < len(index)):
            return self._exact(weights, query_aspects, k, allowed)
        return hits

    def _exact(
        self,
        weights: Mapping[str, float],
        query_aspects: Mapping[str, Any],
        k: int,
        allowed: Collection[str] | None,
    ) -> list[Hit]:
        try:
            return self.aspects.scan(query_aspects, weights, k, allowed=allowed)
        except ValueError:  # the query lacks every aspect of this scan
            return []

    # -- building and changes ---------------------------------------------------------

    def rebuild(self) -> None:
        """Train and fill the IVF indexes from every stored product (or drop them when the
        catalog is below ``min_products``)."""
        with self._lock:
            self._rebuild()

    def _rebuild(self) -> None:
        if len(self.aspects) < max(self.min_products, 1):
            self._indexes = []
            self.dirty = False
            return
        dims = self.aspects.kinds
        indexes = []
        for weights in self.scans:
            index = ScanIndex(weights, dims, self.nprobe)
            ids, rows = self.aspects.rows(index.kinds)
            if len(ids) < 39:
                return
            index.build(ids, index.stack(rows))
            indexes.append(index)
        self._indexes = indexes
        self.dirty = True
        log.info("aspect scans: IVF indexes built over %d products", len(self.aspects))

    def refresh(self, ids: Collection[str]) -> None:
        """Follow the aspect store after the products ``ids`` changed or were removed."""
        with self._lock:
            size = len(self.aspects)
            indexes = self._indexes
            if not indexes:
                if size >= max(self.min_products, 1):
                    self._rebuild()
                return
            trained = indexes[0].trained_on
            if size < self.min_products or size > 2 * trained or 4 * size < trained:
                self._rebuild()
                return
            wanted = list(dict.fromkeys(ids))
            for index in indexes:
                index.remove(wanted)
                present, rows = self.aspects.rows(index.kinds, wanted)
                index.add(present, index.stack(rows))
            self.dirty = True

    # -- files ------------------------------------------------------------------------

    def save(self, folder: Path, fingerprint: str) -> None:
        """Write the IVF indexes to ``folder`` (nothing on a small catalog)."""
        with self._lock:
            if not self._indexes:
                return
            for n, index in enumerate(self._indexes):
                index.save(folder / f"scan-{n}.faiss", self._meta(n, fingerprint))
            self.dirty = False

    def load(self, folder: Path, fingerprint: str) -> bool:
        """Read saved indexes written for ``fingerprint``; False (and nothing kept) if none."""
        if len(self.aspects) < max(self.min_products, 1):
            return False
        dims = self.aspects.kinds
        indexes = []
        try:
            for n, weights in enumerate(self.scans):
                index = ScanIndex(weights, dims, self.nprobe)
                path = folder / f"scan-{n}.faiss"
                if not path.exists() or not index.load(path, self._meta(n, fingerprint)):
                    return False
                indexes.append(index)
        except (OSError, ValueError, KeyError, RuntimeError) as exc:
            log.warning("saved aspect scans in %s unreadable (%s); building", folder, exc)
            return False
        with self._lock:
            self._indexes = indexes
            self.dirty = False
        return True

    def _meta(self, n: int, fingerprint: str) -> dict[str, Any]:
        return {
            "fingerprint": fingerprint,
            "scan": self.scans[n],
            "dims": {k: d for k, d in self.aspects.kinds.items() if k in self.scans[n]},
            "scan_format": _FORMAT,
        }
