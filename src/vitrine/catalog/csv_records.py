"""Strict CSV reading: each record with its line, and each broken one as an error, never fatal.

Python's ``csv`` module, left to itself, lets a quote that is never closed swallow every
following line into one field, and stops the whole file at one over-long field or one
byte that does not decode. Here every record is parsed strictly and a broken one is
reported with the line it starts on; parsing then resumes on the next physical line, so
the rows after it are read too.

Encodings: UTF-8 (with or without a BOM) and UTF-16 with a BOM are recognised; any other
(cp1252, latin-1, ...) is named by the caller. A line holding bytes that are not valid in
the encoding rejects the record it belongs to, with the byte and its line.
"""

from __future__ import annotations

import codecs
import csv
import io
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

# The longest field accepted; a longer one rejects its row. This is the csv module's
# process-wide default, which Vitrine never changes.
MAX_FIELD_BYTES = csv.field_size_limit()
# A record whose quoted field runs past this many lines is taken as a quote never closed.
MAX_RECORD_LINES = 1_000


class CsvFormatError(ValueError):
    """The file as a whole cannot be read as CSV (no header, unknown encoding)."""


@dataclass(frozen=True)
class Record:
    """A parsed record: its first line (1-based) and its fields."""

    line: int
    fields: list[str]


@dataclass(frozen=True)
class BrokenRecord:
    """A record that cannot be parsed: its first line and what is wrong."""

    line: int
    reason: str


def check_encoding(name: str | None) -> str | None:
    """``name`` as a known codec name, or None; a CsvFormatError names an unknown one."""
    if not name:
        return None
    try:
        return codecs.lookup(name).name
    except LookupError:
        raise CsvFormatError(f"unknown encoding {name!r} (e.g. utf-8, cp1252, latin-1)") from None


def detect_encoding(head: bytes, explicit: str | None = None) -> str:
    """The file's encoding: the caller's, else from its BOM, else UTF-8."""
    if explicit:
        return check_encoding(explicit) or "utf-8"
    if head.startswith(codecs.BOM_UTF8):
        return "utf-8-sig"
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16"
    return "utf-8"


def _lines(handle: BinaryIO, encoding: str) -> Iterator[str]:
    """Physical lines, endings kept; undecodable bytes kept as lone surrogates."""
    if encoding.replace("_", "-").startswith("utf-16"):
        text = io.TextIOWrapper(handle, encoding=encoding, errors="replace", newline="")
        yield from text
        return
    decoder = codecs.getincrementaldecoder(encoding)(errors="surrogateescape")
    for raw in handle:
        yield decoder.decode(raw)


def _undecodable(text: str) -> str | None:
    for ch in text:
        if "\udc80" <= ch <= "\udcff":
            return f"0x{ord(ch) - 0xDC00:02X}"
    if "\ufffd" in text:
        return "U+FFFD"
    return None


class _Feed:
    """The lines of a file with a push-back buffer, counting lines as they are taken."""

    def __init__(self, lines: Iterator[str]) -> None:
        self._lines = lines
        self._back: deque[tuple[int, str]] = deque()
        self.next_line = 1
        self.taken: list[tuple[int, str]] = []

    def __iter__(self) -> _Feed:
        return self

    def __next__(self) -> str:
        if self._back:
            number, text = self._back.popleft()
        else:
            text = next(self._lines)
            number = self.next_line
            self.next_line += 1
        self.taken.append((number, text))
        if len(self.taken) > MAX_RECORD_LINES:
            raise csv.Error("record runs past the line limit")
        return text

    def start_record(self) -> None:
        self.taken = []

    def retry_after_first(self) -> None:
        """Give back every line of the failed record but its first."""
        for item in reversed(self.taken[1:]):
            self._back.appendleft(item)
        self.taken = self.taken[:1]


def read_records(path: Path, encoding: str | None = None) -> Iterator[Record | BrokenRecord]:
    """Every record of the CSV file (the header first), or why one could not be read."""
    with path.open("rb") as handle:
        head = handle.read(4)
        handle.seek(0)
        enc = detect_encoding(head, encoding)
        yield from parse_lines(_lines(handle, enc), encoding_hint=encoding is None)


def parse_lines(
    lines: Iterator[str], *, encoding_hint: bool = True
) -> Iterator[Record | BrokenRecord]:
    """Parse decoded lines; see the module docstring."""
    feed = _Feed(lines)
    width: int | None = None
    while True:
        feed.start_record()
        reader = csv.reader(feed, strict=True)
        try:
            fields = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            first = feed.taken[0][0] if feed.taken else feed.next_line
            yield BrokenRecord(first, _reason(str(exc), first, len(feed.taken)))
            feed.retry_after_first()
            continue
        first, last = feed.taken[0][0], feed.taken[-1][0]
        if not fields or (fields == [""] and len(feed.taken) == 1):
            continue  # a blank line
        text = "".join(t for _, t in feed.taken)
        bad = _undecodable(text)
        if bad is not None:
            hint = " (name the file's encoding, e.g. cp1252)" if encoding_hint else ""
            yield BrokenRecord(first, f"line {first}: byte {bad} is not valid text{hint}")
            continue
        if width is None:
            width = len(fields)
        elif last > first and len(fields) != width:
            # A quote left open runs into the next rows until some later quote closes
            # it; the record then rarely has the header's shape.
            yield BrokenRecord(
                first,
                f"quote opened on line {first} is never closed (the row would run to line "
                f"{last} with {len(fields)} fields; the header has {width})",
            )
            feed.retry_after_first()
            continue
        yield Record(first, fields)


def _reason(message: str, first: int, lines: int) -> str:
    if lines > 1 or "unexpected end of data" in message or "line limit" in message:
        # A quoted field that ran over lines and then broke is a quote never closed.
        return f"quote opened on line {first} is never closed"
    if "field larger than field limit" in message:
        return f"line {first}: a field is longer than {MAX_FIELD_BYTES // 1024} KiB"
    if "expected after" in message:
        return f"line {first}: text after a closing quote ({message})"
    return f"line {first}: {message}"
