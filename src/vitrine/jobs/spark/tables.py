"""Inputs of the Spark jobs: catalog tables exported from the database, and event logs.

Spark reads the database through a Parquet export made here in batches (SQLAlchemy +
pyarrow), so that no JDBC driver has to be installed on the cluster. Events come
from a CSV or Parquet file (any column names, mapped by options) or from the
database's ``events`` table when it exists.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, inspect, select, text

from vitrine.catalog.models import Feature, Image, Product
from vitrine.catalog.store import EMBEDDING_KIND
from vitrine.recommend.events import EARLIEST, FUTURE_SLACK


def export_query(engine: Engine, query: Any, path: Path, batch: int = 50_000) -> Path | None:
    """Write a query's rows to one Parquet file in batches; None when it has no rows."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    writer = None
    with engine.connect() as conn:
        result = conn.execution_options(yield_per=batch).execute(query)
        columns = list(result.keys())
        for rows in result.partitions(batch):
            table = pa.table({c: [r[i] for r in rows] for i, c in enumerate(columns)})
            if writer is None:
                path.parent.mkdir(parents=True, exist_ok=True)
                writer = pq.ParquetWriter(str(path), table.schema)
            writer.write_table(table.cast(writer.schema))
    if writer is None:
        return None
    writer.close()
    return path


def export_catalog(engine: Engine, model_version: str, folder: Path) -> dict[str, Path | None]:
    """Products (attributes as JSON text) and each product's primary-photo CNN labels."""
    from sqlalchemy import String, cast

    products = select(
        Product.id.label("product_id"),
        Product.title,
        Product.price,
        Product.available,
        cast(Product.attributes, String).label("attributes"),
    )
    labels = (
        select(Image.product_id, cast(Feature.data, String).label("labels"))
        .join(Feature, Feature.image_id == Image.id)
        .where(Image.is_primary, Feature.kind == EMBEDDING_KIND, Feature.version == model_version)
    )
    out = {
        "products": export_query(engine, products, folder / "products.parquet"),
        "image_labels": export_query(engine, labels, folder / "image_labels.parquet"),
        "labels": None,
        "events": None,
    }
    tables = set(inspect(engine).get_table_names())
    if "labels" in tables:
        query = text("SELECT product_id, field, value, source, confidence FROM labels")
        out["labels"] = export_query(engine, query, folder / "labels.parquet")
    if "events" in tables:  # the event log of the recommender, when it is installed
        # Only times an event may have (see recommend.events): one absurd stored row must
        # not stop the export.
        query = text(
            "SELECT user_id, product_id, type, ts, strategy FROM events "
            "WHERE ts >= :earliest AND ts <= :latest"
        ).bindparams(
            earliest=EARLIEST.replace(tzinfo=None),
            latest=(datetime.now(UTC) + FUTURE_SLACK).replace(tzinfo=None),
        )
        out["events"] = export_query(engine, query, folder / "events.parquet")
    return out


@dataclass(frozen=True)
class EventColumns:
    """How an event file's columns map to (user_id, product_id, type, ts, strategy)."""

    user: str = "user_id"
    item: str = "product_id"
    type: str | None = "type"  # None: every row is ``default_type``
    time: str = "ts"
    strategy: str | None = None
    default_type: str = "purchase"


def load_events(spark: Any, location: str, columns: EventColumns = EventColumns()) -> Any:
    """An event file (CSV with a header, or Parquet) as a DataFrame of the standard columns."""
    from pyspark.sql import functions as F

    if location.endswith(".csv") or Path(location).suffix == ".csv":
        # Ids stay strings: H&M's article ids have leading zeros.
        raw = spark.read.option("header", True).option("inferSchema", False).csv(location)
    else:
        raw = spark.read.parquet(location)
    missing = [
        c
        for c in (columns.user, columns.item, columns.time, columns.type, columns.strategy)
        if c and c not in raw.columns
    ]
    if missing:
        raise ValueError(f"{location}: no column {', '.join(missing)} (found {raw.columns})")
    return raw.select(
        F.col(columns.user).cast("string").alias("user_id"),
        F.col(columns.item).cast("string").alias("product_id"),
        (F.col(columns.type) if columns.type else F.lit(columns.default_type))
        .cast("string")
        .alias("type"),
        F.to_timestamp(F.col(columns.time)).alias("ts"),
        (F.col(columns.strategy) if columns.strategy else F.lit(None))
        .cast("string")
        .alias("strategy"),
    )
