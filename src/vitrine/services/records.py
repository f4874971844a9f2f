"""How one analysed photo becomes catalog rows: the image and one row per feature."""

from __future__ import annotations

from vitrine.catalog.store import EMBEDDING_KIND, FeatureRecord, ImageRecord
from vitrine.vision.analyzer import ImageAnalysis
from vitrine.vision.features import FEATURE_VERSION


def image_records(analysis: ImageAnalysis, product_id: str, blob_key: str) -> ImageRecord:
    """The rows that store one analysed photo and all of its features."""
    p = analysis.prepared
    vectors = p.features.vectors()
    features = [
        FeatureRecord(
            kind=EMBEDDING_KIND,
            version=analysis.model_version,
            vector=analysis.embedding,
            data={
                "labels": [{"name": lb.name, "confidence": lb.confidence} for lb in analysis.labels]
            },
        ),
        FeatureRecord(kind="summary", version=FEATURE_VERSION, data=p.features.summary()),
    ]
    features += [
        FeatureRecord(kind=kind, version=FEATURE_VERSION, vector=vector)
        for kind, vector in vectors.items()
    ]
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
