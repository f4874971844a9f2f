"""Opening the blob store that a URL names: a local folder or an S3-compatible bucket."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote, urlparse

from vitrine.catalog.blobs import BlobStore, LocalBlobStore
from vitrine.catalog.s3 import S3BlobStore, S3Options


def open_blob_store(url: str, s3: S3Options | None = None) -> BlobStore:
    """Open the blob store a URL names (``file:///dir``, a plain path, or ``s3://bucket/prefix``)."""
    parsed = urlparse(url)
    if parsed.scheme in {"", "file"}:
        return LocalBlobStore(Path(unquote(parsed.path) if parsed.scheme else url))
    if parsed.scheme == "s3":
        return S3BlobStore(url, s3)
    raise ValueError(
        f"blob store URL {url!r}: scheme {parsed.scheme!r} is not supported;"
        " use file:///path or s3://bucket/prefix"
    )
