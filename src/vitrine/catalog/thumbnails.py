"""Thumbnails of product photos, made once and kept in the blob store beside the photo.

Keys are derived from the photo's content-addressed key, so a thumbnail never goes
stale: a new photo has a new key.
"""

from __future__ import annotations

import io

from PIL import Image, ImageOps

from vitrine.catalog.blobs import BlobStore

SIZES = (160, 320, 640)


def thumbnail_key(blob_key: str, size: int) -> str:
    stem = blob_key.rsplit(".", 1)[0].removeprefix("images/")
    return f"thumbs/{size}/{stem}.jpg"


def thumbnail(blobs: BlobStore, blob_key: str, size: int) -> bytes:
    """A JPEG whose long side is at most ``size`` (one of SIZES) of the stored photo."""
    if size not in SIZES:
        raise ValueError(f"thumbnail size must be one of {SIZES}, not {size}")
    key = thumbnail_key(blob_key, size)
    if blobs.exists(key):
        return blobs.get(key)
    with Image.open(io.BytesIO(blobs.get(blob_key))) as img:
        img.draft("RGB", (size, size))  # JPEG: decode at a reduced scale
        img = ImageOps.exif_transpose(img).convert("RGB")
        img.thumbnail((size, size), Image.Resampling.LANCZOS)
        out = io.BytesIO()
        img.save(out, format="JPEG", quality=85, optimize=True)
    data = out.getvalue()
    blobs.put(key, data, "image/jpeg")
    return data
