"""Recommendation commands: import events, recommend, train, evaluate; ``vitrine strategies``."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from vitrine.cli.common import FilterOption, fail, open_vitrine, print_json, stage

strategies_app = typer.Typer(help="Recommendation strategies.", no_args_is_help=True)


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
        fail(f"{csv_path}: no such CSV file")
    if (type_ is None) == (type_column is None):
        fail("give exactly one of --type (one type for every row) or --type-column")
    vitrine = open_vitrine()
    columns = EventColumns(
        user=user,
        item=item,
        time=time or None,
        type_column=type_column,
        type_value=type_,
        event_id=event_id,
        session=session,
        price=price,
    )
    try:
        report = vitrine.recommendations.import_events(csv_path, columns)
    except ValueError as exc:
        fail(str(exc))
    finally:
        vitrine.close()
    print_json(report.to_json())


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
        fail("give exactly one of --user or --users")
    if users is not None and not users.is_file():
        fail(f"{users}: no such file")
    if k < 1:
        fail("-k must be at least 1")
    vitrine = open_vitrine()
    service = vitrine.recommendations
    try:
        service.load_or_train()
        if user is not None:
            print_json(service.recommend_user(user, k, strategy, filter).to_json())
            return
        assert users is not None
        ids = [
            line.strip()
            for line in users.read_text().splitlines()
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
        fail(str(exc))
    finally:
        vitrine.close()


def train_recommendations(
    als_factors: Annotated[
        Path | None,
        typer.Option(
            help="`vitrine spark train-als` output to serve ALS from (this run; "
            "VITRINE_RECOMMEND_ALS_FACTORS for the server)."
        ),
    ] = None,
) -> None:
    """Train every recommendation model now (the server also retrains on its own)."""
    overrides = {}
    if als_factors is not None:
        if not (als_factors / "item_factors").is_dir():
            fail(f"--als-factors {als_factors}: no item_factors folder (train-als output)")
        overrides["recommend_als_factors"] = str(als_factors.resolve())
    vitrine = open_vitrine(**overrides)
    try:
        with stage("training the recommendation models"):
            models = vitrine.recommendations.train()
    except ValueError as exc:  # e.g. factors that cannot be read
        fail(str(exc))
    finally:
        vitrine.close()
    print_json(
        {
            "trained": models.train_seconds,
            "customers": models.data.n_users,
            "events": len(models.data.ev_day),
            "products": models.data.n_catalog,
        }
    )


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
        typer.Option(
            help="Recommend from the catalog of now, also products launched after "
            "the split (default: the catalog as of the split)."
        ),
    ] = False,
) -> None:
    """Offline evaluation of every algorithm beside the last-4-weeks popularity baseline."""
    from vitrine.recommend.evaluate import format_table
    from vitrine.recommend.events import EventError, parse_time

    try:
        split = parse_time(split_date)
    except EventError as exc:
        fail(str(exc))
    vitrine = open_vitrine()
    try:
        run = vitrine.recommendations.evaluate(
            split,
            k,
            algorithms.split(",") if algorithms else None,
            test_days,
            progress=lambda name: typer.echo(f"evaluating {name}", err=True),
            whole_catalog=whole_catalog,
        )
    except ValueError as exc:
        fail(str(exc))
    finally:
        vitrine.close()
    results = run.pop("_results")
    if as_json:
        print_json(run)
    else:
        typer.echo(f"evaluation {run['id']}: {run['params']}")
        typer.echo(format_table(results, k))


@strategies_app.command("list")
def strategies_list() -> None:
    """Every strategy with its configuration."""
    vitrine = open_vitrine()
    try:
        print_json(
            [
                {"name": s.name, "description": s.description, **s.to_json()}
                for s in vitrine.recommendations.strategies.list()
            ]
        )
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
        fail(f"--config is not JSON: {exc}")
    if not isinstance(data, dict):
        fail("--config must be a JSON object")
    vitrine = open_vitrine()
    try:
        strategy = Strategy.from_json(name, data, description)
        vitrine.recommendations.strategies.put(strategy)
    except StrategyError as exc:
        fail(str(exc))
    finally:
        vitrine.close()
    print_json({"name": name, **strategy.to_json()})
