"""``vitrine model``: export and quantize the CNN."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from vitrine.config import load_settings

model_app = typer.Typer(help="The CNN: export, quantize.", no_args_is_help=True)


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
