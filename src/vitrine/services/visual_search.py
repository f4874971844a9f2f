"""Visual search over the catalog: the vector index kept in step with the database.

The index is saved beside the database with a fingerprint of the embeddings it holds;
on start it is loaded when the fingerprint still matches and rebuilt from the
database when it is missing or stale.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from vitrine.catalog.store import EMBEDDING_KIND, CatalogStore
from vitrine.config import Settings
from vitrine.index import AttributeIndex, Hit, VectorIndex, parse_filter
from vitrine.vision.embedding import EMBEDDING_DIM

log = logging.getLogger(__name__)


class UnknownProductError(KeyError):
    """No product with this id has an embedding in the index."""


class VisualSearch:
    def __init__(self, store: CatalogStore, settings: Settings, model_version: str) -> None:
        self.store = store
        self.settings = settings
        self.model_version = model_version
        self.path: Path = settings.index_dir / f"{model_version}.faiss"
        self.vectors = self._new_index()
        self.attributes = AttributeIndex()
        self.titles: dict[str, str | None] = {}
        self._lock = threading.Lock()
        self.dirty = False

    def _new_index(self) -> VectorIndex:
        s = self.settings
        return VectorIndex(
            EMBEDDING_DIM,
            hnsw_threshold=s.index_hnsw_threshold,
            hnsw_m=s.index_hnsw_m,
            ef_construction=s.index_ef_construction,
            ef_search=s.index_ef_search,
        )

    # -- lifecycle --------------------------------------------------------------------

    def load_or_rebuild(self) -> str:
        """Load the saved index if it matches the database, else rebuild; says which."""
        fingerprint = self.store.fingerprint(self.model_version)
        for pid, title, attrs in self.store.iter_attributes():
            self.attributes.set(pid, attrs)
            self.titles[pid] = title
        if self.path.exists() and VectorIndex.stored_fingerprint(self.path) == fingerprint:
            try:
                self.vectors = VectorIndex.load(self.path, ef_search=self.settings.index_ef_search)
                return "loaded"
            except (OSError, ValueError, RuntimeError) as exc:
                log.warning("saved index %s unreadable (%s); rebuilding", self.path, exc)
        self.rebuild()
        return "rebuilt"

    def rebuild(self) -> None:
        ids, matrix = self.store.primary_vectors(EMBEDDING_KIND, self.model_version)
        index = self._new_index()
        if ids:
            index.upsert(ids, matrix)
        with self._lock:
            self.vectors = index
        self.dirty = True
        self.save()

    def save(self) -> None:
        if not self.dirty:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.vectors.save(self.path, fingerprint=self.store.fingerprint(self.model_version))
        self.dirty = False

    # -- changes ----------------------------------------------------------------------

    def upsert(
        self,
        ids: Sequence[str] = (),
        vectors: np.ndarray | None = None,
        attributes: Mapping[str, Mapping[str, Any]] | None = None,
        titles: Mapping[str, str | None] | None = None,
    ) -> None:
        if attributes:
            for pid, attrs in attributes.items():
                self.attributes.set(pid, attrs)
        if titles:
            self.titles.update(titles)
        if ids and vectors is not None:
            self.vectors.upsert(list(ids), vectors)
            self.dirty = True

    def remove(self, ids: Collection[str]) -> None:
        for pid in ids:
            self.attributes.remove(pid)
            self.titles.pop(pid, None)
        if self.vectors.remove(ids):
            self.dirty = True

    # -- queries ----------------------------------------------------------------------

    def allowed(self, filters: Sequence[str] | None) -> set[str] | None:
        if not filters:
            return None
        return self.attributes.matching_frozen([parse_filter(f) for f in filters])

    def search(
        self,
        vector: np.ndarray,
        k: int = 10,
        filters: Sequence[str] | None = None,
        exclude: Collection[str] = (),
    ) -> list[Hit]:
        allowed = self.allowed(filters)
        if allowed is not None and not allowed:
            return []
        return self.vectors.search(vector, k, allowed=allowed, exclude=exclude)

    def similar(
        self, product_id: str, k: int = 10, filters: Sequence[str] | None = None
    ) -> list[Hit]:
        vector = self.vectors.vector(product_id)
        if vector is None:
            raise UnknownProductError(product_id)
        return self.search(vector, k, filters, exclude={product_id})

    def describe(self, product_id: str) -> tuple[str | None, dict[str, Any]]:
        """The title and attributes of a product, from memory (no database query)."""
        attrs = self.attributes.get(product_id) or {}
        flat = {k: v[0] if len(v) == 1 else list(v) for k, v in attrs.items()}
        return self.titles.get(product_id), flat

    def __len__(self) -> int:
        return len(self.vectors)
