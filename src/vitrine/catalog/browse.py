"""Read-only catalog queries for people: filtered product cards, facets, labels, daily counts,
and the review queue of model labels no person has looked at yet.

Kept apart from the store's write paths: these queries join products to their primary
photo and its stored ``summary`` feature (named colours), and to their labels.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import Engine, and_, exists, func, or_, select
from sqlalchemy.orm import aliased

from vitrine.catalog.models import Feature, Image, Label, Product, utcnow
from vitrine.catalog.store import HUMAN, MODEL
from vitrine.memo import Memo

MISSING_VALUES = ("", "nan", "none", "null")  # what counts as no value (classify.dataset)


@dataclass(frozen=True)
class BrowseFilter:
    """What a person filters the catalog by; empty fields do not filter."""

    text: str = ""  # in the id or the title
    attribute: str = ""  # field=value on the shop's own fields
    color: str = ""  # primary named colour of the primary photo
    label: str = ""  # field=value of a label
    min_confidence: float = 0.0  # of that label (human labels always pass)
    available: bool | None = None

    def attribute_pair(self) -> tuple[str, str] | None:
        return _pair(self.attribute, "attribute")

    def label_pair(self) -> tuple[str, str] | None:
        return _pair(self.label, "label")


def _pair(text: str, what: str) -> tuple[str, str] | None:
    text = text.strip()
    if not text:
        return None
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise ValueError(f"{what} filter {text!r}: expected field=value")
    return key.strip(), value.strip()


@dataclass
class ProductCard:
    """One product in the catalog grid."""

    id: str
    title: str | None
    price: float | None
    available: bool
    attributes: dict[str, Any]
    image_id: int | None
    colors: list[dict[str, Any]] = field(default_factory=list)
    # labels set by a model or a person: (field, value, source, confidence), by field
    labels: list[tuple[str, str, str, float | None]] = field(default_factory=list)

    @property
    def primary_color(self) -> str | None:
        return self.colors[0]["name"] if self.colors else None


@dataclass(frozen=True)
class LabelRow:
    """One label of a product, as the product page lists it."""

    field: str
    value: str
    source: str
    confidence: float | None
    model_version: str | None
    updated_at: datetime | None


@dataclass(frozen=True)
class ReviewRow:
    """A model label that no person has confirmed or corrected yet, with its product."""

    product_id: str
    title: str | None
    image_id: int | None
    field: str
    value: str
    confidence: float | None
    model_version: str | None
    needs_review: bool


class CatalogBrowser:
    """The catalog as the admin UI pages through it: filters, facets, cards, photos."""

    def __init__(self, engine: Engine, feature_version: str) -> None:
        self.engine = engine
        self.feature_version = feature_version
        # Facets read every photo's summary (or a sample of products): kept until a
        # product or photo changes, at most a minute.
        self._facets = Memo(ttl_seconds=60.0)

    def _catalog_version(self) -> tuple[Any, Any]:
        """Changes whenever a product is saved or a photo added (two index lookups)."""
        with self.engine.connect() as conn:
            return (
                conn.scalar(select(func.max(Product.updated_at))),
                conn.scalar(select(func.max(Image.id))),
            )

    def _summary_join(self) -> Any:
        return and_(
            Feature.image_id == Image.id,
            Feature.kind == "summary",
            Feature.version == self.feature_version,
        )

    def cards(
        self,
        filters: BrowseFilter,
        *,
        after: str | None = None,
        limit: int = 48,
        ids: Sequence[str] | None = None,
    ) -> list[ProductCard]:
        """Products in id order after ``after`` (or those ``ids``, in that order), with
        their primary photo and colours."""
        primary_color = Feature.data["color"]["primary"].as_string()
        query = (
            select(
                Product.id,
                Product.title,
                Product.price,
                Product.available,
                Product.attributes,
                Image.id.label("image_id"),
                Feature.data,
            )
            .outerjoin(Image, and_(Image.product_id == Product.id, Image.is_primary))
            .outerjoin(Feature, self._summary_join())
            .order_by(Product.id)
            .limit(limit)
        )
        if after:
            query = query.where(Product.id > after)
        if ids is not None:
            query = query.where(Product.id.in_(list(ids)))
        if filters.text.strip():
            like = f"%{filters.text.strip()}%"
            query = query.where(or_(Product.id.like(like), Product.title.ilike(like)))
        if (pair := filters.attribute_pair()) is not None:
            query = query.where(Product.attributes[pair[0]].as_string() == pair[1])
        if filters.color.strip():
            query = query.where(primary_color == filters.color.strip())
        if filters.available is not None:
            query = query.where(Product.available == filters.available)
        if (pair := filters.label_pair()) is not None:
            confident = or_(
                Label.source == "human",
                func.coalesce(Label.confidence, 1.0) >= filters.min_confidence,
            )
            query = query.where(
                exists().where(
                    Label.product_id == Product.id,
                    Label.field == pair[0],
                    Label.value == pair[1],
                    confident,
                )
            )
        with self.engine.connect() as conn:
            rows = conn.execute(query).all()
            labels = self._card_labels(conn, [r.id for r in rows])
        if ids is not None:
            order = {pid: i for i, pid in enumerate(ids)}
            rows.sort(key=lambda r: order[r.id])
        return [
            ProductCard(
                id=r.id,
                title=r.title,
                price=r.price,
                available=bool(r.available),
                attributes=r.attributes or {},
                image_id=r.image_id,
                colors=list(((r.data or {}).get("color") or {}).get("colors") or []),
                labels=labels.get(r.id, []),
            )
            for r in rows
        ]

    @staticmethod
    def _card_labels(
        conn: Any, product_ids: list[str]
    ) -> dict[str, list[tuple[str, str, str, float | None]]]:
        """The labels of a page of cards in one query: a person's label wins over the
        model's for the same field; tags (``tag:*``) are left out."""
        if not product_ids:
            return {}
        rows = conn.execute(
            select(Label.product_id, Label.field, Label.value, Label.source, Label.confidence)
            .where(Label.product_id.in_(product_ids), ~Label.field.startswith("tag:"))
            .order_by(Label.product_id, Label.field)
        ).all()
        chosen: dict[tuple[str, str], Any] = {}
        for r in rows:
            key = (r.product_id, r.field)
            if key not in chosen or r.source == HUMAN:
                chosen[key] = r
        out: dict[str, list[tuple[str, str, str, float | None]]] = {}
        for (pid, name), r in chosen.items():
            out.setdefault(pid, []).append((name, r.value, r.source, r.confidence))
        return out

    def card(self, product_id: str) -> ProductCard | None:
        found = self.cards(BrowseFilter(), ids=[product_id], limit=1)
        return found[0] if found else None

    def image_blob(self, image_id: int) -> tuple[str, str] | None:
        """(blob key, format) of a stored photo."""
        with self.engine.connect() as conn:
            row = conn.execute(
                select(Image.blob_key, Image.format).where(Image.id == image_id)
            ).first()
        return (row.blob_key, row.format) if row else None

    def colors(self, limit: int = 60) -> list[tuple[str, int]]:
        """Primary colour names of primary photos, most frequent first."""
        version = self._catalog_version()
        return self._facets.get(("colors", limit), version, lambda: self._colors(limit))

    def _colors(self, limit: int) -> list[tuple[str, int]]:
        name = Feature.data["color"]["primary"].as_string()
        query = (
            select(name, func.count())
            .select_from(Image)
            .join(Feature, self._summary_join())
            .where(Image.is_primary)
            .group_by(name)
            .order_by(func.count().desc())
            .limit(limit)
        )
        with self.engine.connect() as conn:
            return [(n, int(c)) for n, c in conn.execute(query) if n]

    def attribute_values(self, sample: int = 2000, top: int = 12) -> dict[str, list[str]]:
        """The shop's own fields (from a sample of products) and their commonest values."""
        version = self._catalog_version()
        key = ("attributes", sample, top)
        return self._facets.get(key, version, lambda: self._attribute_values(sample, top))

    def _attribute_values(self, sample: int, top: int) -> dict[str, list[str]]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(Product.attributes).limit(sample)).scalars().all()
        counts: dict[str, Counter[str]] = {}
        for attributes in rows:
            for key, value in (attributes or {}).items():
                if isinstance(value, str | int | float | bool) and value != "":
                    counts.setdefault(key, Counter())[str(value)] += 1
        return {
            key: [v for v, _ in counter.most_common(top)]
            for key, counter in sorted(counts.items())
            if len(counter) > 1 or sum(counter.values()) > 1
        }

    def label_fields(self) -> dict[str, list[str]]:
        """Each label field with its values, commonest first."""
        query = (
            select(Label.field, Label.value, func.count())
            .group_by(Label.field, Label.value)
            .order_by(Label.field, func.count().desc())
        )
        out: dict[str, list[str]] = {}
        with self.engine.connect() as conn:
            for fld, value, _ in conn.execute(query):
                out.setdefault(fld, []).append(value)
        return out

    def labels(self, product_id: str) -> list[LabelRow]:
        query = (
            select(Label.__table__)
            .where(Label.product_id == product_id)
            .order_by(Label.field, Label.source)
        )
        with self.engine.connect() as conn:
            return [
                LabelRow(r.field, r.value, r.source, r.confidence, r.model_version, r.updated_at)
                for r in conn.execute(query)
            ]

    def label_field_names(self) -> list[str]:
        """Every field that has a label (from a model or a person), sorted."""
        with self.engine.connect() as conn:
            return sorted(conn.scalars(select(Label.field).distinct()))

    def field_values(self, field: str, limit: int = 20) -> list[str]:
        """The values one label field has in the labels table, commonest first."""
        query = (
            select(Label.value)
            .where(Label.field == field)
            .group_by(Label.value)
            .order_by(func.count().desc(), Label.value)
            .limit(limit)
        )
        with self.engine.connect() as conn:
            return list(conn.scalars(query))

    def digit_columns(self, sample: int = 2000) -> dict[str, bool]:
        """The shop's own fields (from a sample of products) -> whether every value of the
        field is a whole number written in digits (an id-like column)."""
        with self.engine.connect() as conn:
            rows = conn.execute(select(Product.attributes).limit(sample)).scalars().all()
        digits: dict[str, bool] = {}
        for attributes in rows:
            for key, value in (attributes or {}).items():
                if value is None or value == "" or isinstance(value, dict | list):
                    continue
                text = str(value).strip()
                is_digits = not isinstance(value, bool) and text.isdigit()
                digits[key] = digits.get(key, True) and is_digits
        return digits

    # -- the review queue -----------------------------------------------------------

    def _awaiting_review(self, field: str) -> Any:
        """Model labels of ``field`` that no person confirmed or corrected, of products
        without a value of their own for it (the shop's attribute wins over a model)."""
        human = aliased(Label)
        reviewed = exists().where(
            human.product_id == Label.product_id,
            human.field == Label.field,
            human.source == HUMAN,
        )
        pending = and_(Label.field == field, Label.source == MODEL, ~reviewed)
        if '"' in field or "\\" in field:  # a JSON path cannot name it (SQLite's would break):
            return pending  # such a name is not looked up among the attributes
        shop_value = Product.attributes[field].as_string()
        return and_(
            pending,
            or_(shop_value.is_(None), func.lower(func.trim(shop_value)).in_(MISSING_VALUES)),
        )

    def review_fields(self) -> list[tuple[str, int]]:
        """Each field a model labelled, with how many of its labels await a person."""
        with self.engine.connect() as conn:
            fields = sorted(
                conn.scalars(select(Label.field).where(Label.source == MODEL).distinct())
            )
            return [(f, int(conn.scalar(self._review_count_query(f)) or 0)) for f in fields]

    def _review_count_query(self, field: str) -> Any:
        return (
            select(func.count())
            .select_from(Label)
            .join(Product, Product.id == Label.product_id)
            .where(self._awaiting_review(field))
        )

    def review_remaining(self, field: str) -> int:
        """How many model labels of ``field`` await a person."""
        with self.engine.connect() as conn:
            return int(conn.scalar(self._review_count_query(field)) or 0)

    def review_queue(
        self, field: str, limit: int = 10, product_ids: Sequence[str] | None = None
    ) -> list[ReviewRow]:
        """Model labels of ``field`` awaiting a person (or those of ``product_ids``), the
        least certain first: labels the model flagged for review (below the field's
        threshold, or a rare class), then by rising confidence."""
        query = (
            select(
                Label.product_id,
                Product.title,
                Image.id.label("image_id"),
                Label.field,
                Label.value,
                Label.confidence,
                Label.model_version,
                Label.needs_review,
            )
            .join(Product, Product.id == Label.product_id)
            .outerjoin(Image, and_(Image.product_id == Product.id, Image.is_primary))
            .where(self._awaiting_review(field))
            .order_by(
                Label.needs_review.desc(),
                func.coalesce(Label.confidence, 0.0),
                Label.product_id,
            )
            .limit(limit)
        )
        if product_ids is not None:
            query = query.where(Label.product_id.in_(list(product_ids)))
        with self.engine.connect() as conn:
            return [
                ReviewRow(
                    r.product_id,
                    r.title,
                    r.image_id,
                    r.field,
                    r.value,
                    r.confidence,
                    r.model_version,
                    bool(r.needs_review),
                )
                for r in conn.execute(query)
            ]

    # -- counts ---------------------------------------------------------------------

    def count_products(self) -> int:
        with self.engine.connect() as conn:
            return int(conn.scalar(select(func.count()).select_from(Product)) or 0)

    def images_since(self, since: datetime) -> int:
        with self.engine.connect() as conn:
            return int(
                conn.scalar(
                    select(func.count()).select_from(Image).where(Image.created_at >= since)
                )
                or 0
            )

    def daily(self, column: Any, days: int, *where: Any) -> list[tuple[date, int]]:
        """Rows created per day over the last ``days`` days (UTC), zeros included."""
        today = utcnow().date()
        start = today - timedelta(days=days - 1)
        day = func.date(column)
        query = (
            select(day, func.count())
            .where(column >= datetime.combine(start, datetime.min.time()), *where)
            .group_by(day)
        )
        with self.engine.connect() as conn:
            found = {str(d): int(c) for d, c in conn.execute(query)}
        return [
            (start + timedelta(days=i), found.get(str(start + timedelta(days=i)), 0))
            for i in range(days)
        ]

    def catalog_growth(self, days: int) -> dict[str, list[Any]]:
        """Per day: products added, photos added, and the catalog size at the day's end."""
        products = self.daily(Product.created_at, days)
        images = self.daily(Image.created_at, days)
        total = self.count_products()
        added_since = sum(c for _, c in products)
        size, sizes = total - added_since, []
        for _, added in products:
            size += added
            sizes.append(size)
        return {
            "days": [d.isoformat() for d, _ in products],
            "products": [c for _, c in products],
            "images": [c for _, c in images],
            "size": sizes,
        }

    def corrections_per_day(self, days: int) -> list[tuple[date, int]]:
        """Human labels set per day (the latest correction of a field counts once)."""
        return self.daily(Label.updated_at, days, Label.source == "human")
