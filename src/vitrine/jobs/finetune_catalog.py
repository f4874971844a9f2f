"""``vitrine train --finetune``: a fine-tuned CNN as a new embedding version of the catalog.

1. :func:`fine_tune_catalog` fine-tunes the CNN (the whole network by default, or its
   last blocks) on the stored photos and labels (:mod:`vitrine.classify.finetune`) and
   exports it to the models directory as a new model version with its record.
2. :func:`reembed_catalog` stores an embedding of that version for every primary photo
   that lacks one (read from the blob store; resumable: a second run does only what is
   missing) and then builds that version's vector index file. Embeddings of the version in
   service are untouched, so a server keeps searching with them meanwhile.
3. The heads are then trained on the new embeddings by the usual trainer
   (:class:`~vitrine.classify.service.ClassificationService` with that version).

Switching the service to the new version is one more job
(:mod:`vitrine.jobs.cnn_jobs`), done live in the running server.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from vitrine.catalog.blobs import BlobNotFoundError
from vitrine.catalog.store import EMBEDDING_KIND, FeatureRecord
from vitrine.classify.dataset import read_field_labels
from vitrine.classify.finetune import (
    FineTuneConfig,
    WholeNetConfig,
    build_targets,
    catalog_activations,
    catalog_photos,
    export_finetuned,
    fine_tune,
    fine_tune_whole,
    load_base_network,
)
from vitrine.index.visual_search import VisualSearch
from vitrine.runtime import Runtime
from vitrine.vision.analyzer import WORKING_SIDE
from vitrine.vision.decode import ImageDecodeError, decode_image
from vitrine.vision.embedding import Embedder

log = logging.getLogger(__name__)

CHUNK = 256
Progress = Callable[[str, int, int], None]  # (stage, done, total)


def fine_tune_catalog(
    vitrine: Runtime,
    fields: Sequence[str],
    config: FineTuneConfig | WholeNetConfig,
    on_progress: Progress | None = None,
) -> dict[str, Any]:
    """Fine-tune on every labelled product's primary photo; returns the new model's record.

    A :class:`WholeNetConfig` trains the whole network, a :class:`FineTuneConfig` its
    last blocks."""
    labels = read_field_labels(vitrine.store, fields)
    for f, fl in labels.items():
        if not fl.values:
            raise ValueError(f"field {f!r}: no product has a value")
    net = load_base_network()
    cache = vitrine.settings.home / "cache" / "finetune"
    photo_progress = (lambda d, t: on_progress("photos", d, t)) if on_progress else None
    t0 = time.perf_counter()
    if isinstance(config, WholeNetConfig):
        ids = sorted({p for fl in labels.values() for p in fl.values})
        data = catalog_photos(
            vitrine.store, vitrine.blobs, ids, config.input_size, cache, photo_progress
        )
        prepare_seconds = round(time.perf_counter() - t0, 1)
        targets = build_targets(data.ids, labels, config)
        epochs = (
            (lambda e: on_progress("epochs", e["epoch"], config.max_epochs))
            if on_progress
            else None
        )
        result = fine_tune_whole(net, data, targets, config, on_epoch=epochs)
    else:
        data = catalog_activations(
            vitrine.store, vitrine.blobs, labels, config, cache, net=net, on_progress=photo_progress
        )
        prepare_seconds = round(time.perf_counter() - t0, 1)
        result = fine_tune(net, data, labels, config)
    return export_finetuned(
        result,
        vitrine.settings.model_dir,
        {
            "products": len(data),
            "unreadable_photos": len(data.failed),
            "activation_seconds": prepare_seconds,
        },
    )


@dataclass
class ReembedReport:
    """What re-embedding the catalog with a new CNN version did."""

    version: str
    embedded: int = 0
    product_ids: list[str] = field(default_factory=list)  # those embedded now
    failed: list[tuple[str, str]] = field(default_factory=list)  # (product id, reason)
    indexed: int = 0
    seconds: float = 0.0


def reembed_catalog(
    vitrine: Runtime,
    version: str,
    on_progress: Progress | None = None,
    embedder: Embedder | None = None,
) -> ReembedReport:
    """Store ``version`` embeddings of every primary photo lacking one, then build and save
    that version's index (beside the index in service, which is left as it is).
    ``embedder``: that version's CNN when the caller has it loaded already."""
    t0 = time.perf_counter()
    s = vitrine.settings
    embedder = embedder or vitrine.embedder_for(version)
    missing = vitrine.store.images_missing_feature(EMBEDDING_KIND, version)
    report = ReembedReport(version)
    for start in range(0, len(missing), CHUNK):
        images, image_ids = [], []
        for image_id, product_id, key in missing[start : start + CHUNK]:
            try:
                images.append(
                    decode_image(vitrine.blobs.get(key), source=key, max_side=WORKING_SIDE).rgb
                )
                image_ids.append(image_id)
                report.product_ids.append(product_id)
            except (BlobNotFoundError, ImageDecodeError, OSError) as exc:
                report.failed.append((product_id, str(exc)))
        if images:
            vectors = embedder.embed(images).vectors
            vitrine.store.add_features(
                [
                    (i, FeatureRecord(EMBEDDING_KIND, version, vector=v, data={"labels": []}))
                    for i, v in zip(image_ids, vectors, strict=True)
                ]
            )
            report.embedded += len(images)
        if on_progress:
            on_progress("re-embed", min(start + CHUNK, len(missing)), len(missing))
    if report.failed:
        log.warning("re-embedding: %d photos could not be read", len(report.failed))
    index = VisualSearch(vitrine.store, s, version)
    index.rebuild()
    report.indexed = len(index)
    report.seconds = round(time.perf_counter() - t0, 1)
    return report
