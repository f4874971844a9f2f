"""The aspect snapshot file: every product's aspect rows, float16, mapped by every process.

One file beside the saved vector index (``VITRINE_HOME/index/aspects.snapshot``):

* a magic line, then a JSON header: format and version, the catalog fingerprint it was
  written at (:meth:`vitrine.catalog.store.CatalogStore.aspect_fingerprint`), the row
  count and capacity, the product id of each row, each kind's dimension and offset, and
  the primary photo sizes' ids;
* then, each at a 4 KiB-aligned offset, per kind a ``capacity x dim`` float16 matrix
  (float32 for the kinds that the exact aspect scans read whole) and
  a ``capacity`` presence byte array, and the photo sizes (``n x 2`` int32).

Rows past the product count are spare (zero): products added after the snapshot take
them without growing the matrices. :func:`read_snapshot` maps the matrices with
``numpy.memmap(mode="c")``: the pages come from the page cache, shared by every process
that maps the file; a process that writes a row gets a private copy of that page only.
A snapshot whose fingerprint is not the catalog's is not used (the caller rebuilds from
the database). Writing is atomic (temporary file, fsync, ``os.replace``): a process that
mapped the previous file keeps reading it until it maps the new one.

float16 keeps ~3 significant digits of unit-norm rows (relative error <= 2^-11): the
per-aspect cosines move by about 1e-3 at most, which leaves search by photo unchanged (see
``docs/benchmarks.md``).
"""

from __future__ import annotations

import contextlib
import json
import os
import struct
import tempfile
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Final

import numpy as np

__all__ = ["AspectSnapshot", "read_snapshot", "snapshot_fingerprint", "write_snapshot"]

FORMAT: Final = "vitrine-aspect-snapshot"
FORMAT_VERSION: Final = 1
_MAGIC: Final = b"VITRASP\x01"
_LEN: Final = struct.Struct("<Q")
_ALIGN: Final = 4096
_DTYPE: Final = np.dtype("<f2")
_FULL: Final = np.dtype("<f4")
_CHUNK: Final = 65_536  # rows converted at a time when writing


@dataclass(frozen=True)
class AspectSnapshot:
    """A snapshot read back: row ids, per kind (matrix, presence), and photo sizes."""

    fingerprint: str
    ids: list[str]
    kinds: dict[str, tuple[np.ndarray, np.ndarray]]
    size_ids: list[str]
    sizes: np.ndarray  # len(size_ids) x 2 (width, height)


