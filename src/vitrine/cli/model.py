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
