"""Reading a shop's product CSV: rows to product records and the path of each photo.

Every value is read as a string (ids such as ``0111565001`` keep their leading zeros).
The photo path comes from a template over the row's columns, such as ``{id}.jpg`` or
``{article_id[:3]}/{article_id}.jpg`` (Python-style slices), or from a column.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from vitrine.catalog.csv_records import BrokenRecord, CsvFormatError, read_records
from vitrine.catalog.store import ProductRecord

_PLACEHOLDER = re.compile(r"\{([A-Za-z_][\w.-]*)(?:\[(-?\d*):(-?\d*)\])?\}")
TITLE_COLUMNS = ("title", "name", "productDisplayName", "prod_name")
DESCRIPTION_COLUMNS = ("description", "detail_desc")
PRICE_COLUMNS = ("price",)
AVAILABLE_COLUMNS = ("available", "in_stock")


class RowError(ValueError):
    """A CSV row that cannot be imported; the message says why."""


class PathTemplate:
    """``{column}`` and ``{column[a:b]}`` placeholders filled from a row."""

    def __init__(self, template: str) -> None:
        self.template = template
        self.columns = [m.group(1) for m in _PLACEHOLDER.finditer(template)]
        if not self.columns:
            raise ValueError(f"image path template {template!r} names no column, e.g. '{{id}}.jpg'")

    def render(self, row: dict[str, str]) -> str:
        def fill(match: re.Match[str]) -> str:
            column, start, stop = match.group(1), match.group(2), match.group(3)
            if column not in row:
                raise RowError(f"image path template needs column {column!r}, which the CSV lacks")
            value = row[column] or ""
            if start is not None or stop is not None:
                value = value[int(start) if start else None : int(stop) if stop else None]
            return value

        return _PLACEHOLDER.sub(fill, self.template)


@dataclass(frozen=True)
class CatalogRow:
    """A CSV row that became a product, with the path of its photo."""

    line: int  # 1-based line number in the CSV, header = 1
    product: ProductRecord
    image_path: Path


@dataclass(frozen=True)
class RejectedRow:
    """A CSV row that was not imported: its line and the reason."""

    line: int
    product_id: str
    source: str
    reason: str


@dataclass
class ColumnMapping:
    """How a product CSV's columns map to a product, and its encoding."""

    id_column: str = "id"
    image_path: str | None = None  # template
    image_column: str | None = None
    title_column: str | None = None
    description_column: str | None = None
    price_column: str | None = None
    encoding: str | None = None  # None: UTF-8 (BOM or not) or UTF-16 with a BOM


OUTSIDE_FOLDER = "photo path outside the import folder"
_DRIVE = re.compile(r"^[A-Za-z]:")


def confined(relative: str) -> str:
    """``relative`` if it names a file inside its folder; a RowError otherwise.

    The check is on the text alone, so that links an operator placed inside the folder
    are followed, and the reason never tells what exists on the server.
    """
    parts = re.split(r"[\\/]", relative)
    if (
        relative.startswith(("/", "\\"))
        or _DRIVE.match(relative)
        or ".." in parts
        or "\x00" in relative
    ):
        raise RowError(OUTSIDE_FOLDER)
    return relative


def _pick(fieldnames: list[str], explicit: str | None, candidates: tuple[str, ...]) -> str | None:
    if explicit:
        if explicit not in fieldnames:
            raise CsvFormatError(f"column {explicit!r} is not in the CSV header")
        return explicit
    return next((c for c in candidates if c in fieldnames), None)


def _parse_bool(text: str) -> bool:
    return text.strip().lower() not in {"0", "false", "no", "n", "out of stock", ""}


def read_catalog(
    csv_path: Path, images_dir: Path, mapping: ColumnMapping, *, confine: bool = False
) -> Iterator[CatalogRow | RejectedRow]:
    """Yield each row as a product with its photo path, or as a rejection with its reason.

    ``confine``: photo paths must stay inside ``images_dir`` (imports asked for over the
    API); the command line reads whatever its operator's folder names.
    """
    records = read_records(csv_path, mapping.encoding)
    header = next(records, None)
    if header is None:
        raise CsvFormatError("the CSV file is empty")
    if isinstance(header, BrokenRecord):
        raise CsvFormatError(f"the header cannot be read: {header.reason}")
    fieldnames = header.fields
    if mapping.id_column not in fieldnames:
        raise CsvFormatError(
            f"id column {mapping.id_column!r} is not in the header ({', '.join(fieldnames[:12])})"
        )
    template = PathTemplate(mapping.image_path or f"{{{mapping.id_column}}}.jpg")
    if mapping.image_column and mapping.image_column not in fieldnames:
        raise CsvFormatError(f"image column {mapping.image_column!r} is not in the header")
    title = _pick(fieldnames, mapping.title_column, TITLE_COLUMNS)
    description = _pick(fieldnames, mapping.description_column, DESCRIPTION_COLUMNS)
    price = _pick(fieldnames, mapping.price_column, PRICE_COLUMNS)
    available = _pick(fieldnames, None, AVAILABLE_COLUMNS)
    special = {mapping.id_column, title, description, price, available, mapping.image_column}
    seen: set[str] = set()
    source = csv_path.name

    for record in records:
        line = record.line
        if isinstance(record, BrokenRecord):
            yield RejectedRow(line=line, product_id="", source=source, reason=record.reason)
            continue
        row = dict(zip(fieldnames, record.fields, strict=False))
        pid = (row.get(mapping.id_column) or "").strip()
        try:
            if len(record.fields) > len(fieldnames):
                raise RowError("row has more fields than the header")
            if not pid:
                raise RowError(f"empty id in column {mapping.id_column!r}")
            if pid in seen:
                raise RowError(f"duplicate id {pid!r} (first occurrence imported)")
            seen.add(pid)
            relative = (row.get(mapping.image_column) if mapping.image_column else None) or (
                template.render(row)
            )
            image_path = images_dir / (confined(relative) if confine else relative)
            product = ProductRecord(
                id=pid,
                title=row.get(title) if title else None,
                description=row.get(description) if description else None,
                price=_parse_price(row.get(price) if price else None),
                available=_parse_bool(row[available]) if available and row.get(available) else True,
                attributes={k: v for k, v in row.items() if k not in special and v != ""},
            )
            yield CatalogRow(line=line, product=product, image_path=image_path)
        except RowError as exc:
            yield RejectedRow(line=line, product_id=pid, source=source, reason=str(exc))


def _parse_price(text: str | None) -> float | None:
    if not text:
        return None
    try:
        value = float(text)
    except ValueError as exc:
        raise RowError(f"price {text!r} is not a number") from exc
    if not math.isfinite(value) or value < 0:
        raise RowError(f"price {text!r} must be a finite number >= 0")
    return value
