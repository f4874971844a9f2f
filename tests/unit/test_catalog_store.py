"""Catalog store: migrations, product upserts, images with features, vectors, fingerprints."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import inspect, text

from backends import Backend
from vitrine.catalog.blob_stores import open_blob_store
from vitrine.catalog.blobs import BlobNotFoundError, LocalBlobStore, image_key
from vitrine.catalog.database import make_engine, migrate
from vitrine.catalog.s3 import S3BlobStore, S3Options
from vitrine.catalog.store import (
    EMBEDDING_KIND,
    CatalogStore,
    FeatureRecord,
    ImageRecord,
    ProductRecord,
)


@pytest.fixture()
def store(tmp_path: Path, backend: Backend) -> Iterator[CatalogStore]:
    engine = make_engine(backend.settings(tmp_path).resolved_database_url)
    migrate(engine)
    yield CatalogStore(engine)
    engine.dispose()


def image(pid: str, digest: str, vec: np.ndarray, primary: bool = True) -> ImageRecord:
    return ImageRecord(
        product_id=pid,
        content_hash=digest,
        blob_key=image_key(digest, "JPEG"),
        format="JPEG",
        width=60,
        height=80,
        byte_size=1000,
        is_primary=primary,
        features=[
            FeatureRecord(EMBEDDING_KIND, "m1", vec, {"labels": []}),
            FeatureRecord("color", "f1", vec[:3]),
        ],
    )


def test_migrations_create_schema_in_wal_mode(store: CatalogStore) -> None:
    tables = set(inspect(store.engine).get_table_names())
    assert {"products", "images", "features", "labels", "alembic_version"} <= tables
    if store.engine.dialect.name == "sqlite":
        with store.engine.connect() as conn:
            assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
    migrate(store.engine)  # idempotent


def test_upsert_keeps_string_ids_and_updates(store: CatalogStore) -> None:
    store.upsert_products([ProductRecord("0111565001", "Tights", attributes={"colour": "Black"})])
    store.upsert_products([ProductRecord("0111565001", "Tights 20 den", price=9.99)])
    product = store.get_product("0111565001")
    assert product is not None
    assert product["title"] == "Tights 20 den" and product["price"] == 9.99
    assert store.count_products() == 1
    assert store.get_product("111565001") is None


def test_images_features_and_primary_vectors(store: CatalogStore) -> None:
    store.upsert_products([ProductRecord("a"), ProductRecord("b")])
    va, vb = np.eye(4, dtype=np.float32)[0], np.eye(4, dtype=np.float32)[1]
    assert store.add_images([image("a", "h1", va), image("b", "h2", vb)]) == 2
    assert store.add_images([image("a", "h1", va)]) == 0  # same photo again: skipped
    assert store.image_keys() == {("a", "h1"), ("b", "h2")}
    ids, matrix = store.primary_vectors(EMBEDDING_KIND, "m1")
    assert ids == ["a", "b"]
    np.testing.assert_array_equal(matrix, np.stack([va, vb]))
    # A new primary photo replaces the old one in the vectors.
    vc = np.eye(4, dtype=np.float32)[2]
    store.add_images([image("a", "h3", vc)])
    ids, matrix = store.primary_vectors(EMBEDDING_KIND, "m1", ["a"])
    assert ids == ["a"]
    np.testing.assert_array_equal(matrix[0], vc)
    product = store.get_product("a")
    assert product is not None and len(product["images"]) == 2
    assert product["images"][0]["content_hash"] == "h3"


def test_fingerprint_changes_with_embeddings_and_deletes(store: CatalogStore) -> None:
    before = store.fingerprint("m1")
    store.upsert_products([ProductRecord("a")])
    store.add_images([image("a", "h1", np.ones(4, np.float32))])
    after_add = store.fingerprint("m1")
    assert after_add != before
    assert store.delete_product("a") is True
    assert store.delete_product("a") is False
    assert store.fingerprint("m1") != after_add
    assert store.primary_vectors(EMBEDDING_KIND, "m1")[0] == []


def test_blob_store_roundtrip(tmp_path: Path, backend: Backend) -> None:
    settings = backend.settings(tmp_path)
    blobs = open_blob_store(settings.resolved_blob_url, S3Options.from_settings(settings))
    assert isinstance(blobs, LocalBlobStore if backend.name == "embedded" else S3BlobStore)
    key = image_key("abcdef" + "0" * 58, "PNG")
    assert key.startswith("images/ab/cd/") and key.endswith(".png")
    blobs.put(key, b"data")
    assert blobs.exists(key) and blobs.get(key) == b"data"
    assert list(blobs.keys("images/")) == [key]
    blobs.delete(key)
    with pytest.raises(BlobNotFoundError):
        blobs.get(key)
    with pytest.raises(BlobNotFoundError):
        blobs.get("images/none.jpg")
    assert not blobs.exists("images/none.jpg")
    for bad in ("../outside", "/abs", "a//b", ""):
        with pytest.raises(ValueError, match="not a relative path"):
            blobs.put(bad, b"x")
    with pytest.raises(ValueError, match="not supported"):
        open_blob_store("ftp://host/x")
