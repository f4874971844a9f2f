"""The vector index's file: the faiss index, then the id table, JSON metadata and a trailer.

Version 2 puts the faiss index first, at offset 0, so that faiss can map it
(``IO_FLAG_MMAP_IFC``: the stored vectors are read in place from the page cache, shared
by every process that maps the file; an HNSW graph is still read into memory). The id
table and metadata follow it; the trailer (their lengths and a magic) ends the file.
Version 1 files (magic, metadata, id table, then the index) are still read, copied.

Written to a temporary file in the same directory, fsynced and moved into place with
``os.replace``, so that readers see either the old or the new file;
:func:`read_metadata` reads only the trailer and metadata. A mapped index keeps its file
open (:class:`MappedSource`), so that an owned copy of that very file can be read when
the index must change, even after the path was replaced.
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
FORMAT_VERSION: Final = 2
_MAGIC: Final = b"VITRIDX\x01"  # version 1: at the start
_MAGIC_2: Final = b"VITRIDX\x02"  # version 2: at the end
_LEN: Final = struct.Struct("<Q")
_TRAILER: Final = struct.Struct("<QQ8s")  # id table length, metadata length, magic
_MAX_META_BYTES: Final = 1 << 20


def write_index_file(path: Path, meta: dict[str, Any], ids: list[str | None], index: Any) -> None:
    """Write ``index``, the id table and ``meta`` (format and version added) atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    meta_bytes = json.dumps(
        {"format": FORMAT, "version": FORMAT_VERSION, **meta}, sort_keys=True
    ).encode()
    ids_bytes = json.dumps(ids, ensure_ascii=False).encode()
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            writer = faiss.PyCallbackIOWriter(fh.write)
            faiss.write_index(index, writer)
            del writer
            fh.write(ids_bytes)
            fh.write(meta_bytes)
            fh.write(_TRAILER.pack(len(ids_bytes), len(meta_bytes), _MAGIC_2))
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)
        raise
    _fsync_dir(path.parent)


class MappedSource:
    """The open file of a mapped faiss index: reads an owned copy of the same file."""

    def __init__(self, fh: BinaryIO) -> None:
        self._fh = fh

    def read_owned(self) -> Any:
        """The faiss index of the file, read into memory (it may then be changed)."""
        self._fh.seek(0)
        reader = faiss.PyCallbackIOReader(self._fh.read)
        index = faiss.read_index(reader)
        del reader
        return index

    def close(self) -> None:
        self._fh.close()


def read_index_file(
    path: Path, *, mmap: bool = False
) -> tuple[dict[str, Any], list[str | None], Any, MappedSource | None]:
    """The metadata, id table and faiss index of a file written by :func:`write_index_file`,
    and with ``mmap`` (version 2 files) the index mapped read-only and its open file."""
    path = Path(path)
    fh = open(path, "rb")  # noqa: SIM115 - a mapped index keeps it open
    try:
        if fh.read(len(_MAGIC)) == _MAGIC:  # version 1
            fh.seek(0)
            meta = _read_meta(fh, path)
            ids = json.loads(fh.read(_read_len(fh, path)))
            reader = faiss.PyCallbackIOReader(fh.read)
            index, source = faiss.read_index(reader), None
            del reader
        else:
            meta, ids = _read_trailer(fh, path, with_ids=True)
            if mmap:  # the open file itself: the same file even if the path is replaced
                index = faiss.read_index(f"/proc/self/fd/{fh.fileno()}", faiss.IO_FLAG_MMAP_IFC)
                source = MappedSource(fh)
            else:
                index, source = MappedSource(fh).read_owned(), None
    except BaseException:
        fh.close()
        raise
    if source is None:
        fh.close()
    if not isinstance(ids, list) or not all(i is None or isinstance(i, str) for i in ids):
        raise ValueError(f"{path}: corrupt id table")
    return meta, ids, index, source


def read_metadata(path: Path) -> dict[str, Any] | None:
    """The metadata block of a saved index, or None if missing or not a saved index."""
    try:
        with open(path, "rb") as fh:
            if fh.read(len(_MAGIC)) == _MAGIC:
                fh.seek(0)
                return _read_meta(fh, Path(path))
            return _read_trailer(fh, Path(path), with_ids=False)[0]
    except (OSError, ValueError):
        return None


def _read_trailer(fh: BinaryIO, path: Path, *, with_ids: bool) -> tuple[dict[str, Any], Any]:
    """Metadata (and id table) of a version 2 file."""
    size = fh.seek(0, os.SEEK_END)
    if size < _TRAILER.size:
        raise ValueError(f"{path}: not a vitrine vector index file")
    fh.seek(size - _TRAILER.size)
    ids_len, meta_len, magic = _TRAILER.unpack(fh.read(_TRAILER.size))
    if magic != _MAGIC_2 or ids_len + meta_len + _TRAILER.size > size:
        raise ValueError(f"{path}: not a vitrine vector index file")
    if meta_len > _MAX_META_BYTES:
        raise ValueError(f"{path}: metadata block too large ({meta_len} bytes)")
    fh.seek(size - _TRAILER.size - meta_len)
    meta = _parse_meta(fh.read(meta_len), path, FORMAT_VERSION)
    ids = None
    if with_ids:
        fh.seek(size - _TRAILER.size - meta_len - ids_len)
        ids = json.loads(fh.read(ids_len))
    return meta, ids


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
    return _parse_meta(fh.read(size), path, 1)


def _parse_meta(raw: bytes, path: Path, version: int) -> dict[str, Any]:
    try:
        meta = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: corrupt metadata: {exc}") from exc
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ValueError(f"{path}: not a vitrine vector index file")
    if meta.get("version") != version:
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
