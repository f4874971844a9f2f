"""``vitrine search-scene`` (the products in a real photo) and ``vitrine localizer``
(train the localiser behind it, show the one in use)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from vitrine.cli.common import FilterOption, fail, open_vitrine, print_json
from vitrine.cli.jobs import run_job_here

localizer_app = typer.Typer(
    help="The localiser of products in real photos: train one, show the one in use.",
    no_args_is_help=True,
)


def search_scene(
    image: Annotated[Path, typer.Argument(help="A real photo: a snapshot, a post.")],
    k: Annotated[int, typer.Option("-k", help="Matches per product found.")] = 10,
    filter: FilterOption = None,
) -> None:
    """Find the products in a photo, each with its box and its catalog matches."""
    from vitrine.index.scene_search import LocalizerNotTrained, scene_json
    from vitrine.vision.decode import ImageDecodeError, read_image_bytes

    vitrine = open_vitrine()
    try:
        data = read_image_bytes(image, vitrine.limits)
        objects = vitrine.scene_search(data, str(image), k, filter)
        print_json({"query": str(image), "objects": scene_json(objects, vitrine.search.describe)})
    except (ImageDecodeError, ValueError, LocalizerNotTrained) as exc:
        fail(str(exc))
    finally:
        vitrine.close()


@localizer_app.command("train")
def train_localizer(
    products: Annotated[
        int, typer.Option(min=20, help="Catalog photos to cut products out of.")
    ] = 1500,
    scenes: Annotated[int, typer.Option(min=50, help="Synthetic scenes to learn from.")] = 600,
) -> None:
    """Train the localiser on scenes composed of the catalog's own photos (a job; run here
    unless a running server leads)."""
    from vitrine.cluster.job_queue import TRAIN_LOCALIZER

    vitrine = open_vitrine()
    try:
        job = vitrine.jobs.submit(
            TRAIN_LOCALIZER, {"products": products, "scenes": scenes}, "command line"
        )
        finished = run_job_here(vitrine, job)
    finally:
        vitrine.close()
    if finished["state"] not in ("queued", "running", "done"):
        fail(f"training the localiser {finished['state']}: {finished.get('error')}")
    print_json(finished.get("result") or finished)


@localizer_app.command("show")
def show_localizer() -> None:
    """The localiser in use and its held-out evaluation."""
    vitrine = open_vitrine()
    try:
        record = vitrine.finder.record()
    finally:
        vitrine.close()
    print_json(record or {"trained": False})