def spare_rows(count: int) -> int:
    """Spare rows written after ``count`` products: room for the changes of a while."""
    return max(1024, count // 8)


def write_snapshot(
    path: Path,
    fingerprint: str,
    ids: Sequence[str],
    kinds: Mapping[str, tuple[np.ndarray, np.ndarray]],
    rows: np.ndarray,
    size_ids: Sequence[str],
    sizes: np.ndarray,
    full_precision: Collection[str] = (),
) -> AspectSnapshot:
    """Write a snapshot of ``ids`` atomically: ``kinds[kind]`` is (matrix, presence) of
    which ``rows`` (one per id) are taken; ``sizes`` has a (width, height) per size id.
    Kinds in ``full_precision`` are kept float32 (those that exact scans read whole: numpy
    has no fast float16 matrix product). Returns the file written, mapped (before it
    replaces ``path``: another process that writes the snapshot at the same time cannot
    swap it)."""
    path = Path(path)
    count = len(ids)
    capacity = count + spare_rows(count)
    layout: list[dict[str, Any]] = []
    offset = 0
    for kind, (matrix, _) in kinds.items():
        dim = int(matrix.shape[1])
        dtype = _FULL if kind in full_precision else _DTYPE
        layout.append({"kind": kind, "dim": dim, "matrix": offset, "dtype": dtype.str})
        offset = _aligned(offset + capacity * dim * dtype.itemsize)
        layout[-1]["present"] = offset
        offset = _aligned(offset + capacity)
    size_array = np.asarray(sizes, "<i4").reshape(-1, 2)
    header = {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "fingerprint": fingerprint,
        "count": count,
        "capacity": capacity,
        "ids": list(ids),
        "kinds": layout,
        "sizes": offset,
        "size_ids": list(size_ids),
    }
    head = json.dumps(header, ensure_ascii=False).encode()
    base = _aligned(len(_MAGIC) + _LEN.size + len(head))
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(_MAGIC + _LEN.pack(len(head)) + head)
            for entry, (matrix, present) in zip(layout, kinds.values(), strict=True):
                fh.seek(base + entry["matrix"])
                for start in range(0, count, _CHUNK):
                    chunk = matrix[rows[start : start + _CHUNK]]
                    fh.write(np.ascontiguousarray(chunk, entry["dtype"]).tobytes())
                fh.seek(base + entry["present"])
                fh.write(np.asarray(present)[rows].astype(np.uint8).tobytes())
            fh.seek(base + offset)
            fh.write(size_array.tobytes())
            fh.truncate(base + offset + size_array.nbytes)  # spare rows: zero (sparse)
            fh.flush()
            os.fsync(fh.fileno())
        written = read_snapshot(Path(tmp))
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return written


def snapshot_fingerprint(path: Path) -> str | None:
    """The fingerprint a snapshot was written at; None if missing or unreadable."""
    try:
        with open(path, "rb") as fh:
            fingerprint = _read_header(fh, Path(path))[0].get("fingerprint")
    except (OSError, ValueError):
        return None
    return fingerprint if isinstance(fingerprint, str) else None


def read_snapshot(path: Path) -> AspectSnapshot:
    """Map a snapshot written by :func:`write_snapshot` (copy-on-write; see the module
    docstring). Raises ValueError when the file is not a readable snapshot."""
    path = Path(path)
    with open(path, "rb") as fh:
        header, base = _read_header(fh, path)
    try:
        count, capacity = int(header["count"]), int(header["capacity"])
        ids = header["ids"]
        kinds: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        for entry in header["kinds"]:
            dim = int(entry["dim"])
            dtype = np.dtype(entry.get("dtype", _DTYPE.str))
            if dtype not in (_DTYPE, _FULL):
                raise ValueError(f"unknown dtype {dtype}")
            matrix = np.memmap(path, dtype, "c", base + int(entry["matrix"]), shape=(capacity, dim))
            present = np.fromfile(path, np.uint8, capacity, offset=base + int(entry["present"]))
            kinds[str(entry["kind"])] = (matrix, present.astype(bool))
        size_ids = header["size_ids"]
        sizes = np.fromfile(path, "<i4", 2 * len(size_ids), offset=base + int(header["sizes"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"{path}: corrupt aspect snapshot: {exc}") from exc
    if len(ids) != count or count > capacity or len(sizes) != 2 * len(size_ids):
        raise ValueError(f"{path}: truncated or inconsistent aspect snapshot")
    return AspectSnapshot(
        str(header["fingerprint"]), ids, kinds, size_ids, sizes.reshape(-1, 2).astype(np.int64)
    )


def _aligned(offset: int) -> int:
    return -(-offset // _ALIGN) * _ALIGN


def _read_header(fh: BinaryIO, path: Path) -> tuple[dict[str, Any], int]:
    if fh.read(len(_MAGIC)) != _MAGIC:
        raise ValueError(f"{path}: not an aspect snapshot")
    raw = fh.read(_LEN.size)
    if len(raw) != _LEN.size:
        raise ValueError(f"{path}: truncated aspect snapshot")
    size = int(_LEN.unpack(raw)[0])
    try:
        header = json.loads(fh.read(size))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: corrupt aspect snapshot header: {exc}") from exc
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise ValueError(f"{path}: not an aspect snapshot")
    if header.get("version") != FORMAT_VERSION:
        raise ValueError(f"{path}: unsupported aspect snapshot version {header.get('version')}")
    return header, _aligned(len(_MAGIC) + _LEN.size + size)
