"""Command-line options that import the H&M data: its articles CSV and its purchase log."""

from __future__ import annotations

from pathlib import Path


def catalog_import_args(catalog: Path, images: Path) -> list[str]:
    """``vitrine import-catalog`` over an H&M articles CSV and its photo folder."""
    return [
        "import-catalog",
        str(catalog),
        "--images",
        str(images),
        "--id-column",
        "article_id",
        "--image-path",
        "{article_id[:3]}/{article_id}.jpg",
        "--title-column",
        "prod_name",
        "--no-progress",
    ]


def events_import_args(log: Path) -> list[str]:
    """``vitrine import-events`` over an H&M transactions CSV (every row a purchase)."""
    return [
        "import-events",
        str(log),
        "--user",
        "customer_id",
        "--item",
        "article_id",
        "--time",
        "t_dat",
        "--type",
        "purchase",
        "--price",
        "price",
    ]
