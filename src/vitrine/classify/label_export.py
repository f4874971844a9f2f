"""Classification results out: one CSV row per product with each field's value, source
(human / model), confidence and review flag."""

from __future__ import annotations

import csv
import io
from collections import defaultdict
from collections.abc import Iterator, Sequence
from typing import Any

from vitrine.catalog.store import CatalogStore
from vitrine.classify.labels import resolve_categories
from vitrine.classify.registry import TAG_PREFIX, ModelRegistry


def label_table(
    store: CatalogStore, registry: ModelRegistry, fields: Sequence[str] | None = None
) -> tuple[list[str], Iterator[list[Any]]]:
    """The header and the rows (one per product, by id); ``fields`` default to every field
    that has labels or a model."""
    rows_by_product: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in store.labels(fields=fields):
        rows_by_product[row["product_id"]].append(row)
    if fields is None:
        known = {r["field"] for rows in rows_by_product.values() for r in rows}
        known |= {m["field"] for m in registry.active()}
        fields = sorted(f for f in known if not f.startswith(TAG_PREFIX))
    chosen = list(fields)
    header = ["product_id"]
    for f in chosen:
        header += [f, f"{f}_source", f"{f}_confidence", f"{f}_needs_review"]

    def rows() -> Iterator[list[Any]]:
        for pid, _title, attributes in sorted(store.iter_attributes(), key=lambda r: r[0]):
            resolved = resolve_categories(attributes, rows_by_product.get(pid, []), chosen)
            line: list[Any] = [pid]
            for f in chosen:
                entry = resolved.get(f)
                if entry is None:
                    line += ["", "", "", ""]
                else:
                    confidence = entry["confidence"]
                    line += [
                        entry["value"] if entry["value"] is not None else "",
                        entry["source"],
                        "" if confidence is None else f"{confidence:.4f}",
                        "yes" if entry["needs_review"] else "no",
                    ]
            yield line

    return header, rows()


def csv_chunks(
    store: CatalogStore,
    registry: ModelRegistry,
    fields: Sequence[str] | None = None,
    rows_per_chunk: int = 1000,
) -> Iterator[str]:
    """The same CSV as text chunks, for a download that streams."""
    header, rows = label_table(store, registry, fields)
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(header)
    for n, line in enumerate(rows, 1):
        writer.writerow(line)
        if n % rows_per_chunk == 0:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue()
