"""The ``vitrine`` command line: import, analyze, search, serve and maintain."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from vitrine.config import ConfigError, load_settings

app = typer.Typer(
    help="Vitrine: visual intelligence for e-commerce catalogs.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
model_app = typer.Typer(help="The CNN: export, quantize.", no_args_is_help=True)
index_app = typer.Typer(help="The visual index.", no_args_is_help=True)
db_app = typer.Typer(help="The database.", no_args_is_help=True)
keys_app = typer.Typer(help="API keys.", no_args_is_help=True)
users_app = typer.Typer(help="People who sign in to the admin UI.", no_args_is_help=True)
models_app = typer.Typer(
    help="Classification models: list, activate, roll back.", no_args_is_help=True
)
app.add_typer(model_app, name="model")
app.add_typer(index_app, name="index")
app.add_typer(db_app, name="db")
app.add_typer(keys_app, name="keys")
strategies_app = typer.Typer(help="Recommendation strategies.", no_args_is_help=True)
app.add_typer(strategies_app, name="strategies")
app.add_typer(users_app, name="users")
app.add_typer(models_app, name="models")
evaluate_app = typer.Typer(help="Held-out evaluations: classifiers, recommendations.")
app.add_typer(evaluate_app, name="evaluate")

FilterOption = Annotated[
    list[str] | None,
    typer.Option(
        "--filter", "-f", help="Attribute filter field=value (value may be a|b); repeatable."
    ),
]


def _print_json(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2, ensure_ascii=False, default=str))


def _fail(message: str, code: int = 2) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def _open(**overrides: Any) -> Any:
    from dataclasses import replace

    from vitrine.services.runtime import Vitrine

    try:
        return Vitrine(replace(load_settings(), **overrides))
    except ConfigError as exc:
        _fail(str(exc))


def _hits_json(vitrine: Any, hits: list[Any]) -> list[dict[str, Any]]:
    return [
        {
            "rank": rank,
            "product_id": hit.product_id,
            "score": round(float(hit.score), 4),
            "title": vitrine.search.describe(hit.product_id)[0],
        }
        for rank, hit in enumerate(hits, 1)
    ]


@app.command("import-catalog")
def import_catalog_cmd(
    csv_path: Annotated[Path, typer.Argument(help="Products CSV (one row per product).")],
    images: Annotated[
        Path, typer.Option("--images", help="Folder the image paths are relative to.")
    ],
    id_column: Annotated[str, typer.Option(help="Column with the product id / SKU.")] = "id",
    image_path: Annotated[
        str | None,
        typer.Option(
            help="Image path template, e.g. '{id}.jpg' or '{article_id[:3]}/{article_id}.jpg'."
        ),
    ] = None,
    image_column: Annotated[
        str | None, typer.Option(help="Column holding each image path.")
    ] = None,
    title_column: Annotated[str | None, typer.Option(help="Column with the title.")] = None,
    price_column: Annotated[str | None, typer.Option(help="Column with the price.")] = None,
    encoding: Annotated[
        str | None,
        typer.Option(help="The CSV's encoding when not UTF-8 / UTF-16 with a BOM (e.g. cp1252)."),
    ] = None,
    limit: Annotated[int | None, typer.Option(help="Import at most this many rows.")] = None,
    workers: Annotated[int | None, typer.Option(help="Worker processes (0: none).")] = None,
    rejects: Annotated[Path | None, typer.Option(help="Where to write the rejects CSV.")] = None,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
) -> None:
    """Import products and their photos from a CSV; resumable, bad rows reported."""
    from vitrine.jobs.bulk_import import import_catalog
    from vitrine.jobs.catalog_source import ColumnMapping
    from vitrine.jobs.csv_records import check_encoding

    if not csv_path.is_file():
        _fail(f"{csv_path}: no such CSV file")
    if not images.is_dir():
        _fail(f"{images}: no such image folder")
    mapping = ColumnMapping(
        id_column=id_column,
        image_path=image_path,
        image_column=image_column,
        title_column=title_column,
        price_column=price_column,
        encoding=encoding,
    )
    try:
        check_encoding(encoding)
    except ValueError as exc:
        _fail(str(exc))
    vitrine = _open()
    try:
        report = import_catalog(
            vitrine,
            csv_path,
            images,
            mapping,
            workers=workers,
            limit=limit,
            rejects_path=rejects,
            progress=progress,
        )
    except ValueError as exc:
        _fail(f"{csv_path}: {exc}")
    finally:
        vitrine.close()
    summary = report.to_json()
    summary["first_rejects"] = [
        {"line": r.line, "product_id": r.product_id, "reason": r.reason}
        for r in report.rejected[:10]
    ]
    _print_json(summary)


@app.command()
def analyze(
    image: Annotated[Path, typer.Argument(help="An image file.")],
    title: Annotated[
        str | None, typer.Option(help="The product's title: classification reads it too.")
    ] = None,
) -> None:
    """Print every feature of one photo as JSON."""
    from vitrine.vision.decode import ImageDecodeError, read_image_bytes

    vitrine = _open()
    try:
        analysis = vitrine.analyzer.analyze(read_image_bytes(image, vitrine.limits), str(image))
    except ImageDecodeError as exc:
        _fail(str(exc))
    _print_json({**analysis.to_json(), **vitrine.classification.describe(analysis, title)})


@app.command()
def search(
    image: Annotated[Path, typer.Argument(help="A query photo.")],
    k: Annotated[int, typer.Option("-k", help="How many results.")] = 10,
    filter: FilterOption = None,
) -> None:
    """Find the catalog products that look most like a photo."""
    from vitrine.services.photo_search import search_by_photo
    from vitrine.vision.decode import ImageDecodeError, read_image_bytes

    vitrine = _open()
    try:
        data = read_image_bytes(image, vitrine.limits)
        _, hits = search_by_photo(vitrine, data, str(image), k, filter)
    except (ImageDecodeError, ValueError) as exc:
        _fail(str(exc))
    _print_json({"query": str(image), "results": _hits_json(vitrine, hits)})


@app.command()
def similar(
    product_id: Annotated[str, typer.Argument(help="A product id in the catalog.")],
    k: Annotated[int, typer.Option("-k", help="How many results.")] = 10,
    filter: FilterOption = None,
) -> None:
    """Products that look most like a product of the catalog."""
    from vitrine.services.visual_search import UnknownProductError

    vitrine = _open()
    try:
        hits = vitrine.search.similar(product_id, k, filter)
    except UnknownProductError:
        _fail(f"product {product_id!r} is not in the catalog (or has no photo)")
    except ValueError as exc:
        _fail(str(exc))
    _print_json({"product_id": product_id, "results": _hits_json(vitrine, hits)})


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Address to listen on.")] = None,
    port: Annotated[int | None, typer.Option(help="Port.")] = None,
    workers: Annotated[
        int | None,
        typer.Option(help="API processes (default VITRINE_WORKERS, 1); one leads background jobs."),
    ] = None,
) -> None:
    """Start the HTTP service."""
    import uvicorn

    from vitrine.api.logs import configure_logging

    settings = load_settings()
    configure_logging(settings.log_level)
    processes = workers or settings.workers
    if processes < 1:
        raise typer.BadParameter("--workers must be at least 1")
    uvicorn.run(
        "vitrine.api.app:create_served_app",
        factory=True,
        workers=processes if processes > 1 else None,
        host=host or settings.host,
        port=port or settings.port,
        log_config=None,
        access_log=False,
    )


@model_app.command("export")
def model_export() -> None:
    """Export the CNN to ONNX (done automatically on first use)."""
    from vitrine.vision.embedding import export_onnx

    settings = load_settings()
    typer.echo(str(export_onnx(settings.model_dir)))


@model_app.command("quantize")
def model_quantize(
    images: Annotated[Path, typer.Option("--images", help="Folder of real product photos.")],
    limit: Annotated[int, typer.Option(help="Calibration photos to use.")] = 256,
) -> None:
    """Make the int8 model, calibrated on the shop's own photos.

    Use it with VITRINE_EMBEDDING_PRECISION=int8.
    """
    from vitrine.vision.decode import ImageDecodeError, decode_image
    from vitrine.vision.embedding import quantize_int8

    settings = load_settings()
    files = sorted(p for p in images.rglob("*") if p.is_file())

    def photos() -> Any:
        used = 0
        for path in files:
            if used >= limit:
                return
            try:
                yield decode_image(path, max_side=320).rgb
                used += 1
            except ImageDecodeError as exc:
                typer.echo(f"skipped {exc}", err=True)

    typer.echo(str(quantize_int8(settings.model_dir, photos(), max_images=limit)))


@index_app.command("rebuild")
def index_rebuild() -> None:
    """Rebuild the visual index from the database."""
    vitrine = _open()
    vitrine.search.rebuild()
    _print_json({"indexed": len(vitrine.search), "kind": vitrine.search.vectors.kind})


@index_app.command("backfill")
def index_backfill() -> None:
    """Compute descriptors that products imported by an older version lack (colour layout)."""
    from tqdm import tqdm

    from vitrine.services.backfill import backfill_layouts

    vitrine = _open()
    with tqdm(unit="photo", desc="colour layout") as bar:

        def progress(done: int, total: int) -> None:
            bar.total = total
            bar.update(done - bar.n)

        report = backfill_layouts(vitrine, progress)
    vitrine.close()
    _print_json(
        {
            "computed": report.computed,
            "failed": [{"product_id": p, "reason": r} for p, r in report.failed],
        }
    )


@keys_app.command("create")
def keys_create(
    name: Annotated[str, typer.Option(help="Who uses the key, e.g. storefront.")],
    scope: Annotated[str, typer.Option(help="read, write or admin.")] = "read",
) -> None:
    """Create an API key; it is printed once, only its hash is kept."""
    from vitrine.services.keys import KeyService

    vitrine = _open()
    try:
        info, key = KeyService(vitrine.engine).create(name, scope)
    except ValueError as exc:
        _fail(str(exc))
    typer.echo(
        f"created key {info.prefix} ({info.name}, scope {info.scope}); store it now:", err=True
    )
    typer.echo(key)


@keys_app.command("revoke")
def keys_revoke(name_or_prefix: Annotated[str, typer.Argument(help="Key name or prefix.")]) -> None:
    """Revoke API keys by name or prefix."""
    from vitrine.services.keys import KeyService

    vitrine = _open()
    count = KeyService(vitrine.engine).revoke(name_or_prefix)
    if count == 0:
        _fail(f"no active key named or prefixed {name_or_prefix!r}")
    typer.echo(f"revoked {count} key(s)")


@keys_app.command("list")
def keys_list() -> None:
    """List API keys (names, prefixes, scopes; never the keys)."""
    from vitrine.services.keys import KeyService

    vitrine = _open()
    _print_json(
        [
            {
                "name": k.name,
                "prefix": k.prefix,
                "scope": k.scope,
                "created_at": k.created_at,
                "revoked_at": k.revoked_at,
            }
            for k in KeyService(vitrine.engine).list()
        ]
    )


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Apply the database migrations (also done on every start)."""
    vitrine = _open()
    typer.echo(
        f"database at {vitrine.engine.url.render_as_string(hide_password=True)} is up to date"
    )


