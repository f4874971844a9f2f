"""How one analysed photo becomes catalog rows: the image and one row per feature."""

from __future__ import annotations

from typing import Any

import numpy as np

from vitrine.catalog.store import EMBEDDING_KIND, FeatureRecord, ImageRecord
from vitrine.vision.analyzer import ImageAnalysis
from vitrine.vision.features import FEATURE_VERSION


def feature_records(
    model_version: str,
    embedding: np.ndarray,
    labels: list[dict[str, Any]],
    summary: dict[str, Any],
    vectors: dict[str, np.ndarray],
    feature_version: str = FEATURE_VERSION,
) -> list[FeatureRecord]:
    """One photo's feature rows: the embedding (with its labels), the summary, each vector."""
    features = [
        FeatureRecord(
            kind=EMBEDDING_KIND, version=model_version, vector=embedding, data={"labels": labels}
        ),
        FeatureRecord(kind="summary", version=feature_version, data=summary),
    ]
    return features + [
        FeatureRecord(kind=kind, version=feature_version, vector=vector)
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
        p.features.vectors(),
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
