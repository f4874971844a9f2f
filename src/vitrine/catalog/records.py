"""How analysed photos become catalog rows (the image, one row per feature) and index rows."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from vitrine.catalog.store import EMBEDDING_KIND, FeatureRecord, ImageRecord
from vitrine.vision.analyzer import ImageAnalysis
from vitrine.vision.features import FEATURE_VERSION
from vitrine.vision.layout import LAYOUT_KIND, LAYOUT_VERSION

# The version each stored descriptor kind is tagged with.
ASPECT_VERSIONS: dict[str, str] = {
    "color": FEATURE_VERSION,
    "texture": FEATURE_VERSION,
    "shape": FEATURE_VERSION,
    "pattern": FEATURE_VERSION,
    LAYOUT_KIND: LAYOUT_VERSION,
}


def feature_records(
    model_version: str,
    embedding: np.ndarray,
    labels: list[dict[str, Any]],
    summary: dict[str, Any],
    vectors: dict[str, np.ndarray],
    feature_version: str = FEATURE_VERSION,
) -> list[FeatureRecord]:
    """One photo's feature rows: the embedding (with its labels), the summary, each vector
    (tagged with its kind's version, ``feature_version`` for kinds not listed)."""
    features = [
        FeatureRecord(
            kind=EMBEDDING_KIND, version=model_version, vector=embedding, data={"labels": labels}
        ),
        FeatureRecord(kind="summary", version=feature_version, data=summary),
    ]
    return features + [
        FeatureRecord(kind=kind, version=ASPECT_VERSIONS.get(kind, feature_version), vector=vector)
        for kind, vector in vectors.items()
    ]


def image_records(analysis: ImageAnalysis, product_id: str, blob_key: str) -> ImageRecord:
    """The rows that store one analysed photo and all of its features."""
    p = analysis.prepared
    features = feature_records(
        analysis.model_version,
        analysis.embedding,
        [{"name": lb.name, "confidence": lb.confidence} for lb in analysis.labels],
        p.features.summary(),
        p.aspect_vectors(),
    )
    return ImageRecord(
        product_id=product_id,
        content_hash=p.content_hash,
        blob_key=blob_key,
        format=p.format,
        width=p.width,
        height=p.height,
        byte_size=p.byte_size,
        is_primary=True,
        features=features,
    )


def aspect_rows(analyses: Sequence[ImageAnalysis]) -> dict[str, np.ndarray]:
    """The descriptors of several photos stacked by kind (kinds that all of them have)."""
    if not analyses:
        return {}
    per_photo = [a.prepared.aspect_vectors() for a in analyses]
    kinds = set.intersection(*(set(v) for v in per_photo))
    return {kind: np.stack([v[kind] for v in per_photo]) for kind in sorted(kinds)}


def image_sizes(analyses: Sequence[ImageAnalysis]) -> np.ndarray:
    """(width, height) of each photo, N x 2."""
    return np.array([(a.prepared.width, a.prepared.height) for a in analyses], np.int64)
