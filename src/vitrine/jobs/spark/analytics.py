"""``vitrine spark analytics``: catalog, label and event statistics as Parquet and CSV.

Writes, under the output folder, one Parquet folder and one CSV file per table:
``products_per_attribute`` (every attribute field and value, with product counts),
``cnn_labels`` (the primary photos' top ImageNet label: count, mean and median
confidence), ``labels`` (the shop's label fields per source), ``events_per_day``
(per event type) and ``conversion_per_strategy`` (views, carts, purchases and the
purchase rate of events attributed to each recommendation strategy). Tables whose
input is missing (no events yet) are listed as skipped.
"""

from __future__ import annotations

import csv
import tempfile
from pathlib import Path
from typing import Any

from vitrine.jobs.spark.tables import EventColumns, export_catalog, load_events
from vitrine.runtime import Runtime


def _write(frame: Any, output: Path, name: str) -> int:
    """Parquet through Spark, plus a small CSV for people and the admin UI."""
    frame.write.mode("overwrite").parquet(str(output / name))
    rows = frame.collect()
    with (output / f"{name}.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(frame.columns)
        writer.writerows([list(r) for r in rows])
    return len(rows)


def catalog_tables(spark: Any, exported: dict[str, Path | None]) -> dict[str, Any]:
    from pyspark.sql import functions as F
    from pyspark.sql import types as T

    tables: dict[str, Any] = {}
    if exported["products"] is not None:
        products = spark.read.parquet(str(exported["products"]))
        pairs = products.select(
            F.explode(F.from_json("attributes", T.MapType(T.StringType(), T.StringType()))).alias(
                "field", "value"
            )
        )
        tables["products_per_attribute"] = (
            pairs.groupBy("field", "value")
            .agg(F.count("*").alias("products"))
            .orderBy("field", F.desc("products"), "value")
        )
    if exported["image_labels"] is not None:
        label = T.ArrayType(
            T.StructType(
                [T.StructField("name", T.StringType()), T.StructField("confidence", T.DoubleType())]
            )
        )
        top = (
            spark.read.parquet(str(exported["image_labels"]))
            .select(
                F.from_json("labels", T.StructType([T.StructField("labels", label)])).alias("d")
            )
            .select(F.col("d.labels").getItem(0).alias("top"))
            .where(F.col("top").isNotNull())
        )
        tables["cnn_labels"] = (
            top.groupBy(F.col("top.name").alias("label"))
            .agg(
                F.count("*").alias("products"),
                F.avg("top.confidence").alias("mean_confidence"),
                F.percentile_approx("top.confidence", 0.5).alias("median_confidence"),
            )
            .orderBy(F.desc("products"), "label")
        )
    if exported["labels"] is not None:
        tables["labels"] = (
            spark.read.parquet(str(exported["labels"]))
            .groupBy("field", "value", "source")
            .agg(F.count("*").alias("products"), F.avg("confidence").alias("mean_confidence"))
            .orderBy("field", F.desc("products"))
        )
    return tables


def event_tables(events: Any) -> dict[str, Any]:
    from pyspark.sql import functions as F

    per_day = (
        events.groupBy(F.to_date("ts").alias("day"), "type")
        .agg(F.count("*").alias("events"), F.countDistinct("user_id").alias("users"))
        .orderBy("day", "type")
    )
    counts = {
        t: F.sum(F.when(F.col("type") == t, 1).otherwise(0)) for t in ("view", "cart", "purchase")
    }
    per_strategy = (
        events.where(F.col("strategy").isNotNull())
        .groupBy("strategy")
        .agg(*[c.alias(f"{t}s") for t, c in counts.items()])
        .withColumn(
            "purchase_rate",
            F.when(F.col("views") > 0, F.col("purchases") / F.col("views")),
        )
        .orderBy("strategy")
    )
    return {"events_per_day": per_day, "conversion_per_strategy": per_strategy}


def analytics(
    spark: Any,
    vitrine: Runtime,
    output: Path,
    *,
    events: str | None = None,
    event_columns: EventColumns | None = None,
) -> dict[str, Any]:
    """Compute every table this module describes; returns row counts per table."""
    output.mkdir(parents=True, exist_ok=True)
    written: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="vitrine-export-") as staging:
        exported = export_catalog(vitrine.engine, vitrine.embedder.model_version, Path(staging))
        tables = catalog_tables(spark, exported)
        source = events or (str(exported["events"]) if exported["events"] else None)
        if source is not None:
            columns = (event_columns or EventColumns()) if events else EventColumns()
            tables |= event_tables(load_events(spark, source, columns))
        for name, frame in tables.items():
            written[name] = _write(frame, output, name)
    expected = (
        "products_per_attribute",
        "cnn_labels",
        "labels",
        "events_per_day",
        "conversion_per_strategy",
    )
    return {"rows": written, "skipped": [n for n in expected if n not in written]}
