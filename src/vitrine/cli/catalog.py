"""Catalog commands: import products and precomputed features, analyze a photo, search."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from vitrine.cli.common import FilterOption, fail, hits_json, open_vitrine, print_json


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
    from vitrine.catalog.csv_records import check_encoding
    from vitrine.catalog.csv_source import ColumnMapping
    from vitrine.jobs.bulk_import import import_catalog

    if not csv_path.is_file():
        fail(f"{csv_path}: no such CSV file")
    if not images.is_dir():
        fail(f"{images}: no such image folder")
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
        fail(str(exc))
    vitrine = open_vitrine()
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
        fail(f"{csv_path}: {exc}")
    finally:
        vitrine.close()
    summary = report.to_json()
    summary["first_rejects"] = [
        {"line": r.line, "product_id": r.product_id, "reason": r.reason}
        for r in report.rejected[:10]
    ]
    print_json(summary)


def analyze(
    image: Annotated[Path, typer.Argument(help="An image file.")],
    title: Annotated[
        str | None, typer.Option(help="The product's title: classification reads it too.")
    ] = None,
) -> None:
    """Print every feature of one photo as JSON."""
    from vitrine.vision.decode import ImageDecodeError, read_image_bytes

    vitrine = open_vitrine()
    try:
        analysis = vitrine.analyzer.analyze(read_image_bytes(image, vitrine.limits), str(image))
    except ImageDecodeError as exc:
        fail(str(exc))
    print_json({**analysis.to_json(), **vitrine.classification.describe(analysis, title)})


def search(
    image: Annotated[Path, typer.Argument(help="A query photo.")],
    k: Annotated[int, typer.Option("-k", help="How many results.")] = 10,
    filter: FilterOption = None,
) -> None:
    """Find the catalog products that look most like a photo."""
    from vitrine.vision.decode import ImageDecodeError, read_image_bytes

    vitrine = open_vitrine()
    try:
        data = read_image_bytes(image, vitrine.limits)
        _, hits = vitrine.photo_search(data, str(image), k, filter)
    except (ImageDecodeError, ValueError) as exc:
        fail(str(exc))
    print_json({"query": str(image), "results": hits_json(vitrine, hits)})


def similar(
    product_id: Annotated[str, typer.Argument(help="A product id in the catalog.")],
    k: Annotated[int, typer.Option("-k", help="How many results.")] = 10,
    filter: FilterOption = None,
) -> None:
    """Products that look most like a product of the catalog."""
    from vitrine.index.visual_search import UnknownProductError

    vitrine = open_vitrine()
    try:
        hits = vitrine.search.similar(product_id, k, filter)
    except UnknownProductError:
        fail(f"product {product_id!r} is not in the catalog (or has no photo)")
    except ValueError as exc:
        fail(str(exc))
    print_json({"product_id": product_id, "results": hits_json(vitrine, hits)})


def import_features_cmd(
    parquet: Annotated[str, typer.Argument(help="Output of `vitrine spark embed`.")],
) -> None:
    """Load precomputed features and embeddings into the catalog and the index."""
    from vitrine.jobs.import_features import import_features

    vitrine = open_vitrine()
    try:
        report = import_features(vitrine, parquet)
    except (OSError, ValueError) as exc:
        fail(str(exc))
    finally:
        vitrine.close()
    print_json(report.to_json())
