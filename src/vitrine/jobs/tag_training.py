"""Tag models from any labelled catalog: its photos are analysed (not stored) and a head
is trained on one of its columns, e.g. H&M's ``graphical_appearance_name`` as the
``pattern`` tag. The model then tags every product of this shop's catalog."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from vitrine.catalog.csv_source import CatalogRow, ColumnMapping, read_catalog
from vitrine.classify.dataset import FieldLabels, clean_value
from vitrine.classify.features import blocks_from_analyses
from vitrine.classify.registry import TAG_PREFIX
from vitrine.classify.service import train_config
from vitrine.classify.trainer import TrainingError, train_and_register
from vitrine.runtime import Runtime
from vitrine.vision.analyzer import ImageAnalysis, prepare
from vitrine.vision.decode import ImageDecodeError, read_image_bytes

log = logging.getLogger(__name__)
CHUNK = 32


def analyse_catalog(
    vitrine: Runtime,
    csv_path: Path,
    images: Path,
    mapping: ColumnMapping,
    column: str,
    limit: int | None = None,
) -> tuple[list[str], list[ImageAnalysis], dict[str, str]]:
    """Analyse the photos of the rows that have a value in ``column``; bad photos skipped."""
    ids: list[str] = []
    analyses: list[ImageAnalysis] = []
    values: dict[str, str] = {}
    chunk: list[tuple[str, Any]] = []

    def flush() -> None:
        if chunk:
            done = vitrine.analyzer.complete([p for _, p in chunk])
            ids.extend(pid for pid, _ in chunk)
            analyses.extend(done)
            chunk.clear()

    seen = 0
    for item in read_catalog(csv_path, images, mapping):
        if limit is not None and seen >= limit:
            break
        if not isinstance(item, CatalogRow):
            continue
        value = clean_value(item.product.attributes.get(column))
        if value is None:
            continue
        seen += 1
        try:
            data = read_image_bytes(item.image_path, vitrine.limits)
            chunk.append((item.product.id, prepare(data, str(item.image_path), vitrine.limits)))
        except ImageDecodeError as exc:
            log.warning("skipped %s: %s", item.image_path, exc.reason)
            continue
        values[item.product.id] = value
        if len(chunk) >= CHUNK:
            flush()
    flush()
    if not ids:
        raise TrainingError(f"no row of {csv_path} has a value in column {column!r} and a photo")
    return ids, analyses, values


def train_tag_model(
    vitrine: Runtime,
    name: str,
    csv_path: Path,
    images: Path,
    mapping: ColumnMapping,
    column: str,
    *,
    limit: int | None = None,
    groups: list[str] | None = None,
    activate: str = "if-better",
) -> list[dict[str, Any]]:
    """Train and register the tag model ``tag:<name>``; returns its registry row."""
    name = name.strip()
    if not name or name.startswith(TAG_PREFIX):
        raise ValueError(f"tag name {name!r} must be plain, e.g. pattern")
    ids, analyses, values = analyse_catalog(vitrine, csv_path, images, mapping, column, limit)
    field = TAG_PREFIX + name
    features = blocks_from_analyses(ids, analyses)
    return train_and_register(
        vitrine.store,
        vitrine.classification.registry,
        [field],
        vitrine.embedder.model_version,
        train_config(vitrine.settings, groups=groups),
        kind="tag",
        trigger="tag-catalog",
        features=features,
        labels={field: FieldLabels(field, values, set())},
        activate=activate,
    )
