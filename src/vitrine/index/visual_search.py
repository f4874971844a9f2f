"""Visual search over the catalog: the indexes kept in step with the database.

Three in-memory structures serve queries: the faiss vector index of CNN embeddings, the
attribute index for filters, and the aspect store (colour, texture, shape, pattern and
colour-layout descriptors) that re-ranks search-by-photo candidates. The vector index is
saved beside the database with a fingerprint of the embeddings it holds; on start it is
loaded when the fingerprint still matches and rebuilt from the database when it is
missing or stale, and so are the aspect scans' indexes. The aspect store is served from
the aspect snapshot beside it (:mod:`vitrine.index.aspect_snapshot`: float16, mapped
read-only by every process, written when the index is saved) when the snapshot's
fingerprint matches the database, else read from the database and written as the new
snapshot.

Search by photo (:meth:`VisualSearch.search_photo`) takes candidates from the embedding's
ANN search and from scans of cheap aspects (:mod:`vitrine.index.aspect_scan`: exact on a
small catalog, inverted-file indexes on a large one), then orders them by the
calibrated fusion of every aspect (:mod:`vitrine.index.fusion`); see
``bench/bench_photo_search.py`` for what each part buys.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from vitrine import tracing
from vitrine.catalog.records import ASPECT_VERSIONS
from vitrine.catalog.store import EMBEDDING_KIND, CatalogStore
from vitrine.config import Settings
from vitrine.index import (
    AttributeFilter,
    AttributeIndex,
    Hit,
    VectorIndex,
    aspect_snapshot,
    parse_filter,
)
from vitrine.index.aspect_scan import AspectScans
from vitrine.index.aspect_store import AspectStore
from vitrine.index.faiss_storage import KIND_FLAT
from vitrine.index.fusion import DEFAULT_WEIGHTS, parse_weights
from vitrine.private_fs import make_private_dir
from vitrine.vision.embedding import EMBEDDING_DIM
from vitrine.vision.query import QueryDescription, TypicalAspect, catalog_aspects

log = logging.getLogger(__name__)


class UnknownProductError(KeyError):
    """No product with this id has an embedding in the index."""


class VisualSearch:
    """The catalog's visual index: vectors, aspects, filters and titles, kept in step with the
    database."""

    def __init__(self, store: CatalogStore, settings: Settings, model_version: str) -> None:
        self.store = store
        self.settings = settings
        self.model_version = model_version
        self.path: Path = settings.index_dir / f"{model_version}.faiss"
        self.vectors = self._new_index()
        self.attributes = AttributeIndex()
        self.aspects = AspectStore()
        self.scans = AspectScans(
            self.aspects,
            min_products=settings.scan_ann_min_products,
            nprobe=settings.scan_ann_nprobe,
        )
        self.scans_path: Path = settings.index_dir / "aspect-scans"
        self.typical_aspect = TypicalAspect()
        self.weights = self.parse_weights(settings.search_aspect_weights)
        self.titles: dict[str, str | None] = {}
        self._sizes: dict[str, tuple[int, int]] = {}
        self._lock = threading.Lock()
        # Serialises changes to the in-memory indexes (see ``reload``).
        self._changes = threading.RLock()
        self._stamp = 0  # counts this process's own changes
        self._touched: dict[str, int] = {}  # product id -> stamp of its latest own change
        self.dirty = False
        self.aspects_dirty = False  # aspects changed since the snapshot was written

    @property
    def snapshot_path(self) -> Path:
        """The aspect snapshot file (one for every CNN version: aspects do not depend on it)."""
        return self.settings.index_dir / "aspects.snapshot"

    @staticmethod
    def parse_weights(text: str) -> dict[str, float]:
        """Re-ranking weights from ``"name=weight,..."``; "" gives the defaults."""
        if not text.strip():
            return dict(DEFAULT_WEIGHTS)
        return parse_weights(text, known=set(DEFAULT_WEIGHTS))

    def _new_index(self) -> VectorIndex:
        s = self.settings
        return VectorIndex(
            EMBEDDING_DIM,
            hnsw_threshold=s.index_hnsw_threshold,
            hnsw_m=s.index_hnsw_m,
            ef_construction=s.index_ef_construction,
            ef_search=s.index_ef_search,
            storage=s.index_storage,
        )

    # -- lifecycle --------------------------------------------------------------------

    def load_or_rebuild(self) -> str:
        """Load the saved index if it matches the database, else rebuild; says which."""
        fingerprint = self.store.fingerprint(self.model_version)
        for pid, title, attrs in self.store.iter_attributes():
            self.attributes.set(pid, attrs)
            self.titles[pid] = title
        self._open_aspects()
        self._load_scans()
        if self.path.exists() and VectorIndex.stored_fingerprint(self.path) == fingerprint:
            try:
                vectors = self._load_vectors(self.path)
                if vectors.kind == KIND_FLAT or vectors.storage == self.settings.index_storage:
                    self.vectors = vectors
                    return "loaded"
                log.info("saved index keeps %s vectors; rebuilding as configured", vectors.storage)
            except (OSError, ValueError, RuntimeError) as exc:
                log.warning("saved index %s unreadable (%s); rebuilding", self.path, exc)
        self.rebuild()
        return "rebuilt"

    def _load_scans(self) -> None:
        """The aspect scans' saved IVF indexes when they match the database, else built."""
        fingerprint = self.store.aspect_fingerprint(ASPECT_VERSIONS)
        if not self.scans.load(self.scans_path, fingerprint):
            self.scans.rebuild()

    def _load_vectors(self, path: Path) -> VectorIndex:
        s = self.settings
        return VectorIndex.load(
            path, ef_search=s.index_ef_search, storage=s.index_storage, mmap=s.index_shared
        )

    def _open_aspects(self) -> None:
        """Serve the aspects from the snapshot when it is current, else read them from the
        database and write the snapshot (when shared)."""
        fingerprint = self.store.aspect_fingerprint(ASPECT_VERSIONS)
        path = self.snapshot_path
        current = aspect_snapshot.snapshot_fingerprint(path) == fingerprint
        if self.settings.index_shared and current:
            try:
                self._attach(aspect_snapshot.read_snapshot(path))
                return
            except (OSError, ValueError) as exc:
                log.warning("aspect snapshot %s unreadable (%s); rebuilding", path, exc)
                self.aspects, self._sizes = AspectStore(), {}
                self.scans.aspects = self.aspects
                self.typical_aspect = TypicalAspect()
        self._load_aspects()
        if self.settings.index_shared:
            self._write_snapshot(fingerprint)

    def _attach(self, snapshot: aspect_snapshot.AspectSnapshot) -> None:
        """Serve ``snapshot``'s rows and photo sizes (in place of all held)."""
        self.aspects.attach(snapshot.ids, snapshot.kinds)
        self._sizes = {
            pid: (int(w), int(h))
            for pid, (w, h) in zip(snapshot.size_ids, snapshot.sizes, strict=True)
        }
        self.typical_aspect = TypicalAspect()
        if len(snapshot.sizes):
            self.typical_aspect.add_many(snapshot.sizes)
        self.aspects_dirty = False

    def _write_snapshot(self, fingerprint: str) -> None:
        """Write the aspects held now as the snapshot, then serve them from it (this
        process's changed pages become shared ones again). Caller: no change runs."""
        ids, kinds, rows = self.aspects.export()
        size_ids = list(self._sizes)
        sizes = np.array([self._sizes[pid] for pid in size_ids], np.int64).reshape(-1, 2)
        make_private_dir(self.path.parent)
        self._attach(
            aspect_snapshot.write_snapshot(
                self.snapshot_path,
                fingerprint,
                ids,
                kinds,
                rows,
                size_ids,
                sizes,
                full_precision=self.scans.kinds,
            )
        )

    def _load_aspects(self, product_ids: Collection[str] | None = None) -> None:
        """Read the aspects and photo sizes of every product (or of ``product_ids``)."""
        self._apply_aspects(*self._read_aspects(product_ids))

    def _read_aspects(
        self, product_ids: Collection[str] | None
    ) -> tuple[list[tuple[list[str], np.ndarray, str]], list[str], np.ndarray]:
        matrices = []
        for kind, version in ASPECT_VERSIONS.items():
            ids, matrix = self.store.primary_vectors(kind, version, product_ids=product_ids)
            if ids:
                matrices.append((ids, matrix, kind))
        ids, sizes = self.store.primary_image_sizes(product_ids)
        return matrices, ids, sizes

    def _apply_aspects(
        self,
        matrices: list[tuple[list[str], np.ndarray, str]],
        size_ids: list[str],
        sizes: np.ndarray,
        keep: Collection[str] | None = None,
    ) -> None:
        """Apply what ``_read_aspects`` read (only for the ids in ``keep``, when given)."""
        for ids, matrix, kind in matrices:
            if keep is not None:
                rows = [n for n, pid in enumerate(ids) if pid in keep]
                ids, matrix = [ids[n] for n in rows], matrix[rows]
            if ids:
                self.aspects.upsert(ids, catalog_aspects({kind: matrix}), replace=False)
        kept = [n for n, pid in enumerate(size_ids) if keep is None or pid in keep]
        for n in kept:
            w, h = sizes[n]
            self._forget_size(size_ids[n])
            self._sizes[size_ids[n]] = (int(w), int(h))
        if kept:
            self.typical_aspect.add_many(np.asarray(sizes)[kept])

    def rebuild(self) -> None:
        ids, matrix = self.store.primary_vectors(EMBEDDING_KIND, self.model_version)
        index = self._new_index()
        if ids:
            index.upsert(ids, matrix)
        with self._lock:
            self.vectors = index
        self.dirty = True
        self.save()

    def switch_version(self, model_version: str) -> str:
        """Serve the embeddings of another CNN version from now on: its saved index when
        it matches the database (built beside this one by the switch job), else built
        from the database; swapped in at once, the old one saved for a way back. Says
        whether the new index was loaded or built."""
        if model_version == self.model_version:
            return "unchanged"
        path = self.settings.index_dir / f"{model_version}.faiss"
        with self._changes:  # no change lands in the old index after it was read
            self.save()
            fingerprint = self.store.fingerprint(model_version)
            how = "built"
            vectors = None
            if path.exists() and VectorIndex.stored_fingerprint(path) == fingerprint:
                try:
                    vectors = self._load_vectors(path)
                    how = "loaded"
                except (OSError, ValueError, RuntimeError) as exc:
                    log.warning("saved index %s unreadable (%s); building", path, exc)
            if vectors is None:
                ids, matrix = self.store.primary_vectors(EMBEDDING_KIND, model_version)
                vectors = self._new_index()
                if ids:
                    vectors.upsert(ids, matrix)
            with self._lock:
                self.vectors, self.model_version, self.path = vectors, model_version, path
            self.dirty = how == "built"
            self.save()
        return how

    def save(self) -> None:
        """Write the vector index, the aspect snapshot and the aspect scans' indexes, each
        when it changed."""
        with self._changes:
            fingerprint = None
            if self.aspects_dirty and self.settings.index_shared:
                fingerprint = self.store.aspect_fingerprint(ASPECT_VERSIONS)
                self._write_snapshot(fingerprint)
            if self.scans.dirty:
                make_private_dir(self.scans_path)
                fingerprint = fingerprint or self.store.aspect_fingerprint(ASPECT_VERSIONS)
                self.scans.save(self.scans_path, fingerprint)
            if not self.dirty:
                return
            make_private_dir(self.path.parent)
            self.vectors.save(self.path, fingerprint=self.store.fingerprint(self.model_version))
            self.dirty = False
            if self.settings.index_shared:  # serve the file just written: shared pages
                vectors = self._load_vectors(self.path)
                with self._lock:
                    self.vectors = vectors

    # -- changes ----------------------------------------------------------------------

    def upsert(
        self,
        ids: Sequence[str] = (),
        vectors: np.ndarray | None = None,
        attributes: Mapping[str, Mapping[str, Any]] | None = None,
        titles: Mapping[str, str | None] | None = None,
        *,
        aspects: Mapping[str, np.ndarray] | None = None,
        sizes: np.ndarray | None = None,
    ) -> None:
        """Index products: ``vectors``, ``aspects`` (kind -> matrix) and ``sizes`` (N x 2
        width, height of the primary photo) have one row per id; attributes and titles
        may be given for other products too (a change of fields only)."""
        with self._changes:
            self._touch([*ids, *(attributes or ()), *(titles or ())])
            self._upsert(ids, vectors, attributes, titles, aspects, sizes)

    def _upsert(
        self,
        ids: Sequence[str],
        vectors: np.ndarray | None,
        attributes: Mapping[str, Mapping[str, Any]] | None,
        titles: Mapping[str, str | None] | None,
        aspects: Mapping[str, np.ndarray] | None,
        sizes: np.ndarray | None,
    ) -> None:
        if aspects:
            self.aspects.upsert(list(ids), catalog_aspects(aspects))
            self.aspects_dirty = True
            self.scans.refresh(ids)
        if sizes is not None:
            self.aspects_dirty = True
            for pid, (w, h) in zip(ids, np.asarray(sizes).reshape(-1, 2), strict=True):
                self._forget_size(pid)
                self._sizes[pid] = (int(w), int(h))
                self.typical_aspect.add(int(w), int(h))
        if attributes:
            for pid, attrs in attributes.items():
                self.attributes.set(pid, attrs)
        if titles:
            self.titles.update(titles)
        if ids and vectors is not None:
            self.vectors.upsert(list(ids), vectors)
            self.dirty = True

    def _forget_size(self, product_id: str) -> None:
        old = self._sizes.pop(product_id, None)
        if old is not None:
            self.typical_aspect.remove(*old)

    def remove(self, ids: Collection[str]) -> None:
        with self._changes:
            self._touch(ids)
            self._remove(ids)

    def _touch(self, ids: Collection[str]) -> None:
        self._stamp += 1
        for pid in ids:
            self._touched[pid] = self._stamp

    def _remove(self, ids: Collection[str]) -> None:
        for pid in ids:
            self.attributes.remove(pid)
            self.titles.pop(pid, None)
            self._forget_size(pid)
        if self.aspects.remove(ids):
            self.aspects_dirty = True
        self.scans.refresh(ids)
        if self.vectors.remove(ids):
            self.dirty = True

    def reload(self, ids: Collection[str]) -> None:
        """Make the indexes hold exactly what the database holds now for these products
        (changed elsewhere, e.g. by another process); a vector already in step is kept.

        The database is read without holding the change lock (a request's own upsert or
        delete must not wait for a reload's queries). A product that this process changed
        after the reading began is left as that change made it: what was read may be
        older, and the change's own feed row brings a later reload anyway."""
        wanted = list(dict.fromkeys(ids))
        with self._changes:
            since = self._stamp
        rows = {
            pid: (title, attrs)
            for pid, title, attrs in self.store.iter_attributes(product_ids=wanted)
        }
        emb_ids, matrix = self.store.primary_vectors(
            EMBEDDING_KIND, self.model_version, product_ids=list(rows)
        )
        stored = dict(zip(emb_ids, matrix, strict=True))
        aspects = self._read_aspects(list(rows))
        with self._changes:
            current = {pid for pid in wanted if self._touched.get(pid, 0) <= since}
            self._remove([pid for pid in current if pid not in rows])
            present = [pid for pid in rows if pid in current]
            without_photo = [pid for pid in present if pid not in stored]
            if self.vectors.remove(without_photo):
                self.dirty = True
            self.aspects.remove(present)
            for pid in present:
                self._forget_size(pid)
            self._apply_aspects(*aspects, keep=set(present))
            self.aspects_dirty = True
            self.scans.refresh(present)
            changed = [
                pid
                for pid, v in stored.items()
                if pid in current and not _same(self.vectors.vector(pid), v)
            ]
            self._upsert(
                changed,
                np.stack([stored[pid] for pid in changed]) if changed else None,
                {pid: rows[pid][1] for pid in present},
                {pid: rows[pid][0] for pid in present},
                None,
                None,
            )

    # -- queries ----------------------------------------------------------------------

    def allowed(self, filters: Sequence[str | AttributeFilter] | None) -> set[str] | None:
        """The ids that pass ``filters`` (texts, or filters built by the caller)."""
        if not filters:
            return None
        parsed = [f if isinstance(f, AttributeFilter) else parse_filter(f) for f in filters]
        return self.attributes.matching_frozen(parsed)

    def search(
        self,
        vector: np.ndarray,
        k: int = 10,
        filters: Sequence[str] | None = None,
        exclude: Collection[str] = (),
    ) -> list[Hit]:
        with tracing.span("index.search", self._span_attributes("vector", k, filters)) as span:
            allowed = self.allowed(filters)
            if allowed is not None and not allowed:
                return []
            hits = self.vectors.search(vector, k, allowed=allowed, exclude=exclude)
            span.set_attribute("vitrine.index.hits", len(hits))
            return hits

    def similar(
        self, product_id: str, k: int = 10, filters: Sequence[str] | None = None
    ) -> list[Hit]:
        vector = self.vectors.vector(product_id)
        if vector is None:
            raise UnknownProductError(product_id)
        return self.search(vector, k, filters, exclude={product_id})

    def search_photo(
        self,
        query: QueryDescription,
        k: int = 10,
        filters: Sequence[str | AttributeFilter] | None = None,
        weights: Mapping[str, float] | None = None,
    ) -> list[Hit]:
        """Products that a described query photo shows (see the module docstring)."""
        with tracing.span("index.search", self._span_attributes("photo", k, filters)) as span:
            hits = self._search_photo(query, k, filters, weights)
            span.set_attribute("vitrine.index.hits", len(hits))
            return hits

    def _span_attributes(
        self, query: str, k: int, filters: Sequence[str] | None
    ) -> tracing.Attributes:
        return {
            "vitrine.index.query": query,
            "vitrine.index.k": k,
            "vitrine.index.kind": self.vectors.kind,
            "vitrine.index.size": len(self.vectors),
            "vitrine.index.filtered": bool(filters),
        }

    def _search_photo(
        self,
        query: QueryDescription,
        k: int,
        filters: Sequence[str] | None,
        weights: Mapping[str, float] | None,
    ) -> list[Hit]:
        allowed = self.allowed(filters)
        if allowed is not None and not allowed:
            return []
        n = max(k, self.settings.search_candidates)
        embedding = query.embeddings[0]
        ann = self.vectors.search(embedding, n, allowed=allowed)
        if not len(self.aspects):
            return ann[:k]
        scanned = self.scans.search(query.scan_aspects, n, allowed)
        # An ANN hit's score is its embedding cosine; a scan's own finds need theirs.
        seen = {h.product_id for h in ann}
        extra = list(dict.fromkeys(h.product_id for h in scanned if h.product_id not in seen))
        stored = self.embeddings_of(extra)
        sims = np.where(stored.any(axis=1), stored @ embedding, np.nan)
        candidates = ann + [Hit(pid, float(s)) for pid, s in zip(extra, sims, strict=True)]
        return self.aspects.rerank(query.aspects, embedding, candidates, weights or self.weights, k)

    def embeddings_of(self, ids: Sequence[str]) -> np.ndarray:
        """Stored embeddings of ``ids``, a zero row for a product without one."""
        out = np.zeros((len(ids), self.vectors.dim), np.float32)
        for i, pid in enumerate(ids):
            vector = self.vectors.vector(pid)
            if vector is not None:
                out[i] = vector
        return out

    def describe(self, product_id: str) -> tuple[str | None, dict[str, Any]]:
        """The title and attributes of a product, from memory (no database query)."""
        attrs = self.attributes.get(product_id) or {}
        flat = {k: v[0] if len(v) == 1 else list(v) for k, v in attrs.items()}
        return self.titles.get(product_id), flat

    def __len__(self) -> int:
        return len(self.vectors)


def _same(current: np.ndarray | None, stored: np.ndarray) -> bool:
    return current is not None and np.allclose(current, stored, atol=1e-6)
