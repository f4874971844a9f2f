"""Products in real time: add, replace, change and delete, searchable the moment they return.

Every photo is analysed before anything is written; the product, its photos and
features are then written in one transaction and the index is updated, so a bad
upload never leaves a half-written product behind.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from vitrine.catalog.blobs import image_key
from vitrine.catalog.store import ImageRecord, ProductRecord, filterable_attributes
from vitrine.services.records import image_records
from vitrine.services.runtime import Vitrine
from vitrine.vision.analyzer import ImageAnalysis, prepare


class ProductExistsError(Exception):
    """A product with this id already exists (use replace)."""


class ProductNotFoundError(KeyError):
    """No product with this id."""


@dataclass(frozen=True)
class Upload:
    data: bytes
    filename: str


class ProductService:
    def __init__(self, vitrine: Vitrine) -> None:
        self.vitrine = vitrine

    def analyze(self, uploads: Sequence[Upload]) -> list[ImageAnalysis]:
        """Analyse photos (raises ImageDecodeError naming the first bad one)."""
        prepared = [prepare(u.data, u.filename, self.vitrine.limits) for u in uploads]
        return self.vitrine.batcher.analyze(prepared)

    def save(
        self, product: ProductRecord, uploads: Sequence[Upload], *, replace: bool
    ) -> tuple[dict[str, Any], list[ImageAnalysis]]:
        """Create (or, with ``replace``, overwrite) a product with its photos."""
        store = self.vitrine.store
        if not replace and store.get_product(product.id) is not None:
            raise ProductExistsError(product.id)
        analyses = self.analyze(uploads)
        records: list[ImageRecord] = []
        for position, (upload, analysis) in enumerate(zip(uploads, analyses, strict=True)):
            key = image_key(analysis.prepared.content_hash, analysis.prepared.format)
            if not self.vitrine.blobs.exists(key):
                self.vitrine.blobs.put(key, upload.data)
            record = image_records(analysis, product.id, key)
            record.is_primary = position == 0
            record.position = position
            records.append(record)
        store.save_product(product, records, replace_images=replace and bool(records))
        if analyses:  # label on arrival (once a model exists); human labels still win
            self.vitrine.classification.label_analyses([product.id], analyses[:1])
        saved = store.get_product(product.id)
        assert saved is not None
        self._reindex(saved, analyses[0] if analyses else None)
        return saved, analyses

    def update(self, product_id: str, changes: dict[str, Any]) -> dict[str, Any]:
        if not self.vitrine.store.update_product(product_id, changes):
            raise ProductNotFoundError(product_id)
        product = self.vitrine.store.get_product(product_id)
        assert product is not None
        self._reindex(product, None)
        return product

    def delete(self, product_id: str) -> None:
        if not self.vitrine.store.delete_product(product_id):
            raise ProductNotFoundError(product_id)
        self.vitrine.search.remove([product_id])

    def _reindex(self, product: dict[str, Any], primary: ImageAnalysis | None) -> None:
        """Bring the index in step with a product as just stored."""
        pid = product["id"]
        attributes = filterable_attributes(
            product["attributes"], product["price"], product["available"]
        )
        self.vitrine.search.upsert(
            [pid] if primary is not None else [],
            primary.embedding[None, :] if primary is not None else None,
            {pid: attributes},
            {pid: product["title"]},
        )
