"""Classification results out: one CSV row per product with each field's value, source
(human / model), confidence and review flag."""

from __future__ import annotations

import csv
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from vitrine.catalog.store import CatalogStore
from vitrine.classify.labels import resolve_categories
from vitrine.classify.registry import TAG_PREFIX, ModelRegistry


def export_labels_csv(
    store: CatalogStore, registry: ModelRegistry, out: Path, fields: Sequence[str] | None = None
) -> int:
    """Write the CSV; ``fields`` default to every field that has labels or a model."""
    rows_by_product: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in store.labels(fields=fields):
        rows_by_product[row["product_id"]].append(row)
    if fields is None:
        known = {r["field"] for rows in rows_by_product.values() for r in rows}
        known |= {m["field"] for m in registry.active()}
        fields = sorted(f for f in known if not f.startswith(TAG_PREFIX))
    out.parent.mkdir(parents=True, exist_ok=True)
    count = 0
    with out.open("w", newline="") as handle:
        writer = csv.writer(handle)
        header = ["product_id"]
        for f in fields:
            header += [f, f"{f}_source", f"{f}_confidence", f"{f}_needs_review"]
        writer.writerow(header)
        for pid, _title, attributes in sorted(store.iter_attributes(), key=lambda r: r[0]):
            resolved = resolve_categories(attributes, rows_by_product.get(pid, []), fields)
            line: list[Any] = [pid]
            for f in fields:
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
            writer.writerow(line)
            count += 1
    return count
