"""Products in real time: add, replace, change and delete, searchable the moment they return.

Every photo is analysed before anything is written; the product, its photos and
features are then written in one transaction and the index is updated, so a bad
upload never leaves a half-written product behind.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from vitrine.catalog.blobs import BlobNotFoundError, BlobStore, check_key, image_key
from vitrine.catalog.records import aspect_rows, image_records, image_sizes
from vitrine.catalog.store import (
    CatalogStore,
    ImageRecord,
    ProductRecord,
    filterable_attributes,
    product_text,
)
from vitrine.vision.analyzer import ImageAnalysis, PreparedImage, prepare
from vitrine.vision.decode import DecodeLimits, ImageDecodeError, ImageTooLargeError

MAX_ID_LENGTH = 128
ID_RULE = f"a product id is 1 to {MAX_ID_LENGTH} characters without '/'"


def valid_product_id(product_id: str) -> str | None:
    """The id without surrounding blanks, or None when it breaks :data:`ID_RULE`."""
    product_id = product_id.strip()
    if not product_id or len(product_id) > MAX_ID_LENGTH or "/" in product_id:
        return None
    return product_id


class ProductIndex(Protocol):
    """Where products are searched (:class:`vitrine.index.visual_search.VisualSearch`)."""

    def upsert(
        self,
        ids: Sequence[str] = (),
        vectors: np.ndarray | None = None,
        attributes: Mapping[str, Mapping[str, Any]] | None = None,
        titles: Mapping[str, str | None] | None = None,
        *,
        aspects: Mapping[str, np.ndarray] | None = None,
        sizes: np.ndarray | None = None,
    ) -> None: ...

    def remove(self, ids: Collection[str]) -> None: ...


class ProductLabeller(Protocol):
    """Labels new photos (:class:`vitrine.classify.service.ClassificationService`)."""

    def label_analyses(
        self,
        ids: Sequence[str],
        analyses: Sequence[ImageAnalysis],
        texts: Sequence[str | None] | None = None,
    ) -> Any: ...


class ProductExistsError(Exception):
    """A product with this id already exists (use replace)."""


class ProductNotFoundError(KeyError):
    """No product with this id."""


class InvalidChangeError(ValueError):
    """A change a product cannot take; the message names the field."""


NOT_NULL_FIELDS = ("available", "attributes")  # NOT NULL columns: never set to None


class MissingPhotoError(ImageDecodeError):
    """A photo referenced by blob key is not in the blob store."""

    kind = "missing_photo"


@dataclass(frozen=True)
class Upload:
    """A photo's bytes; ``blob_key`` is set when it already lies in the blob store."""

    data: bytes
    filename: str
    blob_key: str | None = None


