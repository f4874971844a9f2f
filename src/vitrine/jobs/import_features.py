"""``vitrine import-features``: load the Parquet written by ``vitrine spark embed``.

Nothing is computed again: each good row becomes an image with its features (the
embedding, the summary and every feature vector) and a product when its id is new;
the photo is stored in the blob store (referenced where it lies when it is already in
the store's bucket and prefix). Resumable: photos already stored for their product are
skipped. Rows with an error, or made by another model version than the service's, are
reported and skipped.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from vitrine.catalog.blobs import image_key
from vitrine.catalog.records import feature_records
from vitrine.catalog.s3 import S3BlobStore, S3Options, parse_s3_url
from vitrine.catalog.store import ImageRecord, ProductRecord
from vitrine.cluster.service_settings import CNN_VERSION
from vitrine.jobs.sources import PhotoReader, is_s3
from vitrine.runtime import Runtime


@dataclass
class FeatureImportReport:
    """Counts of a feature import from Parquet."""

    rows: int = 0
    imported: int = 0
    skipped: int = 0
    rejected: list[dict[str, str]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "rows": self.rows,
            "imported": self.imported,
            "skipped_already_imported": self.skipped,
            "rejected": len(self.rejected),
            "first_rejects": self.rejected[:10],
        }


def _vector(blob: bytes) -> np.ndarray:
    return np.frombuffer(blob, dtype="<f4").astype(np.float32)


class _BlobPlacer:
    """Where a photo goes in the blob store: referenced in place, or copied by content hash."""

    def __init__(self, vitrine: Runtime) -> None:
        self.blobs = vitrine.blobs
        self.reader = PhotoReader(vitrine.limits, S3Options.from_settings(vitrine.settings))

    def place(self, source: str, content_hash: str, image_format: str) -> str:
        if is_s3(source) and isinstance(self.blobs, S3BlobStore):
            bucket, key = parse_s3_url(source)
            inside = self.blobs.blob_key(key) if bucket == self.blobs.bucket else None
            if inside is not None:
                return inside
        key = image_key(content_hash, image_format)
        if not self.blobs.exists(key):
            self.blobs.put(key, self.reader.read(source))
        return key


def _may_adopt_version(vitrine: Runtime) -> bool:
    """Whether this catalog may take the CNN version of the vectors it imports: under
    ``embedding_precision = "auto"`` a catalog keeps the version its vectors were made by,
    and an empty one has none yet (the Spark job may have embedded with another)."""
    s = vitrine.settings
    return (
        s.embedding_precision == "auto"
        and not s.embedding_model
        and not vitrine.service_settings.get(CNN_VERSION)
        and vitrine.store.primary_embedding_version() is None
    )


def _adopt_version(vitrine: Runtime, version: str, current: str) -> str:
    """Serve ``version`` from now on when it can be served here; the version in service."""
    try:
        vitrine.check_cnn_version(version)
    except (ValueError, FileNotFoundError):
        return current
    vitrine.service_settings.set(CNN_VERSION, version)
    vitrine.use_cnn(version)
    return version


def import_features(
    vitrine: Runtime, parquet: str | Path, batch_rows: int = 512
) -> FeatureImportReport:
    """Load a ``vitrine spark embed`` output (a Parquet file or folder) into the catalog."""
    import pyarrow.dataset as ds

    report = FeatureImportReport()
    search = vitrine.search
    model_version = search.model_version
    adoptable = _may_adopt_version(vitrine)
    known = vitrine.store.image_keys()
    existing = vitrine.store.product_ids()
    placer = _BlobPlacer(vitrine)
    dataset = ds.dataset(str(parquet), format="parquet")
    for batch in dataset.to_batches(batch_size=batch_rows):
        products: list[ProductRecord] = []
        images: list[ImageRecord] = []
        vectors: dict[str, np.ndarray] = {}
        for row in batch.to_pylist():
            report.rows += 1
            pid, source = row["product_id"], row["path"]
            if row["error"] is not None:
                report.rejected.append({"path": source, "product_id": pid, "reason": row["error"]})
                continue
            if adoptable and row["model_version"] != model_version:
                adoptable = False
                model_version = _adopt_version(vitrine, row["model_version"], model_version)
            if row["model_version"] != model_version:
                report.rejected.append(
                    {
                        "path": source,
                        "product_id": pid,
                        "reason": f"made by model {row['model_version']}, the service uses "
                        f"{model_version}",
                    }
                )
                continue
            if (pid, row["content_hash"]) in known:
                report.skipped += 1
                continue
            try:
                blob_key = placer.place(source, row["content_hash"], row["format"])
            except (OSError, ValueError) as exc:
                report.rejected.append({"path": source, "product_id": pid, "reason": str(exc)})
                continue
            embedding = _vector(row["embedding"])
            features = feature_records(
                row["model_version"],
                embedding,
                json.loads(row["labels"]),
                json.loads(row["summary"]),
                {k: _vector(v) for k, v in dict(row["vectors"]).items()},
                row["feature_version"],
            )
            images.append(
                ImageRecord(
                    product_id=pid,
                    content_hash=row["content_hash"],
                    blob_key=blob_key,
                    format=row["format"],
                    width=row["width"],
                    height=row["height"],
                    byte_size=row["byte_size"],
                    features=features,
                )
            )
            if pid not in existing:
                existing.add(pid)
                products.append(ProductRecord(id=pid))
            vectors[pid] = embedding
            known.add((pid, row["content_hash"]))
        vitrine.store.upsert_products(products)  # new ids only: existing products keep fields
        report.imported += vitrine.store.add_images(images)
        if vectors:  # vectors, fields and re-ranking descriptors, as stored
            search.reload(list(vectors))
    search.save()
    return report
