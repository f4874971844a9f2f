"""Image intake: bytes in, an RGB array out, or a typed error that says what is wrong.

Formats are recognised by content, never by file name. EXIF orientation is applied,
palette / alpha / CMYK / 16-bit images are converted to 8-bit RGB (transparency onto
white), and size limits protect the service from decompression bombs. JPEGs are
decoded at reduced size (libjpeg's DCT scaling) when the caller needs far fewer pixels.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

SUPPORTED_FORMATS = frozenset({"JPEG", "MPO", "PNG", "WEBP", "GIF", "BMP", "TIFF"})
DEFAULT_MAX_BYTES = 20 * 1024 * 1024
DEFAULT_MAX_PIXELS = 40_000_000
DEFAULT_MIN_SIDE = 16
_EXIF_ORIENTATION = 0x0112

# Truncated files must fail loudly, not come out half grey.
ImageFile.LOAD_TRUNCATED_IMAGES = False
# Vitrine enforces its own, configurable pixel limit before decoding.
Image.MAX_IMAGE_PIXELS = None

_MAGIC_NAMES: tuple[tuple[bytes, str], ...] = (
    (b"PK\x03\x04", "a ZIP archive"),
    (b"%PDF", "a PDF document"),
    (b"\x1f\x8b", "a gzip archive"),
    (b"<?xml", "an XML document"),
    (b"<svg", "an SVG drawing (vector images are not supported)"),
    (b"<!DOCTYPE", "an HTML document"),
    (b"<html", "an HTML document"),
    (b"{", "JSON or text"),
)


class ImageDecodeError(ValueError):
    """An image that cannot be used. ``source`` names the file, ``reason`` says why."""

    kind = "invalid_image"
    # The HTTP status every web route answers for it: 413 too large, 415 not an image
    # it can read, 422 a broken one.
    status = 422

    def __init__(self, source: str, reason: str) -> None:
        super().__init__(f"{source}: {reason}")
        self.source = source
        self.reason = reason


class EmptyImageError(ImageDecodeError):
    kind = "empty_file"


class ImageTooLargeError(ImageDecodeError):
    kind = "file_too_large"
    status = 413


class DecompressionBombError(ImageDecodeError):
    kind = "too_many_pixels"
    status = 413


class ImageTooSmallError(ImageDecodeError):
    kind = "image_too_small"


class NotAnImageError(ImageDecodeError):
    kind = "not_an_image"
    status = 415


class UnsupportedImageFormatError(ImageDecodeError):
    kind = "unsupported_format"
    status = 415


class CorruptImageError(ImageDecodeError):
    kind = "corrupt_image"


@dataclass(frozen=True)
class DecodeLimits:
    """Byte, pixel and size limits of image decoding."""

    max_bytes: int = DEFAULT_MAX_BYTES
    max_pixels: int = DEFAULT_MAX_PIXELS
    min_side: int = DEFAULT_MIN_SIDE


@dataclass(frozen=True)
class DecodedImage:
    """An upright 8-bit RGB image (possibly reduced) and what is known of the original."""

    rgb: np.ndarray  # (H, W, 3) uint8, C-contiguous
    format: str  # e.g. "JPEG"
    width: int  # of the original, after EXIF rotation
    height: int
    source: str


def _describe_unknown(data: bytes) -> str:
    head = data[:16].lstrip()
    for magic, name in _MAGIC_NAMES:
        if head.startswith(magic):
            return f"not an image: the content is {name}"
    return "not an image: the content is not a recognised image format"


def read_image_bytes(path: Path, limits: DecodeLimits = DecodeLimits()) -> bytes:
    """Read a file for decoding, refusing oversized files before reading them."""
    source = str(path)
    try:
        size = path.stat().st_size
    except FileNotFoundError as exc:
        raise ImageDecodeError(source, "file not found") from exc
    except OSError as exc:
        raise ImageDecodeError(source, f"cannot read file ({exc.strerror})") from exc
    if size > limits.max_bytes:
        raise ImageTooLargeError(
            source, f"file is {size} bytes, more than the limit of {limits.max_bytes}"
        )
    return path.read_bytes()


def decode_image(
    data: bytes | Path,
    *,
    source: str | None = None,
    limits: DecodeLimits = DecodeLimits(),
    max_side: int | None = None,
) -> DecodedImage:
    """Decode an image to upright RGB.

    ``max_side`` bounds the longest side of the returned array (the original size is
    still reported); JPEGs are then decoded directly at a reduced scale.
    """
    if isinstance(data, Path):
        source = source or str(data)
        data = read_image_bytes(data, limits)
    source = source or "<upload>"
    if not data:
        raise EmptyImageError(source, "file is empty")
    if len(data) > limits.max_bytes:
        raise ImageTooLargeError(
            source, f"file is {len(data)} bytes, more than the limit of {limits.max_bytes}"
        )

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            img = Image.open(io.BytesIO(data))
    except UnidentifiedImageError as exc:
        raise NotAnImageError(source, _describe_unknown(data)) from exc
    except (OSError, SyntaxError, ValueError) as exc:
        raise CorruptImageError(source, f"corrupt or truncated image header ({exc})") from exc

    fmt = (img.format or "").upper()
    if fmt not in SUPPORTED_FORMATS:
        raise UnsupportedImageFormatError(
            source,
            f"format {fmt or 'unknown'} is not supported (use JPEG, PNG, WebP, GIF, BMP or TIFF)",
        )
    width, height = img.size
    if width * height > limits.max_pixels:
        raise DecompressionBombError(
            source,
            f"image claims {width}x{height} = {width * height} pixels, "
            f"more than the limit of {limits.max_pixels}",
        )
    if min(width, height) < limits.min_side:
        raise ImageTooSmallError(
            source,
            f"image is {width}x{height} pixels; each side must be at least {limits.min_side}",
        )

    try:
        if img.getexif().get(_EXIF_ORIENTATION, 1) in {5, 6, 7, 8}:
            width, height = height, width  # stored sideways; reported upright
        if fmt in {"JPEG", "MPO"} and max_side is not None:
            # DCT scaling picks the smallest scale (1/2, 1/4, 1/8) still >= the request.
            img.draft("RGB", (max_side, max_side))
        img.seek(0)  # GIF / TIFF / MPO: the first frame
        img.load()
        img = ImageOps.exif_transpose(img) or img
        rgb = _to_rgb(img)
    except ImageDecodeError:
        raise
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise CorruptImageError(source, f"corrupt or truncated image data ({exc})") from exc

    if max_side is not None and max(rgb.size) > max_side:
        scale = max_side / max(rgb.size)
        new_size = (max(1, round(rgb.width * scale)), max(1, round(rgb.height * scale)))
        rgb = rgb.resize(new_size, Image.Resampling.BILINEAR, reducing_gap=2.0)
    array = np.ascontiguousarray(np.asarray(rgb, dtype=np.uint8))
    return DecodedImage(rgb=array, format=fmt, width=width, height=height, source=source)


def _to_rgb(img: Image.Image) -> Image.Image:
    """Convert any Pillow mode to 8-bit RGB, compositing transparency onto white."""
    mode = img.mode
    if mode == "RGB":
        return img
    if mode in {"I;16", "I;16B", "I;16L", "I;16N", "I", "F"}:
        arr = np.asarray(img, dtype=np.float64)
        top = 65535.0 if mode.startswith("I;16") or arr.max() > 255 else 255.0
        gray = np.clip(arr / top * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return Image.fromarray(gray, mode="L").convert("RGB")
    if mode == "P":
        img = img.convert("RGBA") if "transparency" in img.info else img.convert("RGB")
        mode = img.mode
    if mode in {"RGBA", "LA", "PA", "RGBa", "La"}:
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    if mode == "L" and "transparency" in img.info:
        return _to_rgb(img.convert("LA"))
    return img.convert("RGB")