# -- recommendations (issue 5) ----------------------------------------------------------------


@app.command("import-events")
def import_events_cmd(
    csv_path: Annotated[Path, typer.Argument(help="Event log CSV, one event per row.")],
    user: Annotated[str, typer.Option("--user", help="Column with the customer id.")] = "user_id",
    item: Annotated[str, typer.Option("--item", help="Column with the product id.")] = "product_id",
    time: Annotated[
        str | None, typer.Option("--time", help="Column with the date or date-time.")
    ] = "timestamp",
    type_: Annotated[
        str | None, typer.Option("--type", help="Event type of every row (e.g. purchase).")
    ] = None,
    type_column: Annotated[
        str | None, typer.Option("--type-column", help="Column with each row's event type.")
    ] = None,
    event_id: Annotated[str | None, typer.Option(help="Column with a unique event id.")] = None,
    session: Annotated[str | None, typer.Option(help="Column with the session id.")] = None,
    price: Annotated[str | None, typer.Option(help="Column with the price.")] = None,
) -> None:
    """Import an event log (idempotent: importing a file again adds nothing)."""
    from vitrine.recommend.event_store import EventColumns

    if not csv_path.is_file():
        _fail(f"{csv_path}: no such CSV file")
    if (type_ is None) == (type_column is None):
        _fail("give exactly one of --type (one type for every row) or --type-column")
    vitrine = _open()
    columns = EventColumns(user=user, item=item, time=time or None, type_column=type_column,
                           type_value=type_, event_id=event_id, session=session, price=price)
    try:
        report = vitrine.recommendations.import_events(csv_path, columns)
    except ValueError as exc:
        _fail(str(exc))
    finally:
        vitrine.close()
    _print_json(report.to_json())


