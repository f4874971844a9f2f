"""Human label corrections: a person sets the value of one label field of a product.

A human label is one row per (product, field) with source ``human``; it wins over the
model's label for that field and is the feedback a classifier learns from.
"""

from __future__ import annotations

from sqlalchemy import Engine, select, update

from vitrine.catalog.models import Label, Product, utcnow

MAX_FIELD = 128
MAX_VALUE = 256


class LabelCorrectionError(ValueError):
    """A correction that cannot be recorded; the message says why."""


def record_correction(engine: Engine, product_id: str, field: str, value: str) -> None:
    """Set the human label ``field=value`` of a product (replacing an earlier correction)."""
    field, value = field.strip(), value.strip()
    if not field or len(field) > MAX_FIELD:
        raise LabelCorrectionError(f"a label field is 1 to {MAX_FIELD} characters")
    if not value or len(value) > MAX_VALUE:
        raise LabelCorrectionError(f"a label value is 1 to {MAX_VALUE} characters")
    now = utcnow()
    with engine.begin() as conn:
        if conn.execute(select(Product.id).where(Product.id == product_id)).first() is None:
            raise LabelCorrectionError(f"product {product_id!r} does not exist")
        changed = conn.execute(
            update(Label)
            .where(Label.product_id == product_id, Label.field == field, Label.source == "human")
            .values(value=value, confidence=1.0, updated_at=now)
        ).rowcount
        if not changed:
            conn.execute(
                Label.__table__.insert().values(
                    product_id=product_id,
                    field=field,
                    value=value,
                    source="human",
                    confidence=1.0,
                    model_version=None,
                    created_at=now,
                    updated_at=now,
                )
            )
