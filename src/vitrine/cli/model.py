"""``vitrine model``: export and quantize the CNN, list its versions, switch the service
to one."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from vitrine.cli.common import fail, open_vitrine, print_json
from vitrine.cli.jobs import run_job_here
from vitrine.config import load_settings

model_app = typer.Typer(
    help="The CNN: export, quantize, its versions, switch the service to one.",
    no_args_is_help=True,
)


@model_app.command("export")
def model_export() -> None:
    """Export the CNN to ONNX (done automatically on first use)."""
    from vitrine.vision.embedding import export_onnx

    settings = load_settings()
    typer.echo(str(export_onnx(settings.model_dir)))


@model_app.command("quantize")
def model_quantize(
    images: Annotated[
        Path | None,
        typer.Option("--images", help="Folder of real product photos (default: the catalog's)."),
    ] = None,
    version: Annotated[
        str | None, typer.Option(help="A fine-tuned version to quantize (default: pretrained).")
    ] = None,
    limit: Annotated[int, typer.Option(help="Calibration photos to use.")] = 256,
) -> None:
    """Make an int8 model, calibrated on the shop's own photos.

    The pretrained CNN's int8 model serves with VITRINE_EMBEDDING_PRECISION=int8; a
    fine-tuned version's int8 twin is a version of its own: `vitrine model switch` to it.
    """
    from vitrine.vision.embedding import quantize_int8
    from vitrine.vision.quantize import quantize_finetuned

    vitrine = open_vitrine()
    try:
        photos = _folder_photos(images, limit) if images else _catalog_photos(vitrine, limit)
        if version:
            try:
                path, name = quantize_finetuned(vitrine.settings.model_dir, version, photos, limit)
            except FileNotFoundError as exc:
                fail(str(exc))
            typer.echo(f"{path}\nversion {name}: `vitrine model switch {name}` serves it")
        else:
            typer.echo(str(quantize_int8(vitrine.settings.model_dir, photos, max_images=limit)))
    finally:
        vitrine.close()


def _folder_photos(images: Path, limit: int) -> Any:
    from vitrine.vision.decode import ImageDecodeError, decode_image

    used = 0
    for path in sorted(p for p in images.rglob("*") if p.is_file()):
        if used >= limit:
            return
        try:
            yield decode_image(path, max_side=320).rgb
            used += 1
        except ImageDecodeError as exc:
            typer.echo(f"skipped {exc}", err=True)


def _catalog_photos(vitrine: Any, limit: int) -> Any:
    """Primary photos spread over the catalog (every n-th product)."""
    from vitrine.catalog.blobs import BlobNotFoundError
    from vitrine.vision.decode import ImageDecodeError, decode_image

    photos = vitrine.store.primary_images()
    if not photos:
        fail("the catalog has no photo to calibrate on: give --images DIR")
    step = max(1, len(photos) // limit)
    for _pid, key in photos[::step][:limit]:
        try:
            yield decode_image(vitrine.blobs.get(key), source=key, max_side=320).rgb
        except (BlobNotFoundError, ImageDecodeError, OSError) as exc:
            typer.echo(f"skipped {exc}", err=True)


@model_app.command("versions")
def model_versions() -> None:
    """The CNN version in service and every fine-tuned version (newest first)."""
    vitrine = open_vitrine()
    try:
        print_json(vitrine.cnn.versions())
    finally:
        vitrine.close()


@model_app.command("switch")
def model_switch(
    version: Annotated[str, typer.Argument(help="The CNN version to put in service.")],
) -> None:
    """Put a CNN version in service: re-embed what lacks it, build its index beside the
    one in service, swap the CNN, index and heads at once (a running server does it live;
    without one it is done here)."""
    from vitrine.classify.cnn_service import UnknownCnnVersion

    vitrine = open_vitrine()
    try:
        job = run_job_here(vitrine, vitrine.cnn.switch(version, "command line"))
    except UnknownCnnVersion as exc:
        fail(str(exc))
    finally:
        vitrine.close()
    print_json(job)
