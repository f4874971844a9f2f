"""The catalog as it is now, over models trained on an earlier snapshot of it.

The recommendation models index products by their training snapshot of the catalog. A
product added since (or changed, or deleted) is followed here: the service reads its
current state from the database when the change feed names it (:func:`read_states`),
and :func:`extend` builds the snapshot's :class:`~vitrine.recommend.data.Dataset` with
those changes applied. Snapshot rows keep their indices; new products come after every
snapshot item, with their photo's embedding projected into the snapshot's visual space,
their category and facets coded with the snapshot's values (a value it never saw: none),
and no events. Each algorithm then answers over the extended catalog
(``Recommender.with_catalog``): the visual ones and the hybrid reach new products, the
others keep their snapshot's candidates. Deleted and unavailable products leave the
``listed`` / ``available`` masks every recommendation is drawn from.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from vitrine.catalog.store import EMBEDDING_KIND, CatalogStore
from vitrine.recommend.data import Dataset, as_scalar


@dataclass(frozen=True)
class ProductState:
    """A product as the database holds it now (None in a mapping: deleted)."""

    title: str | None
    attributes: dict[str, Any]
    embedding: np.ndarray | None  # the primary photo's raw CNN embedding

    @property
    def available(self) -> bool:
        return self.attributes.get("available", True) is not False


def read_states(
    store: CatalogStore, product_ids: Sequence[str], embedding_version: str | None
) -> dict[str, ProductState | None]:
    """The current state of these products (None: no longer in the catalog)."""
    rows = {
        pid: (title, attrs) for pid, title, attrs in store.iter_attributes(product_ids=product_ids)
    }
    vectors: dict[str, np.ndarray] = {}
    if embedding_version and rows:
        ids, matrix = store.primary_vectors(EMBEDDING_KIND, embedding_version, list(rows))
        vectors = dict(zip(ids, matrix, strict=True))
    out: dict[str, ProductState | None] = {}
    for pid in product_ids:
        row = rows.get(pid)
        out[pid] = None if row is None else ProductState(row[0], dict(row[1]), vectors.get(pid))
    return out


def extend(data: Dataset, changes: Mapping[str, ProductState | None]) -> Dataset:
    """The snapshot ``data`` with ``changes`` applied (product id -> state, None: deleted).

    The catalog's rows become every item (the snapshot's event-only items are rows that
    are not ``listed`` unless the catalog now has them); new products are appended in the
    order of ``changes``, so their indices stay put while later changes are added.
    """
    fresh = [pid for pid in changes if pid not in data.item_index]
    n0, n = data.n_catalog, data.n_items + len(fresh)
    out = data._copy()
    out.items = data.items + fresh
    out.item_index = {**data.item_index, **{pid: data.n_items + j for j, pid in enumerate(fresh)}}
    out.n_catalog = n

    def grown(values: np.ndarray, fill: Any) -> np.ndarray:
        pad = np.full((n - n0, *values.shape[1:]), fill, values.dtype)
        return np.concatenate([values, pad])

    out.titles = [*data.titles, *([None] * (n - n0))]
    out.attributes = [*data.attributes, *({} for _ in range(n - n0))]
    out.embeddings = grown(data.embeddings, 0)
    out.has_embedding = grown(data.has_embedding, False)
    out.category = grown(data.category, -1)
    out.facet_codes = grown(data.facet_codes, -1)
    out.price = grown(data.price, np.nan)
    out.available = grown(data.available, False)
    out.listed = grown(data.listed, False)
    out.created_day = grown(data.created_day, np.nan)
    categories = {c: i for i, c in enumerate(data.categories)}
    facet_values = [{v: i for i, v in enumerate(values)} for values in data.facet_values]
    for pid, state in changes.items():
        row = out.item_index[pid]
        if state is None:
            out.listed[row] = out.available[row] = False
            continue
        attrs = state.attributes
        out.titles[row], out.attributes[row] = state.title, attrs
        out.listed[row], out.available[row] = True, state.available
        price = attrs.get("price")
        out.price[row] = float(price) if isinstance(price, int | float) else np.nan
        if data.category_field:
            out.category[row] = categories.get(as_scalar(attrs.get(data.category_field)), -1)
        for j, name in enumerate(data.facets):
            out.facet_codes[row, j] = facet_values[j].get(as_scalar(attrs.get(name)), -1)
        if state.embedding is not None and state.embedding.shape[-1] == _raw_dims(data):
            out.embeddings[row] = data.projection(state.embedding)[0]
            out.has_embedding[row] = True
    out.__dict__["aspects"] = data.aspects  # shared: new products have no aspect vectors
    return out


def _raw_dims(data: Dataset) -> int:
    axes = data.projection.axes
    return data.embeddings.shape[1] if axes is None else axes.shape[1]


class LiveCatalog:
    """The catalog changes since the models' snapshot, and when to publish them.

    Removals (a product deleted or made unavailable) take effect at once: ``unlisted``
    is checked whenever a list is computed or served. Additions and other changes are
    published as a new *catalog generation* at most every ``refresh_s`` seconds, so
    that the customers' cached lists are not all recomputed at every change; a list of
    the previous generation may be served for ``refresh_s`` seconds more (while it is
    recomputed in the background), so a change is in every served list at most
    ``2 * refresh_s`` seconds after the change feed brought it.
    """

    def __init__(self, refresh_s: float) -> None:
        self.refresh_s = max(0.0, refresh_s)
        self.changes: dict[str, ProductState | None] = {}
        self.counter = 0  # changes recorded so far (a snapshot remembers where it began)
        self._changed_at: dict[str, int] = {}
        self.unlisted: set[str] = set()
        self.generation = 0
        self.pending = False  # changes recorded and not published yet
        self._published_at = -float("inf")
        self._stale_until: dict[int, float] = {}
        self.lock = threading.Lock()

    def record(self, states: Mapping[str, ProductState | None]) -> None:
        with self.lock:
            for pid, state in states.items():
                self.counter += 1
                self.changes[pid] = state  # a known product keeps its place
                self._changed_at[pid] = self.counter
                if state is None or not state.available:
                    self.unlisted.add(pid)
                else:
                    self.unlisted.discard(pid)
            self.pending = self.pending or bool(states)

    def deleted(self, product_id: str) -> bool:
        """Whether the product was deleted since the snapshot (it may not be shown)."""
        return product_id in self.changes and self.changes[product_id] is None

    def publish_in(self) -> float:
        """Seconds until the pending changes may be published (0: now)."""
        return max(0.0, self._published_at + self.refresh_s - time.monotonic())

    def rebase(self, counter: int) -> None:
        """A new snapshot, read after the first ``counter`` changes, is served: forget
        what it already holds."""
        with self.lock:
            for pid, at in list(self._changed_at.items()):
                if at <= counter:
                    del self._changed_at[pid]
                    self.changes.pop(pid, None)
            self.generation = 0
            self._stale_until.clear()
            self.pending = bool(self.changes)

    def extended(self, data: Dataset) -> tuple[Dataset, int]:
        """The snapshot ``data`` with every change so far, as the next generation."""
        with self.lock:
            changes = dict(self.changes)
            self.pending = False
        extended = extend(data, changes)
        with self.lock:
            now = time.monotonic()
            self._stale_until[self.generation] = now + self.refresh_s
            self._published_at = now
            self.generation += 1
            return extended, self.generation

    def servable(self, generation: int) -> bool:
        """Whether a list computed with that catalog generation may still be served."""
        if generation == self.generation:
            return True
        return time.monotonic() < self._stale_until.get(generation, 0.0)
