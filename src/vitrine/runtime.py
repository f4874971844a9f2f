"""The composition root: every part of one shop's Vitrine, built once, in dependency order.

The API, the admin UI and the command line each build one :class:`Runtime` and take
the services they need from it; the services themselves get their dependencies through
their constructors and never see the runtime. Heavy parts (the CNN, the index) are
built on first use, so that commands which do not need them start fast; a part that
was never built is never loaded by a background task either (:meth:`Runtime.opened`).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Generic, TypeVar

import numpy as np

from vitrine.accounts.keys import KeyService
from vitrine.ads.service import AdService
from vitrine.ads.store import AdStore
from vitrine.catalog.blob_stores import open_blob_store
from vitrine.catalog.blobs import BlobStore
from vitrine.catalog.cards import ProductCards
from vitrine.catalog.database import make_engine, migrate
from vitrine.catalog.feed import ProductFeed
from vitrine.catalog.image_urls import ImageSigner
from vitrine.catalog.products import ProductService
from vitrine.catalog.public_images import PublicImages
from vitrine.catalog.s3 import S3Options
from vitrine.catalog.store import CatalogStore
from vitrine.catalog.tryon_service import TryOnCategories, TryOnService
from vitrine.classify.cnn_service import CnnService
from vitrine.classify.registry import ModelRegistry
from vitrine.classify.service import ClassificationService
from vitrine.cluster.job_queue import LABEL_CATALOG, JobQueue
from vitrine.cluster.job_store import JobStore
from vitrine.cluster.service_settings import CNN_VERSION, ServiceSettings
from vitrine.config import Settings, load_settings
from vitrine.index.photo_search import PhotoSearch
from vitrine.index.product_finder import ProductFinder
from vitrine.index.scene_search import SceneSearch
from vitrine.index.visual_search import VisualSearch
from vitrine.private_fs import secure_home
from vitrine.recommend.service import RecommendationService
from vitrine.vision.analyzer import ImageAnalysis, ImageAnalyzer
from vitrine.vision.batcher import MicroBatcher
from vitrine.vision.decode import DecodeLimits
from vitrine.vision.embedding import Embedder
from vitrine.webhooks.service import DeliveryOptions, WebhookService
from vitrine.webhooks.store import WebhookStore

T = TypeVar("T")


#: Catalog photos the automatic int8 model is calibrated on (``prepare_auto_int8``).
AUTO_INT8_PHOTOS = 256


class _Part(Generic[T]):
    """A part built on first use (once, even under concurrent first uses)."""

    def __init__(self, build: Callable[[], T]) -> None:
        self._build = build
        self._value: T | None = None
        self._lock = threading.Lock()

    def get(self) -> T:
        value = self._value
        if value is None:
            with self._lock:
                if self._value is None:
                    self._value = self._build()
                value = self._value
        return value

    @property
    def built(self) -> T | None:
        return self._value

    def set(self, value: T) -> None:
        with self._lock:
            self._value = value


class Runtime:
    """One shop's Vitrine: settings, database, blob store, and every service over them."""

    def __init__(self, settings: Settings | None = None) -> None:
        self.settings = settings or load_settings()
        secure_home(self.settings.home)  # 0700, tightened if an older home is looser
        self.engine = make_engine(self.settings.resolved_database_url)
        migrate(self.engine)
        self.store = CatalogStore(self.engine)
        self.blobs: BlobStore = open_blob_store(
            self.settings.resolved_blob_url, S3Options.from_settings(self.settings)
        )
        self.keys = KeyService(self.engine)
        # Values every process follows while running (the CNN in service).
        self.service_settings = ServiceSettings(self.engine)
        # Background jobs (labelling the catalog, training, evaluations): queued here,
        # run by the leading process (vitrine.jobs.background has their handlers).
        self.jobs = JobQueue(JobStore(self.engine))
        # Webhooks: events are queued durably here by any process; the leading process
        # sends them (vitrine.api.app runs the delivery loop).
        self.webhooks = WebhookService(
            WebhookStore(self.engine), DeliveryOptions.from_settings(self.settings)
        )
        # Called with the size of every CNN batch the service runs (metrics hook).
        self.on_batch: Callable[[int], None] | None = None
        # Called with the seconds of every CNN call the service runs (metrics hook).
        self.on_inference: Callable[[float], None] | None = None
        self._embedder = _Part(self._build_embedder)
        self._analyzer = _Part(lambda: ImageAnalyzer(self.embedder, self.limits))
        self._batcher = _Part(self._build_batcher)
        self._search = _Part(self._build_search)
        self._classification = _Part(lambda: self.classification_for(None))
        self._recommendations = _Part(
            lambda: RecommendationService(
                self.settings, self.engine, self.store, self.webhooks.publish
            )
        )
        self._products = _Part(self._build_products)
        self.cnn = CnnService(
            self.settings.model_dir,
            self.jobs,
            lambda: self.cnn_version,
            self.check_cnn_version,
        )
        self.tryon = TryOnService(
            self.store, self.blobs, self.limits, TryOnCategories.from_settings(self.settings)
        )
        # The products in real photos: the newest trained localiser (none: not found).
        self.finder = ProductFinder(self.settings.model_dir)
        self._photo_search = _Part(
            lambda: PhotoSearch(self.search, self.batcher.analyze, self.limits, self.finder)
        )
        self._scene_search = _Part(
            lambda: SceneSearch(self.photo_search, self.finder, self._scene_category)
        )
        self.ads = AdService(
            AdStore(self.engine),
            lambda: self.scene_search,
            lambda product_id: self.search.describe(product_id),
            self.blobs,
            self.settings.ads_category_field or self.settings.scene_category_field,
        )
        self.feed = ProductFeed(self.store, self.settings)
        # Storefront widgets: product cards, their photos behind signed addresses.
        self.image_signer = ImageSigner.from_settings(self.settings)
        self.public_images = PublicImages(
            self.store, self.blobs, self.settings.public_images, self.image_signer
        )
        self.cards = ProductCards(self.store, self.settings, self.image_signer)

    # -- parts --------------------------------------------------------------------------

    @property
    def limits(self) -> DecodeLimits:
        return DecodeLimits(
            max_bytes=self.settings.max_image_bytes, max_pixels=self.settings.max_image_pixels
        )

    @property
    def embedder(self) -> Embedder:
        """The CNN (loaded, or exported and loaded, on first use)."""
        return self._embedder.get()

    @property
    def analyzer(self) -> ImageAnalyzer:
        return self._analyzer.get()

    @property
    def batcher(self) -> MicroBatcher:
        """The CNN's micro-batcher: concurrent requests share model calls."""
        return self._batcher.get()

    @property
    def search(self) -> VisualSearch:
        """The visual index over the catalog (loaded or rebuilt on first use)."""
        return self._search.get()

    @property
    def photo_search(self) -> PhotoSearch:
        return self._photo_search.get()

    @property
    def scene_search(self) -> SceneSearch:
        """Shop the look: the products in a photo, each with its matches."""
        return self._scene_search.get()

    def _scene_category(self, analysis: ImageAnalysis) -> str | None:
        categories = self.classification.describe(analysis)["categories"]
        chosen = categories.get(self.settings.scene_category_field) or next(
            iter(categories.values()), None
        )
        return None if chosen is None or chosen.get("value") is None else str(chosen["value"])

    @property
    def classification(self) -> ClassificationService:
        """Label fields and tags: active models, corrections, (re)training."""
        return self._classification.get()

    @property
    def recommendations(self) -> RecommendationService:
        """Events and recommendations (models load or train on ``start()``)."""
        return self._recommendations.get()

    @property
    def products(self) -> ProductService:
        """Adding, replacing, changing and deleting products in real time."""
        return self._products.get()

    def opened(self) -> dict[str, Any]:
        """The heavy parts built so far, by name: what background tasks may update
        without loading anything themselves."""
        parts = {
            "search": self._search.built,
            "recommendations": self._recommendations.built,
            "classification": self._classification.built,
            "batcher": self._batcher.built,
        }
        return {name: part for name, part in parts.items() if part is not None}

    def override(self, **parts: Any) -> None:
        """Use these parts instead of building them (tests: an index without a CNN...);
        parts built from them afterwards get them."""
        for name, part in parts.items():
            slot = getattr(self, f"_{name}", None)
            if not isinstance(slot, _Part):
                raise ValueError(f"{name!r} is not a part of the runtime")
            slot.set(part)

    def catalog_changed(self, product_ids: Sequence[str]) -> bool:
        """Bring the parts built so far in step with the database for these products
        (changes made through another process); False when none was built."""
        opened = self.opened()
        if "search" in opened:
            self.search.reload(product_ids)
        if "recommendations" in opened:  # new products join the lists at once
            self.recommendations.catalog_changed(product_ids)
        return "search" in opened

    def classification_for(self, embedding_version: str | None) -> ClassificationService:
        """A classification service reading the embeddings of ``embedding_version``
        (None: the CNN in service)."""
        version: str | Callable[[], str] = embedding_version or (
            lambda: self.embedder.model_version
        )
        service = ClassificationService(
            self.settings,
            self.store,
            ModelRegistry(self.engine, self.blobs),
            version,
            self.webhooks.publish,
        )
        if embedding_version is None:  # the models in service label the whole catalog
            service.on_activated = self.label_catalog
        return service

    def label_catalog(self, fields: Sequence[str] | None = None, relabel: bool = False) -> dict:
        """Queue the job that labels every product the shop left without a value."""
        params = {"fields": sorted(fields) if fields else None, "relabel": relabel}
        return self.jobs.submit(LABEL_CATALOG, params)

    def _build_embedder(self) -> Embedder:
        switched = self.service_settings.get(CNN_VERSION)
        return self.embedder_for(switched) if switched else self._configured_embedder()

    def _configured_embedder(self) -> Embedder:
        s = self.settings
        if s.embedding_precision == "auto" and not s.embedding_model:
            return Embedder.for_version(
                s.model_dir, self.auto_cnn_version(), s.embedding_threads or None, s.top_labels
            )
        return Embedder(
            s.model_dir,
            precision=s.embedding_precision,
            threads=s.embedding_threads or None,
            top_labels=s.top_labels,
            model=s.embedding_model,
        )

    def auto_cnn_version(self) -> str:
        """The pretrained CNN version ``embedding_precision = "auto"`` serves.

        A catalog keeps the version its vectors were made by (an existing fp32 home stays
        fp32, an int8 one keeps its calibration); an empty catalog gets int8 where the CPU
        runs it fast and an int8 model exists (``prepare_auto_int8`` makes one), else fp32.
        """
        from vitrine.classify.finetune.export import base_version, is_finetuned
        from vitrine.vision.embedding import auto_precision
        from vitrine.vision.onnx_export import MODEL_NAME, weights_sha12
        from vitrine.vision.quantize import int8_path, latest_int8_model

        stored = self.store.primary_embedding_version()
        int8_prefix = f"{MODEL_NAME}-int8-{weights_sha12()}-"
        if stored == base_version() or (
            stored is not None
            and stored.startswith(int8_prefix)
            and not is_finetuned(stored)
            and int8_path(self.settings.model_dir, stored[len(int8_prefix) :]).is_file()
        ):
            return stored
        if auto_precision(self.settings.model_dir) == "int8":
            calibration = latest_int8_model(self.settings.model_dir)[1]
            return f"{MODEL_NAME}-int8-{weights_sha12()}-{calibration}"
        return base_version()

    def prepare_auto_int8(self, photos: Iterable[np.ndarray]) -> bool:
        """Calibrate the int8 model ``auto`` wants from these catalog photos (RGB, the first
        256 are read), when it wants one and none exists; True when one was made."""
        from vitrine.vision.quantize import quantize_int8

        if not self.needs_auto_int8():
            return False
        quantize_int8(self.settings.model_dir, photos, max_images=AUTO_INT8_PHOTOS)
        return True

    def needs_auto_int8(self) -> bool:
        """True when ``auto`` would serve int8 to this (empty) catalog but no int8 model
        exists yet: the next bulk import calibrates one on its first photos."""
        from vitrine.vision.cpu import has_fast_int8
        from vitrine.vision.embedding import auto_precision

        return (
            self.settings.embedding_precision == "auto"
            and not self.settings.embedding_model
            and self._embedder.built is None
            and not self.service_settings.get(CNN_VERSION)
            and has_fast_int8()
            and auto_precision(self.settings.model_dir) == "fp32"
            and self.store.primary_embedding_version() is None
        )

    def embedder_for(self, version: str) -> Embedder:
        """The CNN of one model version: a fine-tuned one, or the pretrained fp32 / int8."""
        from vitrine.classify.finetune.export import is_finetuned

        s = self.settings
        if is_finetuned(version):
            embedder = Embedder(
                s.model_dir,
                threads=s.embedding_threads or None,
                top_labels=s.top_labels,
                model=version,
            )
        else:
            try:
                embedder = Embedder.for_version(
                    s.model_dir, version, s.embedding_threads or None, s.top_labels
                )
            except (FileNotFoundError, ValueError):  # the nearest, named in the error below
                embedder = Embedder(
                    s.model_dir,
                    precision="int8" if "-int8-" in version else "fp32",
                    threads=s.embedding_threads or None,
                    top_labels=s.top_labels,
                )
        if embedder.model_version != version:
            raise ValueError(
                f"CNN version {version!r} is not available here (the nearest is "
                f"{embedder.model_version!r})"
            )
        return embedder

    # -- the CNN in service -----------------------------------------------------------

    @property
    def cnn_version(self) -> str:
        """The CNN version in service, without loading the CNN."""
        from vitrine.classify.finetune.export import base_version

        switched = self.service_settings.get(CNN_VERSION)
        built = self._embedder.built
        if switched or built is not None:
            return switched or built.model_version
        if self.settings.embedding_model or self.settings.embedding_precision == "fp32":
            return self.settings.embedding_model or base_version()
        if self.settings.embedding_precision == "auto":
            return self.auto_cnn_version()
        return self.embedder.model_version  # int8: which calibration, the loader knows

    def check_cnn_version(self, version: str) -> None:
        """Raise ValueError / FileNotFoundError unless ``version`` can be put in service
        (without loading it)."""
        from vitrine.classify.finetune.export import base_version, is_finetuned
        from vitrine.vision.onnx_export import MODEL_NAME, weights_sha12
        from vitrine.vision.quantize import Int8ModelNotFoundError, latest_int8_model

        if not version:
            raise ValueError("name the CNN version to switch to")
        if is_finetuned(version):
            if not (self.settings.model_dir / f"{version}.onnx").is_file():
                raise FileNotFoundError(f"no fine-tuned CNN {version!r} in the models folder")
            return
        known = {base_version()}
        with contextlib.suppress(Int8ModelNotFoundError):  # no int8 model: fp32 only
            calibration = latest_int8_model(self.settings.model_dir)[1]
            known.add(f"{MODEL_NAME}-int8-{weights_sha12()}-{calibration}")
        if version not in known:
            raise ValueError(
                f"no CNN version {version!r} here (the pretrained one is {base_version()!r}; "
                "`vitrine model versions` lists the fine-tuned ones)"
            )

    def use_cnn(self, version: str, loaded: Embedder | None = None) -> dict[str, Any]:
        """Serve ``version`` in this process from now on: the CNN and the index swap at
        once (the parts not built yet will build with it). ``loaded``: that version's
        CNN when the caller has it loaded already."""
        out: dict[str, Any] = {"version": version}
        embedder = self._embedder.built
        if embedder is not None and embedder.model_version != version:
            out["previous"] = embedder.swap(loaded or self.embedder_for(version))
        search = self._search.built
        out["index"] = search.switch_version(version) if search is not None else "not loaded"
        return out

    def follow_service_settings(self) -> None:
        """Apply a CNN switch made by another process (called by the change follower)."""
        switched = self.service_settings.get(CNN_VERSION)
        embedder = self._embedder.built
        if switched and embedder is not None and embedder.model_version != switched:
            self.use_cnn(switched)

    def _build_batcher(self) -> MicroBatcher:
        return MicroBatcher(
            self.analyzer.complete,
            max_batch=self.settings.embedding_batch_size,
            max_wait=self.settings.batch_wait_ms / 1000,
            on_batch=self.on_batch,
            on_timing=self.on_inference,
        )

    def _build_search(self) -> VisualSearch:
        search = VisualSearch(self.store, self.settings, self.embedder.model_version)
        search.load_or_rebuild()
        return search

    def _build_products(self) -> ProductService:
        return ProductService(
            self.store,
            self.blobs,
            self.limits,
            self.batcher.analyze,
            self.search,
            self.classification,
        )

    # -- life cycle -----------------------------------------------------------------------

    def close(self) -> None:
        """Stop what runs in the background, save the index, close the database."""
        opened = self.opened()
        if "classification" in opened:
            self.classification.stop()
        if "recommendations" in opened:
            self.recommendations.stop()
        if "batcher" in opened:
            self.batcher.close()
        if "search" in opened:
            self.search.save()
        self.webhooks.close()
        self.engine.dispose()
