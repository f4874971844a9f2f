"""Blob stores for product photos: one interface, chosen by URL.

``file:///path`` keeps photos in a local directory (the embedded default);
``s3://bucket/prefix`` in an S3-compatible bucket (``catalog/s3.py``). Keys are
content-addressed (``images/ab/cd/<sha256>.jpg``), so storing the same photo twice
costs nothing and a key never changes meaning.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol, runtime_checkable

from vitrine.private_fs import make_private_dir

_EXTENSIONS = {
    "JPEG": "jpg",
    "MPO": "jpg",
    "PNG": "png",
    "WEBP": "webp",
    "GIF": "gif",
    "BMP": "bmp",
    "TIFF": "tif",
}


class BlobNotFoundError(KeyError):
    """The key names no blob in the store."""


@runtime_checkable
class BlobStore(Protocol):
    """What every blob store offers; keys are relative, '/'-separated paths."""

    url: str

    def put(self, key: str, data: bytes, content_type: str | None = None) -> None: ...

    def get(self, key: str) -> bytes: ...

    def exists(self, key: str) -> bool: ...

    def delete(self, key: str) -> None: ...

    def keys(self, prefix: str = "") -> Iterator[str]: ...


def check_key(key: str) -> str:
    """A blob key must be a relative '/'-separated path with no '..' or empty parts."""
    parts = key.split("/")
    if not key or "\\" in key or any(p in {"", ".", ".."} for p in parts):
        raise ValueError(f"blob key {key!r} is not a relative path")
    return key


def image_key(content_hash: str, image_format: str) -> str:
    """The content-addressed key of a photo."""
    ext = _EXTENSIONS.get(image_format.upper(), "bin")
    return f"images/{content_hash[:2]}/{content_hash[2:4]}/{content_hash}.{ext}"


class LocalBlobStore:
    """Blobs as files under one directory, written atomically."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        make_private_dir(self.root)
        self.url = self.root.as_uri()

    def _path(self, key: str) -> Path:
        path = (self.root / check_key(key)).resolve()
        if not path.is_relative_to(self.root) or path == self.root:
            raise ValueError(f"blob key {key!r} escapes the store")
        return path

    def put(self, key: str, data: bytes, content_type: str | None = None) -> None:
        path = self._path(key)
        make_private_dir(path.parent)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")  # 0600
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def get(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError as exc:
            raise BlobNotFoundError(key) from exc

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)

    def keys(self, prefix: str = "") -> Iterator[str]:
        for path in sorted(self.root.rglob("*")):
            if path.is_file() and not path.name.startswith(".tmp-"):
                key = path.relative_to(self.root).as_posix()
                if key.startswith(prefix):
                    yield key