@app.command()
def recommend(
    user: Annotated[str | None, typer.Option("--user", help="One customer id.")] = None,
    users: Annotated[
        Path | None, typer.Option("--users", help="File of customer ids, one a line.")
    ] = None,
    k: Annotated[int, typer.Option("-k", help="How many products.")] = 12,
    strategy: Annotated[str | None, typer.Option(help="Strategy name.")] = None,
    out: Annotated[
        Path | None, typer.Option("--out", help="CSV to write (customer_id,prediction).")
    ] = None,
    filter: FilterOption = None,
) -> None:
    """Recommendations with explanations for one customer, or a CSV for many."""
    import csv as csv_module
    import time as time_module

    from vitrine.recommend.strategies import StrategyError

    if (user is None) == (users is None):
        _fail("give exactly one of --user or --users")
    if users is not None and not users.is_file():
        _fail(f"{users}: no such file")
    if k < 1:
        _fail("-k must be at least 1")
    vitrine = _open()
    service = vitrine.recommendations
    try:
        service.load_or_train()
        if user is not None:
            _print_json(service.recommend_user(user, k, strategy, filter).to_json())
            return
        assert users is not None
        ids = [
            line.strip() for line in users.read_text().splitlines()
            if line.strip() and line.strip() != "customer_id"
        ]
        started = time_module.perf_counter()
        target = out.open("w", newline="") if out else sys.stdout
        try:
            writer = csv_module.writer(target)
            writer.writerow(["customer_id", "prediction"])
            for customer, items in service.recommend_many(ids, k, strategy):
                writer.writerow([customer, " ".join(items)])
        finally:
            if out:
                target.close()
        seconds = time_module.perf_counter() - started
        typer.echo(
            f"{len(ids)} customers in {seconds:.1f} s ({len(ids) / max(seconds, 1e-9):.0f}/s)",
            err=True,
        )
    except (StrategyError, ValueError) as exc:
        _fail(str(exc))
    finally:
        vitrine.close()


