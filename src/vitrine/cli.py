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
app.add_typer(model_app, name="model")
app.add_typer(index_app, name="index")
app.add_typer(db_app, name="db")
app.add_typer(keys_app, name="keys")
evaluate_app = typer.Typer(help="Offline evaluation.", no_args_is_help=True)
app.add_typer(evaluate_app, name="evaluate")
strategies_app = typer.Typer(help="Recommendation strategies.", no_args_is_help=True)
app.add_typer(strategies_app, name="strategies")

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


def _open() -> Any:
    from vitrine.services.runtime import Vitrine

    try:
        return Vitrine(load_settings())
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
    limit: Annotated[int | None, typer.Option(help="Import at most this many rows.")] = None,
    workers: Annotated[int | None, typer.Option(help="Worker processes (0: none).")] = None,
    rejects: Annotated[Path | None, typer.Option(help="Where to write the rejects CSV.")] = None,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
) -> None:
    """Import products and their photos from a CSV; resumable, bad rows reported."""
    from vitrine.jobs.bulk_import import import_catalog
    from vitrine.jobs.catalog_source import ColumnMapping

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
    )
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
        _fail(str(exc))
    finally:
        vitrine.close()
    summary = report.to_json()
    summary["first_rejects"] = [
        {"line": r.line, "product_id": r.product_id, "reason": r.reason}
        for r in report.rejected[:10]
    ]
    _print_json(summary)


@app.command()
def analyze(image: Annotated[Path, typer.Argument(help="An image file.")]) -> None:
    """Print every feature of one photo as JSON."""
    from vitrine.vision.decode import ImageDecodeError, read_image_bytes

    vitrine = _open()
    try:
        analysis = vitrine.analyzer.analyze(read_image_bytes(image, vitrine.limits), str(image))
    except ImageDecodeError as exc:
        _fail(str(exc))
    _print_json(analysis.to_json())


@app.command()
def search(
    image: Annotated[Path, typer.Argument(help="A query photo.")],
    k: Annotated[int, typer.Option("-k", help="How many results.")] = 10,
    filter: FilterOption = None,
) -> None:
    """Find the catalog products that look most like a photo."""
    from vitrine.vision.decode import ImageDecodeError, read_image_bytes

    vitrine = _open()
    try:
        analysis = vitrine.analyzer.analyze(read_image_bytes(image, vitrine.limits), str(image))
        hits = vitrine.search.search(analysis.embedding, k, filter)
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
) -> None:
    """Start the HTTP service."""
    import uvicorn

    from vitrine.api.app import create_app
    from vitrine.api.logs import configure_logging

    settings = load_settings()
    configure_logging(settings.log_level)
    uvicorn.run(
        create_app(settings),
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
def train_recommendations() -> None:
    """Train every recommendation model now (the server also retrains on its own)."""
    vitrine = _open()
    try:
        models = vitrine.recommendations.train()
    finally:
        vitrine.close()
    _print_json({"trained": models.train_seconds, "customers": models.data.n_users,
                 "events": len(models.data.ev_day), "products": models.data.n_catalog})


@evaluate_app.command("recommendations")
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


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
