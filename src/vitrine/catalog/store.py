"""The catalog store: reads and batched writes of products, images, features and labels.

Bulk paths use SQLAlchemy Core (one statement per batch); the same code runs on
SQLite and PostgreSQL, using each one's ``INSERT ... ON CONFLICT``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
from sqlalchemy import Connection, Engine, Insert, and_, delete, func, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite

from vitrine.catalog.models import Feature, Image, Label, Product, utcnow

HUMAN, MODEL = "human", "model"  # label sources

EMBEDDING_KIND = "embedding"


@dataclass
class ProductRecord:
    """A product as a shop describes it; ``attributes`` holds its free fields."""

    id: str
    title: str | None = None
    description: str | None = None
    price: float | None = None
    available: bool = True
    attributes: dict[str, Any] = field(default_factory=dict)


@dataclass
class FeatureRecord:
    """One feature row of a photo: a kind, a version and a vector or data."""

    kind: str
    version: str
    vector: np.ndarray | None = None
    data: dict[str, Any] | None = None


@dataclass
class ImageRecord:
    """One photo of a product with its features, ready to store."""

    product_id: str
    content_hash: str
    blob_key: str
    format: str
    width: int
    height: int
    byte_size: int
    is_primary: bool = True
    position: int = 0
    features: list[FeatureRecord] = field(default_factory=list)


def filterable_attributes(
    attributes: dict[str, Any] | None, price: float | None, available: bool
) -> dict[str, Any]:
    """What search filters see of a product: its free fields plus price and availability."""
    merged = dict(attributes or {})
    if price is not None:
        merged["price"] = price
    merged["available"] = bool(available)
    return merged


_LABEL_COLUMNS = (
    Label.product_id,
    Label.field,
    Label.value,
    Label.source,
    Label.confidence,
    Label.model_version,
    Label.needs_review,
    Label.updated_at,
)


def vector_to_bytes(vector: np.ndarray) -> bytes:
    return np.ascontiguousarray(vector, dtype="<f4").tobytes()


def _feature_row(image_id: int, f: FeatureRecord, now: datetime) -> dict[str, Any]:
    return {
        "image_id": image_id,
        "kind": f.kind,
        "version": f.version,
        "dim": 0 if f.vector is None else int(f.vector.size),
        "vector": None if f.vector is None else vector_to_bytes(f.vector),
        "data": f.data,
        "created_at": now,
    }


def product_text(title: str | None, description: str | None = None) -> str:
    """The text a product is classified by: its title, then its description."""
    return " ".join(part.strip() for part in (title, description) if part and part.strip())


class CatalogStore:
    """All database access of the catalog goes through here."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._dialect = engine.dialect.name

    def _insert(self, model: type) -> Insert:
        table = model.__table__  # type: ignore[attr-defined]
        if self._dialect == "postgresql":
            return postgresql.insert(table)
        if self._dialect == "sqlite":
            return sqlite.insert(table)
        raise RuntimeError(f"database dialect {self._dialect!r} is not supported")

    # -- products ---------------------------------------------------------------------

    def upsert_products(self, records: Sequence[ProductRecord]) -> None:
        if not records:
            return
        with self.engine.begin() as conn:
            self._upsert_products(conn, records)

    def _upsert_products(self, conn: Connection, records: Sequence[ProductRecord]) -> None:
        now = utcnow()
        rows = [
            {
                "id": r.id,
                "title": r.title,
                "description": r.description,
                "price": r.price,
                "available": r.available,
                "attributes": r.attributes,
                "created_at": now,
                "updated_at": now,
            }
            for r in records
        ]
        stmt = self._insert(Product)
        stmt = stmt.on_conflict_do_update(
            index_elements=["id"],
            set_={
                name: getattr(stmt.excluded, name)
                for name in (
                    "title",
                    "description",
                    "price",
                    "available",
                    "attributes",
                    "updated_at",
                )
            },
        )
        conn.execute(stmt, rows)

    def save_product(
        self, product: ProductRecord, images: Sequence[ImageRecord], *, replace_images: bool
    ) -> None:
        """Write a product and its analysed photos in one transaction (all or nothing)."""
        with self.engine.begin() as conn:
            if replace_images:
                old = select(Image.id).where(Image.product_id == product.id)
                conn.execute(delete(Feature).where(Feature.image_id.in_(old)))
                conn.execute(delete(Image).where(Image.product_id == product.id))
            self._upsert_products(conn, [product])
            if images:
                self._add_images(conn, images)

    def update_product(self, product_id: str, changes: dict[str, Any]) -> bool:
        """Change some fields of a product; ``attributes`` are merged (None removes a key)."""
        allowed = {"title", "description", "price", "available", "attributes"}
        unknown = set(changes) - allowed
        if unknown:
            raise ValueError(f"unknown product fields: {', '.join(sorted(unknown))}")
        with self.engine.begin() as conn:
            current = conn.execute(
                select(Product.attributes).where(Product.id == product_id)
            ).first()
            if current is None:
                return False
            values = dict(changes)
            if "attributes" in values:
                merged = dict(current[0] or {})
                for key, value in (values["attributes"] or {}).items():
                    if value is None:
                        merged.pop(key, None)
                    else:
                        merged[key] = value
                values["attributes"] = merged
            values["updated_at"] = utcnow()
            conn.execute(update(Product).where(Product.id == product_id).values(**values))
        return True

    def list_products(
        self,
        *,
        after: str | None = None,
        limit: int = 50,
        attributes: dict[str, str] | None = None,
        available: bool | None = None,
    ) -> list[dict[str, Any]]:
        """Products ordered by id, after the ``after`` id (keyset pagination)."""
        query = select(Product.__table__).order_by(Product.id).limit(limit)
        if after is not None:
            query = query.where(Product.id > after)
        if available is not None:
            query = query.where(Product.available == available)
        for key, value in (attributes or {}).items():
            query = query.where(Product.attributes[key].as_string() == value)
        with self.engine.connect() as conn:
            return [dict(row._mapping) for row in conn.execute(query)]

    def get_product(self, product_id: str) -> dict[str, Any] | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(Product.__table__).where(Product.id == product_id)).first()
            if row is None:
                return None
            product = dict(row._mapping)
            images = conn.execute(
                select(Image.__table__)
                .where(Image.product_id == product_id)
                .order_by(Image.is_primary.desc(), Image.position)
            ).all()
            product["images"] = [dict(i._mapping) for i in images]
            product["label_rows"] = [
                dict(r._mapping)
                for r in conn.execute(select(*_LABEL_COLUMNS).where(Label.product_id == product_id))
            ]
            for image in product["images"]:
                feats = conn.execute(
                    select(Feature.kind, Feature.version, Feature.dim, Feature.data).where(
                        Feature.image_id == image["id"]
                    )
                ).all()
                image["features"] = [dict(f._mapping) for f in feats]
            return product

    def product_texts(
        self, product_ids: Iterable[str] | None = None
    ) -> dict[str, tuple[str | None, str | None]]:
        """Title and description of every product (or of ``product_ids``)."""
        query = select(Product.id, Product.title, Product.description)
        if product_ids is not None:
            query = query.where(Product.id.in_(list(product_ids)))
        with self.engine.connect() as conn:
            return {pid: (t, d) for pid, t, d in conn.execute(query)}

    def product_ids(self) -> set[str]:
        with self.engine.connect() as conn:
            return set(conn.scalars(select(Product.id)))

    def created_times(self) -> dict[str, datetime]:
        """When each product's record was created (timezone-aware, UTC when unstated)."""
        with self.engine.connect() as conn:
            rows = conn.execute(select(Product.id, Product.created_at))
            return {pid: ts if ts.tzinfo else ts.replace(tzinfo=UTC) for pid, ts in rows if ts}

    def catalog_stamp(self) -> str:
        """Changes whenever a product is added, changed or deleted, or a photo or an
        embedding is stored: models trained on the catalog are stale when it differs."""
        with self.engine.connect() as conn:
            products = conn.execute(
                select(func.count(), func.max(Product.updated_at)).select_from(Product)
            ).one()
            images = conn.execute(select(func.count(Image.id), func.max(Image.id))).one()
            embeddings = conn.execute(
                select(func.count(Feature.id), func.max(Feature.id)).where(
                    Feature.kind == EMBEDDING_KIND
                )
            ).one()
        return "|".join(str(v) for v in (*products, *images, *embeddings))

    def count_products(self) -> int:
        with self.engine.connect() as conn:
            return int(conn.scalar(select(func.count()).select_from(Product)) or 0)

    def iter_attributes(
        self, batch: int = 10_000, product_ids: Iterable[str] | None = None
    ) -> Iterator[tuple[str, str | None, dict[str, Any]]]:
        """(id, title, attributes with price and availability) of every product (or of
        ``product_ids``)."""
        query = select(
            Product.id, Product.title, Product.attributes, Product.price, Product.available
        )
        if product_ids is not None:
            query = query.where(Product.id.in_(list(product_ids)))
        with self.engine.connect() as conn:
            result = conn.execution_options(yield_per=batch).execute(query)
            for pid, title, attributes, price, available in result:
                yield pid, title, filterable_attributes(attributes, price, available)

    def iter_feed_rows(
        self, batch: int = 5_000, product_ids: Iterable[str] | None = None
    ) -> Iterator[dict[str, Any]]:
        """Every product (or those of ``product_ids``), by id, with its primary photo's blob
        key (None: no photo)."""
        query = (
            select(
                Product.id,
                Product.title,
                Product.description,
                Product.price,
                Product.available,
                Product.attributes,
                Image.blob_key,
            )
            .outerjoin(Image, (Image.product_id == Product.id) & Image.is_primary)
            .order_by(Product.id)
        )
        if product_ids is not None:
            query = query.where(Product.id.in_(list(product_ids)))
        with self.engine.connect() as conn:
            result = conn.execution_options(yield_per=batch).execute(query)
            yield from (dict(row._mapping) for row in result)

    def delete_product(self, product_id: str) -> bool:
        with self.engine.begin() as conn:
            image_ids = select(Image.id).where(Image.product_id == product_id)
            conn.execute(delete(Feature).where(Feature.image_id.in_(image_ids)))
            conn.execute(delete(Image).where(Image.product_id == product_id))
            conn.execute(delete(Label).where(Label.product_id == product_id))
            return conn.execute(delete(Product).where(Product.id == product_id)).rowcount > 0

    # -- images and features ----------------------------------------------------------

    def image_keys(self) -> set[tuple[str, str]]:
        """Every stored (product id, content hash): what an import can skip."""
        with self.engine.connect() as conn:
            return {(p, h) for p, h in conn.execute(select(Image.product_id, Image.content_hash))}

    def primary_embedding_version(self) -> str | None:
        """The embedding model version most primary photos have (None: no embeddings)."""
        with self.engine.connect() as conn:
            row = conn.execute(
                select(Feature.version, func.count())
                .join(Image, Feature.image_id == Image.id)
                .where(Image.is_primary, Feature.kind == EMBEDDING_KIND)
                .group_by(Feature.version)
                .order_by(func.count().desc(), Feature.version.desc())
            ).first()
        return None if row is None else str(row[0])

    def save_products(
        self, products: Sequence[ProductRecord], images: Sequence[ImageRecord]
    ) -> int:
        """Upsert products and add their images in one transaction (a crash leaves no
        product of the batch without its photo); returns how many images were new."""
        if not products and not images:
            return 0
        with self.engine.begin() as conn:
            if products:
                self._upsert_products(conn, products)
            return self._add_images(conn, images) if images else 0

    def add_images(self, records: Sequence[ImageRecord]) -> int:
        """Store images with their features in one transaction; returns how many were new.

        An image already stored for the same product (same content hash) is skipped. A
        new primary image demotes the product's previous primary.
        """
        if not records:
            return 0
        with self.engine.begin() as conn:
            return self._add_images(conn, records)

    def _add_images(self, conn: Connection, records: Sequence[ImageRecord]) -> int:
        now = utcnow()
        primaries = sorted({r.product_id for r in records if r.is_primary})
        if primaries:
            conn.execute(
                update(Image).where(Image.product_id.in_(primaries)).values(is_primary=False)
            )
        stmt = (
            self._insert(Image)
            .on_conflict_do_nothing(index_elements=["product_id", "content_hash"])
            .returning(Image.id, Image.product_id, Image.content_hash)
        )
        rows = [
            {
                "product_id": r.product_id,
                "content_hash": r.content_hash,
                "blob_key": r.blob_key,
                "format": r.format,
                "width": r.width,
                "height": r.height,
                "byte_size": r.byte_size,
                "is_primary": r.is_primary,
                "position": r.position,
                "created_at": now,
            }
            for r in records
        ]
        inserted: dict[tuple[str, str], int] = {}
        for row in conn.execute(stmt, rows):
            inserted[(row.product_id, row.content_hash)] = row.id
        # Re-sent images keep their row: promote them back when they are the primary.
        existing = [r for r in records if (r.product_id, r.content_hash) not in inserted]
        for r in existing:
            if r.is_primary:
                conn.execute(
                    update(Image)
                    .where(
                        and_(
                            Image.product_id == r.product_id,
                            Image.content_hash == r.content_hash,
                        )
                    )
                    .values(is_primary=True)
                )
        feature_rows = [
            _feature_row(inserted[(r.product_id, r.content_hash)], f, now)
            for r in records
            if (r.product_id, r.content_hash) in inserted
            for f in r.features
        ]
        if feature_rows:
            conn.execute(self._insert(Feature).on_conflict_do_nothing(), feature_rows)
        return len(inserted)

    def primary_vectors(
        self, kind: str, version: str, product_ids: Iterable[str] | None = None
    ) -> tuple[list[str], np.ndarray]:
        """The ``kind`` vectors of every product's primary image, as (ids, matrix)."""
        query = (
            select(Image.product_id, Feature.vector)
            .join(Feature, Feature.image_id == Image.id)
            .where(Image.is_primary, Feature.kind == kind, Feature.version == version)
            .order_by(Image.product_id)
        )
        if product_ids is not None:
            wanted = list(product_ids)
            # Naming the images too steers SQLite to the (image, kind, version) index
            # instead of scanning every feature of the kind (~100 ms on a 35k catalog).
            images = select(Image.id).where(Image.product_id.in_(wanted))
            query = query.where(Image.product_id.in_(wanted), Feature.image_id.in_(images))
        ids: list[str] = []
        chunks: list[np.ndarray] = []
        with self.engine.connect() as conn:
            for pid, blob in conn.execution_options(yield_per=10_000).execute(query):
                ids.append(pid)
                chunks.append(np.frombuffer(blob, dtype="<f4"))
        if not chunks:
            return [], np.zeros((0, 0), dtype=np.float32)
        return ids, np.vstack(chunks).astype(np.float32, copy=False)

    def primary_image_sizes(
        self, product_ids: Iterable[str] | None = None
    ) -> tuple[list[str], np.ndarray]:
        """(ids, N x 2 array of width, height) of every product's primary image."""
        query = select(Image.product_id, Image.width, Image.height).where(Image.is_primary)
        if product_ids is not None:
            query = query.where(Image.product_id.in_(list(product_ids)))
        with self.engine.connect() as conn:
            rows = conn.execute(query).all()
        sizes = np.array([(w, h) for _, w, h in rows], np.int64).reshape(-1, 2)
        return [pid for pid, _, _ in rows], sizes

    def images_missing_feature(self, kind: str, version: str) -> list[tuple[int, str, str]]:
        """(image id, product id, blob key) of primary images without a ``kind`` feature."""
        has = select(Feature.image_id).where(Feature.kind == kind, Feature.version == version)
        query = (
            select(Image.id, Image.product_id, Image.blob_key)
            .where(Image.is_primary, Image.id.not_in(has))
            .order_by(Image.id)
        )
        with self.engine.connect() as conn:
            return [(i, p, k) for i, p, k in conn.execute(query)]

    def primary_images(self, product_ids: Iterable[str] | None = None) -> list[tuple[str, str]]:
        """(product id, blob key) of every product's primary image, by product id."""
        query = (
            select(Image.product_id, Image.blob_key)
            .where(Image.is_primary)
            .order_by(Image.product_id)
        )
        if product_ids is not None:
            query = query.where(Image.product_id.in_(list(product_ids)))
        with self.engine.connect() as conn:
            return [(p, k) for p, k in conn.execute(query)]

    def add_features(self, rows: Sequence[tuple[int, FeatureRecord]]) -> None:
        """Store features of existing images: (image id, feature); existing ones are kept."""
        if not rows:
            return
        now = utcnow()
        values = [_feature_row(image_id, f, now) for image_id, f in rows]
        with self.engine.begin() as conn:
            conn.execute(self._insert(Feature).on_conflict_do_nothing(), values)

    def fingerprint(self, version: str) -> str:
        """Changes whenever the set of primary embeddings of ``version`` changes."""
        with self.engine.connect() as conn:
            count, max_id = conn.execute(
                select(func.count(Feature.id), func.max(Feature.id))
                .join(Image, Feature.image_id == Image.id)
                .where(Image.is_primary, Feature.kind == EMBEDDING_KIND, Feature.version == version)
            ).one()
        return f"{version}|{count}|{max_id}"

    def aspect_fingerprint(self, kinds: Mapping[str, str]) -> str:
        """Changes whenever the primary photos, or their features of ``kinds`` (kind ->
        version), change: count, largest and sum of the row ids of each."""
        pairs = or_(*(and_(Feature.kind == k, Feature.version == v) for k, v in kinds.items()))
        ids = (func.count(Feature.id), func.max(Feature.id), func.sum(Feature.id))
        images = (func.count(Image.id), func.max(Image.id), func.sum(Image.id))
        with self.engine.connect() as conn:
            features = conn.execute(
                select(*ids)
                .join(Image, Feature.image_id == Image.id)
                .where(Image.is_primary, pairs)
            ).one()
            photos = conn.execute(select(*images).where(Image.is_primary)).one()
        return "|".join(str(v) for v in (*features, *photos))

    # -- labels -----------------------------------------------------------------------

    def upsert_labels(self, rows: Sequence[dict[str, Any]]) -> None:
        """Insert or overwrite labels: dicts with product_id, field, value, source and
        optionally confidence, model_version, needs_review (one row per field and source)."""
        if not rows:
            return
        now = utcnow()
        values = [
            {
                "confidence": None,
                "model_version": None,
                "needs_review": False,
                **row,
                "created_at": now,
                "updated_at": now,
            }
            for row in rows
        ]
        stmt = self._insert(Label)
        stmt = stmt.on_conflict_do_update(
            index_elements=["product_id", "field", "source"],
            set_={
                name: getattr(stmt.excluded, name)
                for name in ("value", "confidence", "model_version", "needs_review", "updated_at")
            },
        )
        with self.engine.begin() as conn:
            conn.execute(stmt, values)

    def label_states(self, field: str) -> tuple[set[str], dict[str, str | None]]:
        """Of one field: the products with a human label, and each product's model label
        version (what the catalog labelling job must not overwrite, or may skip)."""
        humans: set[str] = set()
        models: dict[str, str | None] = {}
        query = select(Label.product_id, Label.source, Label.model_version).where(
            Label.field == field
        )
        with self.engine.connect() as conn:
            for pid, source, version in conn.execute(query):
                if source == HUMAN:
                    humans.add(pid)
                else:
                    models[pid] = version
        return humans, models

    def labels(
        self,
        *,
        fields: Iterable[str] | None = None,
        source: str | None = None,
        product_ids: Iterable[str] | None = None,
        since: Any = None,
    ) -> list[dict[str, Any]]:
        """Label rows, optionally of some fields, one source, some products, or updated
        after ``since``."""
        query = select(*_LABEL_COLUMNS).order_by(Label.product_id, Label.field)
        if fields is not None:
            query = query.where(Label.field.in_(list(fields)))
        if source is not None:
            query = query.where(Label.source == source)
        if product_ids is not None:
            query = query.where(Label.product_id.in_(list(product_ids)))
        if since is not None:
            query = query.where(Label.updated_at > since)
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(query)]