@app.command("train-recommendations")
def train_recommendations(
    als_factors: Annotated[
        Path | None,
        typer.Option(help="`vitrine spark train-als` output to serve ALS from (this run; "
                     "VITRINE_RECOMMEND_ALS_FACTORS for the server)."),
    ] = None,
) -> None:
    """Train every recommendation model now (the server also retrains on its own)."""
    overrides = {}
    if als_factors is not None:
        if not (als_factors / "item_factors").is_dir():
            _fail(f"--als-factors {als_factors}: no item_factors folder (train-als output)")
        overrides["recommend_als_factors"] = str(als_factors.resolve())
    vitrine = _open(**overrides)
    try:
        models = vitrine.recommendations.train()
    except ValueError as exc:  # e.g. factors that cannot be read
        _fail(str(exc))
    finally:
        vitrine.close()
    _print_json({"trained": models.train_seconds, "customers": models.data.n_users,
                 "events": len(models.data.ev_day), "products": models.data.n_catalog})


@evaluate_app.command("recommendations")
@app.command("evaluate-recommendations")
def evaluate_recommendations(
    split_date: Annotated[
        str, typer.Option(help="Train before this date, test on purchases from it on.")
    ],
    k: Annotated[int, typer.Option("--k", "-k", help="List length.")] = 12,
    test_days: Annotated[
        float | None, typer.Option(help="Test period length in days (default: to the end).")
    ] = None,
    algorithms: Annotated[
        str | None, typer.Option(help="Comma-separated algorithms (default: all).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON, not a table.")] = False,
    whole_catalog: Annotated[
        bool,
        typer.Option(help="Recommend from the catalog of now, also products launched after "
                          "the split (default: the catalog as of the split)."),
    ] = False,
) -> None:
    """Offline evaluation of every algorithm beside the last-4-weeks popularity baseline."""
    from vitrine.recommend.evaluate import format_table
    from vitrine.recommend.events import EventError, parse_time

    try:
        split = parse_time(split_date)
    except EventError as exc:
        _fail(str(exc))
    vitrine = _open()
    try:
        run = vitrine.recommendations.evaluate(
            split, k, algorithms.split(",") if algorithms else None, test_days,
            progress=lambda name: typer.echo(f"evaluating {name}", err=True),
            whole_catalog=whole_catalog,
        )
    except ValueError as exc:
        _fail(str(exc))
    finally:
        vitrine.close()
    results = run.pop("_results")
    if as_json:
        _print_json(run)
    else:
        typer.echo(f"evaluation {run['id']}: {run['params']}")
        typer.echo(format_table(results, k))


@strategies_app.command("list")
def strategies_list() -> None:
    """Every strategy with its configuration."""
    vitrine = _open()
    try:
        _print_json([{"name": s.name, "description": s.description, **s.to_json()}
                     for s in vitrine.recommendations.strategies.list()])
    finally:
        vitrine.close()