class ProductService:
    """Products in real time: every photo analysed before anything is written."""

    def __init__(
        self,
        store: CatalogStore,
        blobs: BlobStore,
        limits: DecodeLimits,
        complete: Callable[[Sequence[PreparedImage]], list[ImageAnalysis]],
        search: ProductIndex,
        classification: ProductLabeller,
    ) -> None:
        self.store = store
        self.blobs = blobs
        self.limits = limits
        self._complete = complete  # the CNN pass (the service's micro-batcher)
        self.search = search
        self.classification = classification

    def analyze(self, uploads: Sequence[Upload]) -> list[ImageAnalysis]:
        """Analyse photos (raises ImageDecodeError naming the first bad one)."""
        prepared = [prepare(u.data, u.filename, self.limits) for u in uploads]
        return self._complete(prepared)

    def save(
        self, product: ProductRecord, uploads: Sequence[Upload], *, replace: bool
    ) -> tuple[dict[str, Any], list[ImageAnalysis]]:
        """Create (or, with ``replace``, overwrite) a product with its photos."""
        store = self.store
        if not replace and store.get_product(product.id) is not None:
            raise ProductExistsError(product.id)
        analyses = self.analyze(uploads)
        records: list[ImageRecord] = []
        for position, (upload, analysis) in enumerate(zip(uploads, analyses, strict=True)):
            record = image_records(analysis, product.id, self._store_blob(upload, analysis))
            record.is_primary = position == 0
            record.position = position
            records.append(record)
        store.save_product(product, records, replace_images=replace and bool(records))
        if analyses:  # label on arrival (once a model exists); human labels still win
            self.classification.label_analyses(
                [product.id], analyses[:1], [product_text(product.title, product.description)]
            )
        saved = store.get_product(product.id)
        assert saved is not None
        self._reindex(saved, analyses[0] if analyses else None)
        return saved, analyses

    def stored_uploads(self, keys: Sequence[str]) -> list[Upload]:
        """Photos already in the blob store, referenced by key instead of uploaded.

        Raises ImageDecodeError naming a key that is missing or larger than the limit.
        """
        uploads = []
        limit = self.limits.max_bytes
        for key in keys:
            try:
                data = self.blobs.get(check_key(key))
            except (BlobNotFoundError, ValueError) as exc:
                raise MissingPhotoError(key, f"no such photo in the blob store ({exc})") from exc
            if len(data) > limit:
                raise ImageTooLargeError(key, f"file is larger than the limit of {limit} bytes")
            uploads.append(Upload(data, key, blob_key=key))
        return uploads

    def add_photo(self, product: ProductRecord, upload: Upload) -> tuple[dict[str, Any], bool]:
        """Add one photo to a product, creating the product when it does not exist.

        Idempotent: a photo the product already has (same content) changes nothing. The
        photo becomes primary only for a product without photos. Returns the stored
        product and whether the photo was new.
        """
        existing = self.store.get_product(product.id)
        if existing is None:
            saved, _ = self.save(product, [upload], replace=False)
            return saved, True
        (analysis,) = self.analyze([upload])
        record = image_records(analysis, product.id, self._store_blob(upload, analysis))
        record.is_primary = not existing["images"]
        record.position = len(existing["images"])
        added = self.store.add_images([record]) > 0
        saved = self.store.get_product(product.id)
        assert saved is not None
        self._reindex(saved, analysis if record.is_primary else None)
        return saved, added

    def _store_blob(self, upload: Upload, analysis: ImageAnalysis) -> str:
        """The photo's blob key; uploaded bytes are stored under their content hash."""
        if upload.blob_key is not None:
            return upload.blob_key
        key = image_key(analysis.prepared.content_hash, analysis.prepared.format)
        if not self.blobs.exists(key):
            self.blobs.put(key, upload.data)
        return key

    def update(self, product_id: str, changes: dict[str, Any]) -> dict[str, Any]:
        """Change some fields; raises InvalidChangeError naming a field that cannot take
        its value (a null for a NOT NULL column, a price that is not a finite number >= 0)."""
        for name in NOT_NULL_FIELDS:
            if name in changes and changes[name] is None:
                raise InvalidChangeError(f"{name} must not be null")
        price = changes.get("price")
        if price is not None and not (isinstance(price, int | float) and 0 <= price < math.inf):
            raise InvalidChangeError("price must be a finite number >= 0")
        if not self.store.update_product(product_id, changes):
            raise ProductNotFoundError(product_id)
        product = self.store.get_product(product_id)
        assert product is not None
        self._reindex(product, None)
        return product

    def delete(self, product_id: str) -> None:
        if not self.store.delete_product(product_id):
            raise ProductNotFoundError(product_id)
        self.search.remove([product_id])

    def _reindex(self, product: dict[str, Any], primary: ImageAnalysis | None) -> None:
        """Bring the index in step with a product as just stored."""
        pid = product["id"]
        attributes = filterable_attributes(
            product["attributes"], product["price"], product["available"]
        )
        if primary is None:
            self.search.upsert([], None, {pid: attributes}, {pid: product["title"]})
            return
        self.search.upsert(
            [pid],
            primary.embedding[None, :],
            {pid: attributes},
            {pid: product["title"]},
            aspects=aspect_rows([primary]),
            sizes=image_sizes([primary]),
        )
