"""The vector index's file: magic header, JSON metadata, id table, then the faiss index.

Written to a temporary file in the same directory, fsynced and moved into place with
``os.replace``, so that readers see either the old or the new file;
:func:`read_metadata` reads only the header and metadata.
"""

from __future__ import annotations

import contextlib
import json
import os
import struct
import tempfile
from pathlib import Path
from typing import Any, BinaryIO, Final

import faiss

FORMAT: Final = "vitrine-vector-index"
FORMAT_VERSION: Final = 1
_MAGIC: Final = b"VITRIDX\x01"
_LEN: Final = struct.Struct("<Q")
_MAX_META_BYTES: Final = 1 << 20


def write_index_file(path: Path, meta: dict[str, Any], ids: list[str | None], index: Any) -> None:
    """Write ``meta`` (format and version added), the id table and ``index`` atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    meta_bytes = json.dumps(
        {"format": FORMAT, "version": FORMAT_VERSION, **meta}, sort_keys=True
    ).encode()
    ids_bytes = json.dumps(ids, ensure_ascii=False).encode()
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(_MAGIC)
            fh.write(_LEN.pack(len(meta_bytes)))
            fh.write(meta_bytes)
            fh.write(_LEN.pack(len(ids_bytes)))
            fh.write(ids_bytes)
            writer = faiss.PyCallbackIOWriter(fh.write)
            faiss.write_index(index, writer)
            del writer
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)
        raise
    _fsync_dir(path.parent)


def read_index_file(path: Path) -> tuple[dict[str, Any], list[str | None], Any]:
    """The metadata, id table and faiss index of a file written by :func:`write_index_file`."""
    path = Path(path)
    with open(path, "rb") as fh:
        meta = _read_meta(fh, path)
        ids_len = _read_len(fh, path)
        ids = json.loads(fh.read(ids_len))
        reader = faiss.PyCallbackIOReader(fh.read)
        index = faiss.read_index(reader)
        del reader
    if not isinstance(ids, list) or not all(i is None or isinstance(i, str) for i in ids):
        raise ValueError(f"{path}: corrupt id table")
    return meta, ids, index


def read_metadata(path: Path) -> dict[str, Any] | None:
    """The metadata block of a saved index, or None if missing or not a saved index."""
    try:
        with open(path, "rb") as fh:
            return _read_meta(fh, Path(path))
    except (OSError, ValueError):
        return None


def _read_len(fh: BinaryIO, path: Path) -> int:
    raw = fh.read(_LEN.size)
    if len(raw) != _LEN.size:
        raise ValueError(f"{path}: truncated vector index file")
    return int(_LEN.unpack(raw)[0])


def _read_meta(fh: BinaryIO, path: Path) -> dict[str, Any]:
    if fh.read(len(_MAGIC)) != _MAGIC:
        raise ValueError(f"{path}: not a vitrine vector index file")
    size = _read_len(fh, path)
    if size > _MAX_META_BYTES:
        raise ValueError(f"{path}: metadata block too large ({size} bytes)")
    try:
        meta = json.loads(fh.read(size))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: corrupt metadata: {exc}") from exc
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ValueError(f"{path}: not a vitrine vector index file")
    if meta.get("version") != FORMAT_VERSION:
        raise ValueError(f"{path}: unsupported vector index version {meta.get('version')!r}")
    return meta


def _fsync_dir(directory: Path) -> None:
    """Make a rename durable (best effort; not every platform can open directories)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
