"""Descriptors added after products were imported, computed from the stored photos.

The colour layout (``vision.layout``) came after the first catalogs were imported; search
by photo works without it but finds near-duplicates better with it. :func:`backfill_layouts`
computes it for every primary photo that lacks it, from the blob store, and puts it in the
running index. A photo that cannot be read is reported and skipped.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from vitrine.catalog.blobs import BlobNotFoundError
from vitrine.catalog.store import FeatureRecord
from vitrine.runtime import Runtime
from vitrine.vision.analyzer import WORKING_SIDE
from vitrine.vision.decode import ImageDecodeError, decode_image
from vitrine.vision.layout import LAYOUT_KIND, LAYOUT_VERSION, layout_vector
from vitrine.vision.query import catalog_aspects

log = logging.getLogger(__name__)

CHUNK = 512


@dataclass
class BackfillReport:
    """What a backfill computed, and the photos it could not read."""

    computed: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)  # (product id, reason)


def backfill_layouts(
    vitrine: Runtime, on_progress: Callable[[int, int], None] | None = None
) -> BackfillReport:
    """Compute the missing colour layouts; ``on_progress(done, total)`` after each chunk."""
    missing = vitrine.store.images_missing_feature(LAYOUT_KIND, LAYOUT_VERSION)
    report = BackfillReport()
    for start in range(0, len(missing), CHUNK):
        rows: list[tuple[int, FeatureRecord]] = []
        ids: list[str] = []
        for image_id, product_id, key in missing[start : start + CHUNK]:
            try:
                data = vitrine.blobs.get(key)
                rgb = decode_image(data, source=key, max_side=WORKING_SIDE).rgb
            except (BlobNotFoundError, ImageDecodeError, OSError) as exc:
                report.failed.append((product_id, str(exc)))
                continue
            layout = layout_vector(rgb)
            rows.append((image_id, FeatureRecord(LAYOUT_KIND, LAYOUT_VERSION, vector=layout)))
            ids.append(product_id)
        vitrine.store.add_features(rows)
        if ids:
            stacked = np.stack([f.vector for _, f in rows if f.vector is not None])
            vitrine.search.aspects.upsert(
                ids, catalog_aspects({LAYOUT_KIND: stacked}), replace=False
            )
        report.computed += len(rows)
        if on_progress:
            on_progress(min(start + CHUNK, len(missing)), len(missing))
    if report.failed:
        log.warning("colour layout: %d photos could not be read", len(report.failed))
    return report
