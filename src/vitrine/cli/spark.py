"""``vitrine spark``: Spark jobs (embed, analytics, train-als); their output loads with
``vitrine import-features`` and ``vitrine train-recommendations --als-factors``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from vitrine.cli.common import fail, open_vitrine, print_json
from vitrine.config import ConfigError, load_settings

spark_app = typer.Typer(
    help="Spark jobs (pip install 'vitrine[spark]'): embed, analytics, train-als.",
    no_args_is_help=True,
)
MasterOption = Annotated[
    str | None,
    typer.Option(help="Spark master, e.g. local[4]; default: spark-submit's or local[*]."),
]


def _spark(master: str | None, app_name: str) -> Any:
    from vitrine.jobs.spark import spark_session

    try:
        return spark_session(master, app_name)
    except RuntimeError as exc:
        fail(str(exc))


def _event_columns(
    user: str, item: str, type_column: str | None, time: str, strategy: str | None, default: str
) -> Any:
    from vitrine.jobs.spark.tables import EventColumns

    return EventColumns(user, item, type_column or None, time, strategy, default)


EventOptions = {
    "user_column": typer.Option(help="Events: customer id column."),
    "item_column": typer.Option(help="Events: product id column."),
    "type_column": typer.Option(help="Events: type column ('' if every row is --event-type)."),
    "time_column": typer.Option(help="Events: timestamp or date column."),
    "strategy_column": typer.Option(help="Events: recommendation strategy column, if any."),
    "event_type": typer.Option(help="Events: the type of every row when there is no type column."),
}


@spark_app.command("embed")
def spark_embed(
    input: Annotated[str, typer.Option("--input", help="Photo folder or s3://bucket/prefix.")],
    output: Annotated[str, typer.Option("--output", help="Parquet folder to write.")],
    master: MasterOption = None,
    partitions: Annotated[int | None, typer.Option(help="Spark tasks (default: by count).")] = None,
    limit: Annotated[int | None, typer.Option(help="Embed at most this many photos.")] = None,
) -> None:
    """Features and CNN embeddings of many photos, as Parquet (load with import-features)."""
    from vitrine.catalog.s3 import S3Options
    from vitrine.jobs.spark.embed import embed
    from vitrine.vision.decode import DecodeLimits

    settings = load_settings()
    spark = _spark(master, "vitrine-embed")
    try:
        result = embed(
            spark,
            input,
            output,
            model_dir=settings.model_dir,
            precision=settings.embedding_precision,
            limits=DecodeLimits(settings.max_image_bytes, settings.max_image_pixels),
            s3=S3Options.from_settings(settings),
            partitions=partitions,
            chunk=settings.embedding_batch_size,
            limit=limit,
        )
    except ValueError as exc:
        fail(str(exc))
    finally:
        spark.stop()
    print_json(result)


@spark_app.command("analytics")
def spark_analytics(
    output: Annotated[Path, typer.Option("--output", help="Folder for Parquet + CSV tables.")],
    events: Annotated[
        str | None, typer.Option(help="Events CSV/Parquet (default: the events table).")
    ] = None,
    master: MasterOption = None,
    user_column: Annotated[str, EventOptions["user_column"]] = "user_id",
    item_column: Annotated[str, EventOptions["item_column"]] = "product_id",
    type_column: Annotated[str, EventOptions["type_column"]] = "type",
    time_column: Annotated[str, EventOptions["time_column"]] = "ts",
    strategy_column: Annotated[str | None, EventOptions["strategy_column"]] = None,
    event_type: Annotated[str, EventOptions["event_type"]] = "purchase",
) -> None:
    """Catalog, label and event statistics (per category, label confidence, per day, ...)."""
    from vitrine.jobs.spark.analytics import analytics

    columns = _event_columns(
        user_column, item_column, type_column, time_column, strategy_column, event_type
    )
    vitrine = open_vitrine()
    spark = _spark(master, "vitrine-analytics")
    try:
        result = analytics(spark, vitrine, output, events=events, event_columns=columns)
    except ValueError as exc:
        fail(str(exc))
    finally:
        spark.stop()
        vitrine.close()
    print_json(result)


@spark_app.command("train-als")
def spark_train_als(
    output: Annotated[Path, typer.Option("--output", help="Folder for the factors.")],
    events: Annotated[
        str | None, typer.Option(help="Events CSV/Parquet (default: the events table).")
    ] = None,
    master: MasterOption = None,
    rank: Annotated[int, typer.Option(help="Latent factors.")] = 64,
    reg: Annotated[float, typer.Option(help="Regularisation.")] = 0.05,
    alpha: Annotated[float, typer.Option(help="Implicit-feedback confidence scale.")] = 20.0,
    iterations: Annotated[int, typer.Option(help="ALS iterations.")] = 10,
    blocks: Annotated[int, typer.Option(help="User and item blocks (parallelism).")] = 10,
    checkpoint_dir: Annotated[
        str | None, typer.Option(help="Checkpoints every 10 iterations (for long runs).")
    ] = None,
    user_column: Annotated[str, EventOptions["user_column"]] = "user_id",
    item_column: Annotated[str, EventOptions["item_column"]] = "product_id",
    type_column: Annotated[str, EventOptions["type_column"]] = "type",
    time_column: Annotated[str, EventOptions["time_column"]] = "ts",
    event_type: Annotated[str, EventOptions["event_type"]] = "purchase",
) -> None:
    """Collaborative filtering factors (MLlib ALS) from the event log."""
    import tempfile

    from vitrine.jobs.spark.als import AlsParams, train_als
    from vitrine.jobs.spark.tables import export_catalog, load_events

    columns = _event_columns(user_column, item_column, type_column, time_column, None, event_type)
    from vitrine.recommend.events import event_weights

    try:  # the recommender's event weights, so that its fold-in matches the training
        weights = event_weights(load_settings().recommend_event_weights)
    except (ConfigError, ValueError) as exc:
        fail(str(exc))
    params = AlsParams(
        rank=rank,
        reg=reg,
        alpha=alpha,
        iterations=iterations,
        weights=weights,
        blocks=blocks,
        checkpoint_dir=checkpoint_dir,
    )
    spark = _spark(master, "vitrine-als")
    try:
        with tempfile.TemporaryDirectory(prefix="vitrine-export-") as staging:
            if events is None:
                vitrine = open_vitrine()
                exported = export_catalog(vitrine.engine, "", Path(staging))
                vitrine.close()
                if exported["events"] is None:
                    fail("no events table with events in the database; pass --events FILE")
                events, columns = (
                    str(exported["events"]),
                    _event_columns("user_id", "product_id", "type", "ts", None, event_type),
                )
            result = train_als(spark, load_events(spark, events, columns), output, params)
    except ValueError as exc:
        fail(str(exc))
    finally:
        spark.stop()
    print_json(result)
