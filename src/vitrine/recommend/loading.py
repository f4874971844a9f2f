"""Building a :class:`~vitrine.recommend.data.Dataset` from the database."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime

import numpy as np

from vitrine.catalog.store import EMBEDDING_KIND, CatalogStore
from vitrine.cluster.service_settings import CNN_VERSION, ServiceSettings
from vitrine.recommend.data import ASPECT_KINDS, CatalogProduct, Dataset
from vitrine.recommend.event_store import EventStore
from vitrine.vision.features import FEATURE_VERSION

log = logging.getLogger(__name__)


def embedding_version(store: CatalogStore) -> str | None:
    """The CNN switched into service (``vitrine model switch``), else the embedding model
    version most primary photos have (None: no embeddings)."""
    return ServiceSettings(store.engine).get(CNN_VERSION) or store.primary_embedding_version()


def _by_id(ids: list[str], matrix: np.ndarray) -> dict[str, np.ndarray]:
    return {pid: matrix[i] for i, pid in enumerate(ids)}


def load_catalog(
    store: CatalogStore, category_field: str = "", model_version: str | None = None
) -> Dataset:
    """Every product with its attributes, embedding and aspect vectors."""
    created = store.created_times()
    products = [
        CatalogProduct(pid, title, attrs, created.get(pid))
        for pid, title, attrs in store.iter_attributes()
    ]
    products.sort(key=lambda p: p.id)
    version = model_version or embedding_version(store)
    embeddings: Mapping[str, np.ndarray] = {}
    if version:
        embeddings = _by_id(*store.primary_vectors(EMBEDDING_KIND, version))
    aspects = {kind: _by_id(*store.primary_vectors(kind, FEATURE_VERSION)) for kind in ASPECT_KINDS}
    data = Dataset.from_catalog(products, embeddings, aspects, category_field)
    data.embedding_version = version
    return data


def load_dataset(
    store: CatalogStore,
    events: EventStore,
    weights: Mapping[str, float],
    *,
    category_field: str = "",
    before: datetime | None = None,
    model_version: str | None = None,
) -> Dataset:
    """The catalog and the event log (optionally only the events before ``before``).

    A stored event whose time is out of range or cannot be read is left out (counted in
    ``skipped_events``, with a warning): one bad row never stops a training.
    """
    catalog = load_catalog(store, category_field, model_version)
    data = catalog.with_events(events.iter_events(before=before), weights)
    if data.skipped_events:
        log.warning(
            "left out %d stored events whose time is before 1970, more than a day ahead "
            "or unreadable",
            data.skipped_events,
        )
    return data
