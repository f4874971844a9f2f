"""The running Vitrine: settings, database, blob store, model and index, opened once.

Heavy parts (the CNN, the index) are opened on first use, so that commands which do
not need them start fast.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from functools import cached_property
from typing import TYPE_CHECKING

from vitrine.catalog.blob_stores import open_blob_store
from vitrine.catalog.blobs import BlobStore
from vitrine.catalog.database import make_engine, migrate
from vitrine.catalog.s3 import S3Options
from vitrine.catalog.store import CatalogStore
from vitrine.config import Settings, load_settings
from vitrine.private_fs import secure_home
from vitrine.services.batcher import MicroBatcher
from vitrine.services.visual_search import VisualSearch
from vitrine.vision.analyzer import ImageAnalyzer
from vitrine.vision.decode import DecodeLimits
from vitrine.vision.embedding import Embedder

if TYPE_CHECKING:
    from vitrine.recommend.service import RecommendationService
    from vitrine.services.classification import ClassificationService


class Vitrine:
    """One shop's Vitrine; thread-safe for concurrent readers."""

    def __init__(self, settings: Settings | None = None) -> None:
        self.settings = settings or load_settings()
        secure_home(self.settings.home)  # 0700, tightened if an older home is looser
        self.engine = make_engine(self.settings.resolved_database_url)
        migrate(self.engine)
        self.store = CatalogStore(self.engine)
        self.blobs: BlobStore = open_blob_store(
            self.settings.resolved_blob_url, S3Options.from_settings(self.settings)
        )
        self._lock = threading.Lock()
        # Called with the size of every CNN batch the service runs (metrics hook).
        self.on_batch: Callable[[int], None] | None = None
        # Called with the seconds of every CNN call the service runs (metrics hook).
        self.on_inference: Callable[[float], None] | None = None

    @property
    def limits(self) -> DecodeLimits:
        return DecodeLimits(
            max_bytes=self.settings.max_image_bytes, max_pixels=self.settings.max_image_pixels
        )

    @cached_property
    def embedder(self) -> Embedder:
        threads = self.settings.embedding_threads or None
        return Embedder(
            self.settings.model_dir,
            precision=self.settings.embedding_precision,
            threads=threads,
            top_labels=self.settings.top_labels,
            model=self.settings.embedding_model,
        )

    @cached_property
    def analyzer(self) -> ImageAnalyzer:
        return ImageAnalyzer(self.embedder, self.limits)

    @cached_property
    def batcher(self) -> MicroBatcher:
        return MicroBatcher(
            self.analyzer.complete,
            max_batch=self.settings.embedding_batch_size,
            max_wait=self.settings.batch_wait_ms / 1000,
            on_batch=self.on_batch,
            on_timing=self.on_inference,
        )

    @cached_property
    def search(self) -> VisualSearch:
        with self._lock:
            search = VisualSearch(self.store, self.settings, self.embedder.model_version)
            search.load_or_rebuild()
            return search

    @cached_property
    def classification(self) -> ClassificationService:
        """Label fields and tags: active models, corrections, (re)training."""
        from vitrine.services.classification import ClassificationService

        with self._lock:
            return ClassificationService(self)

    @cached_property
    def recommendations(self) -> RecommendationService:
        """Events and recommendations (models load or train on ``start()`` / first use)."""
        from vitrine.recommend.service import RecommendationService

        return RecommendationService(self.settings, self.engine, self.store)

    def close(self) -> None:
        if "classification" in self.__dict__:
            self.classification.stop()
        if "recommendations" in self.__dict__:
            self.recommendations.stop()
        if "batcher" in self.__dict__:
            self.batcher.close()
        if "search" in self.__dict__:
            self.search.save()
        self.engine.dispose()
