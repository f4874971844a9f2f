"""``vitrine ads`` (visual search ad campaigns, ads for a shared photo, their funnel) and
``vitrine feed`` (the catalog as a product feed for ad platforms)."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from vitrine.cli.common import fail, open_vitrine, print_json

ads_app = typer.Typer(
    help="Visual search ads: campaigns, ads for a shared photo, their funnel.",
    no_args_is_help=True,
)


def _rules(
    categories: str | None,
    min_price: float | None,
    max_price: float | None,
    per_object: int | None,
    description: str | None,
) -> dict[str, Any]:
    given = {"categories": categories, "min_price": min_price, "max_price": max_price,
             "max_per_object": per_object, "description": description}  # fmt: skip
    return {k: v for k, v in given.items() if v is not None}


Categories = Annotated[
    str | None, typer.Option(help="Comma-separated categories (none: every category).")
]
MinPrice = Annotated[float | None, typer.Option(min=0, help="Lowest price advertised.")]
MaxPrice = Annotated[float | None, typer.Option(min=0, help="Highest price advertised.")]
PerObject = Annotated[int | None, typer.Option(min=1, max=20, help="Products per object.")]
Description = Annotated[str | None, typer.Option(help="What the campaign is for.")]


def _with_vitrine(call: Callable[[Any], Any]) -> None:
    """Run ``call(vitrine)`` on the opened service; print what it answers, or fail with
    the ad service's own message."""
    from vitrine.ads.service import (
        CampaignError,
        CampaignExists,
        CampaignNotFound,
        CampaignPaused,
    )
    from vitrine.vision.decode import ImageDecodeError

    vitrine = open_vitrine()
    try:
        result = call(vitrine)
        if result is not None:
            print_json(result.to_json() if hasattr(result, "to_json") else result)
    except (CampaignError, CampaignExists, CampaignNotFound, CampaignPaused,
            ImageDecodeError) as exc:  # fmt: skip
        fail(str(exc))
    finally:
        vitrine.close()


def _run(action: str, *args: Any) -> None:
    """Call the ad service's method ``action`` with ``args``; print what it answers."""
    _with_vitrine(lambda vitrine: getattr(vitrine.ads, action)(*args))


@ads_app.command("list")
def list_campaigns() -> None:
    """Every campaign with its funnel (impressions, clicks, carts, purchases, revenue)."""
    _run("campaign_rows")


@ads_app.command("create")
def create_campaign(
    name: Annotated[str, typer.Argument(help="The campaign's name.")],
    categories: Categories = None,
    min_price: MinPrice = None,
    max_price: MaxPrice = None,
    per_object: PerObject = None,
    description: Description = None,
    paused: Annotated[bool, typer.Option(help="Create it paused.")] = False,
) -> None:
    """A new campaign."""
    rules = _rules(categories, min_price, max_price, per_object, description)
    _run("create", {"name": name, "active": not paused, **rules})


@ads_app.command("edit")
def edit_campaign(
    name: Annotated[str, typer.Argument(help="The campaign's name.")],
    categories: Categories = None,
    min_price: MinPrice = None,
    max_price: MaxPrice = None,
    per_object: PerObject = None,
    description: Description = None,
    active: Annotated[bool | None, typer.Option("--resume/--pause", help="Serve or not.")] = None,
) -> None:
    """Change the rules given; ``--pause`` / ``--resume``."""
    rules = _rules(categories, min_price, max_price, per_object, description)
    if active is not None:
        rules["active"] = active
    _run("update", name, rules)


@ads_app.command("delete")
def delete_campaign(name: Annotated[str, typer.Argument(help="The campaign's name.")]) -> None:
    """Delete a campaign (its past ads keep their analytics)."""
    _run("delete", name)


@ads_app.command("match")
def match(
    image: Annotated[Path, typer.Argument(help="A photo a customer shared.")],
    campaign: Annotated[str, typer.Option(help="The campaign to serve.")],
    source: Annotated[str | None, typer.Option(help="What the photo is: a post's URL.")] = None,
) -> None:
    """The campaign's ads for the products in a photo (served: counted as impressions)."""
    from dataclasses import asdict

    from vitrine.catalog.feed import ProductLinks
    from vitrine.vision.decode import read_image_bytes

    def serve(vitrine: Any) -> dict[str, Any]:
        data = read_image_bytes(image, vitrine.limits)
        links = ProductLinks.from_settings(vitrine.settings)
        return asdict(vitrine.ads.match(data, campaign, links, source or str(image)))

    _with_vitrine(serve)


@ads_app.command("analytics")
def analytics(
    campaign: Annotated[str | None, typer.Option(help="One campaign only.")] = None,
    sources: Annotated[int, typer.Option(min=1, help="Shared photos listed.")] = 20,
) -> None:
    """The funnel per campaign and per shared photo."""
    _run("analytics", campaign, None, sources)


def feed(
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="File to write (default: stdout).")
    ] = None,
    format: Annotated[str, typer.Option(help="csv or json.")] = "csv",
    base_url: Annotated[
        str, typer.Option(help="Vitrine's public address (for image links), if not configured.")
    ] = "",
) -> None:
    """Write the catalog as a product feed for ad platforms (CSV or JSON)."""
    from vitrine.catalog.feed import FeedError, ProductLinks

    if format not in ("csv", "json"):
        fail(f"format must be csv or json, not {format!r}")
    vitrine = open_vitrine()
    try:
        links = ProductLinks.from_settings(vitrine.settings, base_url)
        write = vitrine.feed.csv_chunks if format == "csv" else vitrine.feed.json_chunks
        chunks = write(links)
        first = next(chunks)
        out = output.open("w", encoding="utf-8", newline="") if output else sys.stdout
        try:
            out.write(first)
            for chunk in chunks:
                out.write(chunk)
        finally:
            if output:
                out.close()
    except FeedError as exc:
        fail(str(exc))
    finally:
        vitrine.close()