@strategies_app.command("set")
def strategies_set(
    name: Annotated[str, typer.Argument(help="Strategy name.")],
    config: Annotated[str, typer.Option(help="JSON: algorithm, params, weights, rules, ...")],
    description: Annotated[str, typer.Option(help="What it is for.")] = "",
) -> None:
    """Create or replace a strategy (models it needs train at the next retrain)."""
    from vitrine.recommend.strategies import Strategy, StrategyError

    try:
        data = json.loads(config)
    except json.JSONDecodeError as exc:
        _fail(f"--config is not JSON: {exc}")
    if not isinstance(data, dict):
        _fail("--config must be a JSON object")
    vitrine = _open()
    try:
        strategy = Strategy.from_json(name, data, description)
        vitrine.recommendations.strategies.put(strategy)
    except StrategyError as exc:
        _fail(str(exc))
    finally:
        vitrine.close()
    _print_json({"name": name, **strategy.to_json()})


# -- scale-out: Spark jobs and their import ---------------------------------------------

spark_app = typer.Typer(
    help="Spark jobs (pip install 'vitrine[spark]'): embed, analytics, train-als.",
    no_args_is_help=True,
)
app.add_typer(spark_app, name="spark")
MasterOption = Annotated[
    str | None,
    typer.Option(help="Spark master, e.g. local[4]; default: spark-submit's or local[*]."),
]


def _spark(master: str | None, app_name: str) -> Any:
    from vitrine.jobs.spark import spark_session

    try:
        return spark_session(master, app_name)
    except RuntimeError as exc:
        _fail(str(exc))


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
        _fail(str(exc))
    finally:
        spark.stop()
    _print_json(result)


@app.command("import-features")
def import_features_cmd(
    parquet: Annotated[str, typer.Argument(help="Output of `vitrine spark embed`.")],
) -> None:
    """Load precomputed features and embeddings into the catalog and the index."""
    from vitrine.jobs.import_features import import_features

    vitrine = _open()
    try:
        report = import_features(vitrine, parquet)
    except (OSError, ValueError) as exc:
        _fail(str(exc))
    finally:
        vitrine.close()
    _print_json(report.to_json())


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
    vitrine = _open()
    spark = _spark(master, "vitrine-analytics")
    try:
        result = analytics(spark, vitrine, output, events=events, event_columns=columns)
    except ValueError as exc:
        _fail(str(exc))
    finally:
        spark.stop()
        vitrine.close()
    _print_json(result)


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
        _fail(str(exc))
    params = AlsParams(rank=rank, reg=reg, alpha=alpha, iterations=iterations, weights=weights,
                       blocks=blocks, checkpoint_dir=checkpoint_dir)
    spark = _spark(master, "vitrine-als")
    try:
        with tempfile.TemporaryDirectory(prefix="vitrine-export-") as staging:
            if events is None:
                vitrine = _open()
                exported = export_catalog(vitrine.engine, "", Path(staging))
                vitrine.close()
                if exported["events"] is None:
                    _fail("no events table with events in the database; pass --events FILE")
                events, columns = (
                    str(exported["events"]),
                    _event_columns("user_id", "product_id", "type", "ts", None, event_type),
                )
            result = train_als(spark, load_events(spark, events, columns), output, params)
    except ValueError as exc:
        _fail(str(exc))
    finally:
        spark.stop()
    _print_json(result)


def _users() -> Any:
    from vitrine.services.users import UserService

    vitrine = _open()
    s = vitrine.settings
    return UserService(vitrine.engine, s.admin_lockout_attempts, s.admin_lockout_minutes)


def _read_password(password_stdin: bool) -> str:
    if password_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    if not sys.stdin.isatty():
        _fail("no terminal to ask for the password: pass --password-stdin and pipe it in")
    return str(typer.prompt("Password", hide_input=True, confirmation_prompt=True))


@users_app.command("create")
def users_create(
    name: Annotated[str, typer.Argument(help="User name.")],
    admin: Annotated[bool, typer.Option("--admin", help="Role admin (everything).")] = False,
    role: Annotated[str, typer.Option(help="admin or analyst (read-only).")] = "analyst",
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the password from stdin.")
    ] = False,
) -> None:
    """Create an admin UI user; the password is asked at a prompt (or read from stdin)."""
    from vitrine.services.users import UserError

    users = _users()
    password = _read_password(password_stdin)
    try:
        user = users.create(name, password, "admin" if admin else role)
    except UserError as exc:
        _fail(str(exc))
    typer.echo(f"created user {user.username} (role {user.role})")


