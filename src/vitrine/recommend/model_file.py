"""The saved model set's file: a pickle whose large arrays are mapped, not copied.

A model set holds large numpy arrays (embeddings, ALS factors, co-occurrence matrices,
event arrays). Pickled whole, every API worker that loads the file holds its own copy.
Here the pickle (protocol 5) keeps every buffer of at least ``MAPPED_MIN_BYTES`` out of
band, written after it in the same file, each aligned to a page; loading maps the file
read-only and hands the pickle those pages (``pickle.loads(buffers=...)``). The arrays
are read-only views of the page cache, shared by every process that loads the same file.

Layout: ``MAGIC``, header length, buffer count (little-endian uint64), the buffers'
(offset, length) pairs, the pickle, then the buffers.
"""

from __future__ import annotations

import mmap
import os
import pickle
import struct
import threading
from pathlib import Path
from typing import Any

MAGIC = b"VTRMOD01"
MAPPED_MIN_BYTES = 64 * 1024  # smaller buffers stay in the pickle
ALIGN = mmap.PAGESIZE


def _aligned(offset: int) -> int:
    return -(-offset // ALIGN) * ALIGN


def write_mapped(path: Path, obj: Any) -> None:
    """Write ``obj`` to ``path`` atomically (a temporary file of our own, then renamed:
    API workers sharing a home may save at once)."""
    buffers: list[pickle.PickleBuffer] = []

    def out_of_band(buffer: pickle.PickleBuffer) -> bool:
        if buffer.raw().nbytes < MAPPED_MIN_BYTES:
            return True  # in band
        buffers.append(buffer)
        return False

    payload = pickle.dumps(obj, protocol=5, buffer_callback=out_of_band)
    head = len(MAGIC) + 16 + 16 * len(buffers)
    spans, offset = [], _aligned(head + len(payload))
    for buffer in buffers:
        size = buffer.raw().nbytes
        spans.append((offset, size))
        offset = _aligned(offset + size)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    with tmp.open("wb") as handle:
        handle.write(MAGIC + struct.pack("<QQ", len(payload), len(buffers)))
        for span in spans:
            handle.write(struct.pack("<QQ", *span))
        handle.write(payload)
        for (start, _), buffer in zip(spans, buffers, strict=True):
            handle.seek(start)
            handle.write(buffer.raw())
        handle.truncate(offset)
    os.replace(tmp, path)


def read_mapped(path: Path) -> Any:
    """The object written by :func:`write_mapped`; its large arrays are read-only views
    of the file mapped in memory (ValueError: not such a file)."""
    with path.open("rb") as handle:
        if os.fstat(handle.fileno()).st_size < len(MAGIC) + 16:
            raise ValueError(f"{path} is not a mapped model file")
        view = memoryview(mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ))
    if bytes(view[: len(MAGIC)]) != MAGIC:
        raise ValueError(f"{path} is not a mapped model file")
    at = len(MAGIC)
    size, count = struct.unpack_from("<QQ", view, at)
    at += 16
    spans = [struct.unpack_from("<QQ", view, at + 16 * i) for i in range(count)]
    at += 16 * count
    buffers = [view[start : start + length] for start, length in spans]
    return pickle.loads(view[at : at + size], buffers=buffers)
