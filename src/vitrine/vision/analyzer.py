"""The image analysis pipeline: one decode, every feature, the CNN embedding.

Analysis is split in two stages so that bulk jobs can run the first in worker
processes and batch the second: ``prepare`` (decode, hand-crafted features, the
model's input tensor; no model needed) and ``ImageAnalyzer.complete`` (the CNN on a
batch of prepared images).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from vitrine.vision.decode import DecodeLimits, decode_image
from vitrine.vision.embedding import Embedder, Label
from vitrine.vision.features import FEATURE_VERSION, VisualFeatures, extract_features
from vitrine.vision.layout import LAYOUT_KIND, LAYOUT_VERSION, layout_vector
from vitrine.vision.model_input import prepare_image

# Decoding at this long side keeps every detail the features and the 224-px model see,
# and lets JPEG decoding skip most of the work on large photos.
WORKING_SIDE = 320


@dataclass
class PreparedImage:
    """An image decoded and described, ready for the CNN."""

    source: str
    content_hash: str
    format: str
    width: int
    height: int
    byte_size: int
    features: VisualFeatures
    model_input: np.ndarray  # (224, 224, 3) uint8
    timings: dict[str, float] = field(default_factory=dict)
    layout: np.ndarray | None = None  # colour layout (vision.layout), for search by photo

    def aspect_vectors(self) -> dict[str, np.ndarray]:
        """The stored descriptors by kind: the features and, when computed, the layout."""
        vectors = self.features.vectors()
        if self.layout is not None:
            vectors[LAYOUT_KIND] = self.layout
        return vectors


@dataclass
class ImageAnalysis:
    """Everything Vitrine sees in one photo."""

    prepared: PreparedImage
    embedding: np.ndarray  # (1280,) float32, unit norm
    labels: list[Label]
    model_version: str

    def to_json(self) -> dict[str, Any]:
        p = self.prepared
        summary = p.features.summary()
        return {
            "image": {
                "source": p.source,
                "format": p.format,
                "width": p.width,
                "height": p.height,
                "bytes": p.byte_size,
                "sha256": p.content_hash,
            },
            "colors": summary.get("color"),
            "texture": summary.get("texture"),
            "shape": summary.get("shape"),
            "pattern": summary.get("pattern"),
            "foreground": {
                "ratio": summary.get("foreground_ratio"),
                "background_uniform": summary.get("background_uniform"),
            },
            "labels": [
                {"name": lb.name, "confidence": round(lb.confidence, 4)} for lb in self.labels
            ],
            "embedding": {"model": self.model_version, "dim": int(self.embedding.shape[0])},
            "feature_version": FEATURE_VERSION,
            "layout_version": LAYOUT_VERSION,
            "vector_dims": {k: int(v.shape[0]) for k, v in p.aspect_vectors().items()},
        }


def content_hash(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def prepare(data: bytes, source: str, limits: DecodeLimits = DecodeLimits()) -> PreparedImage:
    """Decode, describe and ready one image for the CNN; raises ImageDecodeError."""
    t0 = time.perf_counter()
    decoded = decode_image(data, source=source, limits=limits, max_side=WORKING_SIDE)
    t1 = time.perf_counter()
    features = extract_features(decoded.rgb)
    t2 = time.perf_counter()
    layout = layout_vector(decoded.rgb)
    model_input = prepare_image(decoded.rgb)
    t3 = time.perf_counter()
    return PreparedImage(
        source=source,
        content_hash=content_hash(data),
        format=decoded.format,
        width=decoded.width,
        height=decoded.height,
        byte_size=len(data),
        features=features,
        model_input=model_input,
        timings={"decode": t1 - t0, "features": t2 - t1, "preprocess": t3 - t2},
        layout=layout,
    )


class ImageAnalyzer:
    """Runs the CNN stage; holds the (thread-safe) onnxruntime session."""

    def __init__(self, embedder: Embedder, limits: DecodeLimits = DecodeLimits()) -> None:
        self.embedder = embedder
        self.limits = limits

    @property
    def model_version(self) -> str:
        return self.embedder.model_version

    def complete(self, prepared: Sequence[PreparedImage]) -> list[ImageAnalysis]:
        if not prepared:
            return []
        batch = np.stack([p.model_input for p in prepared])
        result = self.embedder.embed_prepared(batch)
        return [
            ImageAnalysis(p, result.vectors[i], result.labels[i], result.model_version)
            for i, p in enumerate(prepared)
        ]

    def analyze(self, data: bytes, source: str = "<upload>") -> ImageAnalysis:
        return self.complete([prepare(data, source, self.limits)])[0]