@users_app.command("passwd")
def users_passwd(
    name: Annotated[str, typer.Argument(help="User name.")],
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the password from stdin.")
    ] = False,
) -> None:
    """Set a user's password (and unlock the account)."""
    from vitrine.services.users import UserError

    users = _users()
    try:
        users.set_password(name, _read_password(password_stdin))
    except UserError as exc:
        _fail(str(exc))
    typer.echo(f"password of {name} changed")


@users_app.command("unlock")
def users_unlock(name: Annotated[str, typer.Argument(help="User name.")]) -> None:
    """Unlock an account locked after failed sign-ins."""
    from vitrine.services.users import UserError

    try:
        _users().unlock(name)
    except UserError as exc:
        _fail(str(exc))
    typer.echo(f"{name} unlocked")


@users_app.command("delete")
def users_delete(name: Annotated[str, typer.Argument(help="User name.")]) -> None:
    """Delete a user (their sessions end)."""
    from vitrine.services.users import UserError

    try:
        _users().delete(name)
    except UserError as exc:
        _fail(str(exc))
    typer.echo(f"{name} deleted")


@users_app.command("list")
def users_list() -> None:
    """List users: names, roles, lock state (never passwords)."""
    _print_json(
        [
            {
                "name": u.username,
                "role": u.role,
                "locked_until": u.locked_until,
                "last_login_at": u.last_login_at,
            }
            for u in _users().list()
        ]
    )
# -- classification -------------------------------------------------------------------


def _fields(text: str) -> list[str]:
    fields = [f.strip() for f in text.split(",") if f.strip()]
    if not fields:
        _fail("name at least one field, e.g. --fields masterCategory,articleType")
    return fields


@app.command()
def train(
    fields: Annotated[
        str, typer.Option(help="Comma-separated label fields, e.g. masterCategory,articleType.")
    ],
    groups: Annotated[
        str | None,
        typer.Option(help="Feature groups, e.g. embedding+color (default: chosen per field)."),
    ] = None,
    activate: Annotated[
        str, typer.Option(help="if-better (default), always or never.")
    ] = "if-better",
    min_support: Annotated[int | None, typer.Option(help="Rare below this many examples.")] = None,
    finetune: Annotated[
        bool, typer.Option("--finetune", help="First fine-tune the CNN's last blocks (slow).")
    ] = False,
    budget_minutes: Annotated[
        float, typer.Option(help="Fine-tuning: wall-clock budget of the training loop.")
    ] = 20.0,
    trainable_blocks: Annotated[
        int, typer.Option(help="Fine-tuning: how many of the CNN's last blocks to train.")
    ] = 2,
) -> None:
    """Train one head per field on the stored features; activate it when not worse.

    With --finetune: fine-tune the CNN on the labelled photos, export it as a new embedding
    model version, re-embed the catalog with it and index it (the version in service keeps
    serving), then train heads on the new embeddings, kept inactive until you switch."""
    from vitrine.classify.trainer import TrainingError

    if activate not in {"if-better", "always", "never"}:
        _fail("--activate must be if-better, always or never")
    if finetune:
        _train_finetuned(_fields(fields), budget_minutes, trainable_blocks, min_support)
        return
    vitrine = _open()
    chosen = groups.split("+") if groups else None
    try:
        rows = vitrine.classification.train(
            _fields(fields), activate=activate, groups=chosen, min_support=min_support
        )
    except (TrainingError, ValueError) as exc:
        _fail(str(exc))
    finally:
        vitrine.close()
    _print_json([_model_line(r) for r in rows])


