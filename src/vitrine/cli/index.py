"""``vitrine index``: rebuild and backfill the visual index."""

from __future__ import annotations

import typer

from vitrine.cli.common import open_vitrine, print_json

index_app = typer.Typer(help="The visual index.", no_args_is_help=True)


@index_app.command("rebuild")
def index_rebuild() -> None:
    """Rebuild the visual index from the database."""
    vitrine = open_vitrine()
    vitrine.search.rebuild()
    print_json({"indexed": len(vitrine.search), "kind": vitrine.search.vectors.kind})


@index_app.command("backfill")
def index_backfill() -> None:
    """Compute descriptors that products imported by an older version lack (colour layout)."""
    from tqdm import tqdm

    from vitrine.jobs.backfill import backfill_layouts

    vitrine = open_vitrine()
    with tqdm(unit="photo", desc="colour layout") as bar:

        def progress(done: int, total: int) -> None:
            bar.total = total
            bar.update(done - bar.n)

        report = backfill_layouts(vitrine, progress)
    vitrine.close()
    print_json(
        {
            "computed": report.computed,
            "failed": [{"product_id": p, "reason": r} for p, r in report.failed],
        }
    )
