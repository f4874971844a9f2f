"""Image intake: formats by content, conversions, EXIF orientation, and every bad input."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from image_bytes import png_claiming
from vitrine.vision.decode import (
    CorruptImageError,
    DecodeLimits,
    DecompressionBombError,
    EmptyImageError,
    ImageTooLargeError,
    ImageTooSmallError,
    NotAnImageError,
    UnsupportedImageFormatError,
    decode_image,
)


def encode(img: Image.Image, fmt: str, **kwargs: object) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kwargs)
    return buf.getvalue()


def sample(size: tuple[int, int] = (64, 48)) -> Image.Image:
    arr = np.zeros((size[1], size[0], 3), np.uint8)
    arr[..., 0] = np.linspace(0, 255, size[0], dtype=np.uint8)[None, :]
    arr[..., 2] = 200
    return Image.fromarray(arr)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF"])
def test_formats_recognised_by_content(fmt: str) -> None:
    data = encode(sample(), fmt)
    decoded = decode_image(data, source="photo.bin")  # the name says nothing
    assert decoded.format == fmt
    assert decoded.rgb.shape == (48, 64, 3)
    assert decoded.rgb.dtype == np.uint8


def test_transparency_goes_onto_white() -> None:
    rgba = Image.new("RGBA", (32, 32), (255, 0, 0, 0))
    rgba.paste((0, 0, 255, 255), (8, 8, 24, 24))
    rgb = decode_image(encode(rgba, "PNG")).rgb
    assert tuple(rgb[0, 0]) == (255, 255, 255)
    assert tuple(rgb[16, 16]) == (0, 0, 255)


def test_palette_cmyk_and_16_bit_become_rgb() -> None:
    pal = sample().convert("P")
    assert decode_image(encode(pal, "PNG")).rgb.shape == (48, 64, 3)
    cmyk = Image.new("CMYK", (32, 32), (0, 255, 255, 0))  # red in CMYK
    rgb = decode_image(encode(cmyk, "JPEG")).rgb
    assert rgb[16, 16, 0] > 200 and rgb[16, 16, 1] < 60
    gray16 = Image.fromarray((np.ones((32, 32)) * 65535).astype(np.uint16))
    out = decode_image(encode(gray16, "PNG")).rgb
    assert out.shape == (32, 32, 3) and out.min() == 255


def test_gif_first_frame() -> None:
    frames = [Image.new("RGB", (32, 32), c) for c in [(255, 0, 0), (0, 255, 0)]]
    buf = io.BytesIO()
    frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:])
    rgb = decode_image(buf.getvalue()).rgb
    assert rgb[0, 0, 0] > 200 and rgb[0, 0, 1] < 50


def test_exif_orientation_applied() -> None:
    img = sample((80, 40))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    decoded = decode_image(encode(img, "JPEG", exif=exif, quality=95))
    assert decoded.rgb.shape == (80, 40, 3)
    assert (decoded.width, decoded.height) == (40, 80)


def test_jpeg_draft_decodes_reduced_size() -> None:
    data = encode(sample((1000, 1000)), "JPEG")
    decoded = decode_image(data, max_side=320)
    assert max(decoded.rgb.shape[:2]) == 320
    assert (decoded.width, decoded.height) == (1000, 1000)


def test_empty_file() -> None:
    with pytest.raises(EmptyImageError, match="empty.jpg: file is empty"):
        decode_image(b"", source="empty.jpg")


def test_truncated_jpeg() -> None:
    data = encode(sample((200, 200)), "JPEG")
    with pytest.raises(CorruptImageError, match="cut.jpg: corrupt or truncated"):
        decode_image(data[: len(data) // 2], source="cut.jpg")


def test_zip_named_jpg() -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as archive:
        archive.writestr("a.txt", "hello")
    with pytest.raises(NotAnImageError, match="photo.jpg: not an image: the content is a ZIP"):
        decode_image(buf.getvalue(), source="photo.jpg")


def test_one_pixel_image() -> None:
    with pytest.raises(ImageTooSmallError, match="1x1 pixels"):
        decode_image(encode(Image.new("RGB", (1, 1)), "PNG"), source="dot.png")


def test_png_header_claiming_100k_square_is_a_bomb() -> None:
    with pytest.raises(DecompressionBombError, match="100000x100000"):
        decode_image(png_claiming(100_000, 100_000), source="bomb.png")


def test_file_size_limit(tmp_path: Path) -> None:
    path = tmp_path / "big.png"
    path.write_bytes(encode(sample(), "PNG"))
    with pytest.raises(ImageTooLargeError, match="big.png: file is"):
        decode_image(path, limits=DecodeLimits(max_bytes=100))


def test_unsupported_format() -> None:
    data = encode(sample(), "ICO")
    with pytest.raises(UnsupportedImageFormatError, match="ICO is not supported"):
        decode_image(data, source="fav.ico")


def test_errors_carry_source_and_reason() -> None:
    with pytest.raises(NotAnImageError) as info:
        decode_image(b"hello world, no image here", source="notes.png")
    assert info.value.source == "notes.png"
    assert "not an image" in info.value.reason