def _train_finetuned(
    fields: list[str], budget_minutes: float, trainable_blocks: int, min_support: int | None
) -> None:
    from vitrine.classify.finetune import FineTuneConfig
    from vitrine.classify.trainer import TrainingError
    from vitrine.services.classification import ClassificationService, train_config
    from vitrine.services.finetuning import fine_tune_catalog, reembed_catalog

    if budget_minutes <= 0:
        _fail("--budget-minutes must be positive")
    vitrine = _open()
    split = train_config(vitrine, min_support=min_support)
    try:
        config = FineTuneConfig(
            trainable_blocks=trainable_blocks,
            budget_seconds=budget_minutes * 60,
            threads=vitrine.settings.embedding_threads,
            min_support=split.min_support,
            holdout=split.holdout,
            correction_weight=split.correction_weight,
        )

        def progress(stage: str, done: int, total: int) -> None:
            typer.echo(f"{stage}: {done}/{total}", err=True)

        record = fine_tune_catalog(vitrine, fields, config, progress)
        version = record["version"]
        report = reembed_catalog(vitrine, version, progress)
        rows = ClassificationService(vitrine, embedding_version=version).train(
            fields, activate="never", min_support=min_support
        )
    except (TrainingError, ValueError) as exc:
        _fail(str(exc))
    finally:
        vitrine.close()
    _print_json(
        {
            "model": {k: record[k] for k in ("version", "fields", "stopped", "train_seconds")}
            | {"metrics": record["metrics"], "products": record["products"]},
            "reembedded": report.embedded,
            "unreadable_photos": len(report.failed),
            "indexed": report.indexed,
            "heads": [_model_line(r) for r in rows],
            "to_switch": [
                f"set embedding_model = {version!r} (VITRINE_EMBEDDING_MODEL) and restart",
                *(f"vitrine models activate {r['id']}" for r in rows),
            ],
        }
    )


def _model_line(row: dict[str, Any]) -> dict[str, Any]:
    from vitrine.api.routes.models import summary

    line = summary(row)
    line.pop("comparison", None)
    line["decision"] = (row.get("comparison") or {}).get("reason")
    return line


@evaluate_app.callback(invoke_without_command=True)
def evaluate(
    ctx: typer.Context,
    field: Annotated[str | None, typer.Option(help="The label field.")] = None,
    model_id: Annotated[
        int | None, typer.Option("--id", help="A model id (default: active).")
    ] = None,
    full: Annotated[bool, typer.Option(help="Print every metric as JSON.")] = False,
) -> None:
    """Print a field model's held-out evaluation (`--field`), or evaluate the
    recommendation algorithms offline (`vitrine evaluate recommendations --split-date`)."""
    from vitrine.classify.registry import ModelRegistry, UnknownModelError

    if ctx.invoked_subcommand is not None:
        return
    if field is None:
        _fail("give --field FIELD (a classifier's evaluation) or the `recommendations` command")
    assert field is not None

    vitrine = _open()
    registry = ModelRegistry(vitrine.engine, vitrine.blobs)
    try:
        row = registry.get(model_id) if model_id is not None else registry.active_for(field)
    except UnknownModelError:
        row = None
    if row is None or row["field"] != field:
        _fail(f"no {'such' if model_id else 'active'} model for field {field!r}")
    assert row is not None
    if full:
        _print_json({**_model_line(row), "metrics": row["metrics"], "params": row["params"]})
        return
    typer.echo(format_evaluation(row))


def format_evaluation(row: dict[str, Any]) -> str:
    """A readable report of a model's metrics."""
    m = row["metrics"]
    out = [f"{row['version']} ({'active' if row['active'] else 'inactive'}): {m['field']}"]
    split = m["split"]
    out.append(
        f"train {split['train']}  calibration {split['calibration']}  "
        f"evaluation {split['evaluation']}  features {'+'.join(row['feature_groups'])}"
    )
    a = m.get("all")
    if not a:
        return "\n".join([*out, m.get("note", "no evaluation")])
    out.append(
        f"accuracy {a['accuracy']:.4f}  top-k {a.get('top_k')}\n"
        f"macro    P {a['macro']['precision']:.4f}  R {a['macro']['recall']:.4f}  "
        f"F1 {a['macro']['f1']:.4f}\n"
        f"weighted P {a['weighted']['precision']:.4f}  R {a['weighted']['recall']:.4f}  "
        f"F1 {a['weighted']['f1']:.4f}"
    )
    rare = m["rare"]
    if rare["classes"]:
        fc = m.get("frequent_classes", {})
        out.append(
            f"rare classes ({rare['policy']}, < {rare['min_support']} examples): "
            f"{len(rare['classes'])}, {rare['evaluation_rows']} evaluation rows "
            f"(counted as errors); accuracy on the other rows {fc.get('accuracy')}"
        )
    cal = m["all"]["calibration"]
    out.append(
        f"calibration: ECE {cal['ece']} (head before/after temperature "
        f"{m.get('head_calibration_ece')}); review: {m['review']}"
    )
    out.append(f"{'class':32s} {'P':>7s} {'R':>7s} {'F1':>7s} {'support':>8s}")
    for name, c in sorted(a["per_class"].items(), key=lambda kv: -kv[1]["support"]):
        flag = " (rare)" if c.get("rare") else ""
        out.append(
            f"{name[:32]:32s} {c['precision']:7.3f} {c['recall']:7.3f} {c['f1']:7.3f} "
            f"{c['support']:8d}{flag}"
        )
    return "\n".join(out)


@app.command()
def feedback(
    product_id: Annotated[str, typer.Argument(help="The product.")],
    field: Annotated[str, typer.Argument(help="The label field.")],
    value: Annotated[str, typer.Argument(help="Its correct value.")],
) -> None:
    """Record a correction: the product's label changes at once and trains the next model."""
    from vitrine.services.classification import UnknownProductError

    vitrine = _open()
    try:
        _print_json(vitrine.classification.feedback(product_id, field, value))
    except UnknownProductError:
        _fail(f"product {product_id!r} does not exist")
    except ValueError as exc:
        _fail(str(exc))


@app.command("export-labels")
def export_labels(
    out: Annotated[Path, typer.Argument(help="CSV file to write.")],
    fields: Annotated[str | None, typer.Option(help="Fields (default: all labelled).")] = None,
) -> None:
    """One row per product: each field's value, source (human / model) and confidence."""
    from vitrine.services.label_export import export_labels_csv

    vitrine = _open()
    chosen = _fields(fields) if fields else None
    count = export_labels_csv(vitrine, out, chosen)
    typer.echo(f"wrote {count} products to {out}")


@models_app.command("list")
def models_list(field: Annotated[str | None, typer.Option(help="Only this field.")] = None) -> None:
    """Model versions with their headline metrics."""
    from vitrine.classify.registry import ModelRegistry

    vitrine = _open()
    _print_json([_model_line(r) for r in ModelRegistry(vitrine.engine, vitrine.blobs).list(field)])


@models_app.command("activate")
def models_activate(model_id: Annotated[int, typer.Argument(help="Model id.")]) -> None:
    """Make a model version its field's active one."""
    from vitrine.classify.registry import ModelRegistry, UnknownModelError

    vitrine = _open()
    try:
        _print_json(_model_line(ModelRegistry(vitrine.engine, vitrine.blobs).activate(model_id)))
    except UnknownModelError:
        _fail(f"model {model_id} does not exist")


@models_app.command("rollback")
def models_rollback(field: Annotated[str, typer.Argument(help="Label field.")]) -> None:
    """Re-activate the field's previously active version."""
    from vitrine.classify.registry import ModelRegistry, UnknownModelError

    vitrine = _open()
    try:
        _print_json(_model_line(ModelRegistry(vitrine.engine, vitrine.blobs).rollback(field)))
    except UnknownModelError as exc:
        _fail(str(exc.args[0]))


@app.command("train-tag")
def train_tag(
    name: Annotated[str, typer.Argument(help="Tag name, e.g. pattern.")],
    csv_path: Annotated[Path, typer.Option("--csv", help="A labelled catalog CSV.")],
    images: Annotated[Path, typer.Option("--images", help="Folder of its photos.")],
    column: Annotated[
        str, typer.Option(help="Column with the tag, e.g. graphical_appearance_name.")
    ],
    id_column: Annotated[str, typer.Option(help="Column with the product id.")] = "id",
    image_path: Annotated[str | None, typer.Option(help="Image path template.")] = None,
    limit: Annotated[int | None, typer.Option(help="Use at most this many rows.")] = None,
    groups: Annotated[
        str | None, typer.Option(help="Feature groups, e.g. pattern+texture.")
    ] = None,
) -> None:
    """Train a tag model (e.g. the pattern) from any labelled catalog, usable on every catalog.

    The catalog's photos are analysed here and not stored; only the model is kept.
    """
    from vitrine.classify.trainer import TrainingError
    from vitrine.jobs.catalog_source import ColumnMapping
    from vitrine.services.tag_training import train_tag_model

    if not csv_path.is_file():
        _fail(f"{csv_path}: no such CSV file")
    if not images.is_dir():
        _fail(f"{images}: no such image folder")
    vitrine = _open()
    mapping = ColumnMapping(id_column=id_column, image_path=image_path)
    try:
        rows = train_tag_model(
            vitrine,
            name,
            csv_path,
            images,
            mapping,
            column,
            limit=limit,
            groups=groups.split("+") if groups else None,
        )
    except (TrainingError, ValueError) as exc:
        _fail(str(exc))
    finally:
        vitrine.close()
    _print_json([_model_line(r) for r in rows])


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
