"""Fine-tuning the CNN on the catalog's own photos and labels.

Two methods. The whole network (the default; :mod:`.whole_training`):
:func:`catalog_photos` prepares every labelled photo once at the network's input size
(cached) and :func:`fine_tune_whole` trains every layer with one head per field and the
augmentations a product photo meets. The last blocks only (quick, small gains):
:func:`catalog_activations` runs the frozen lower part once per stored photo (cached) and
:func:`fine_tune` trains the top blocks. :func:`export_finetuned` writes either as a new
embedding model version.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from vitrine.catalog.blobs import BlobStore
from vitrine.catalog.store import CatalogStore
from vitrine.classify.dataset import FieldLabels
from vitrine.classify.finetune.activations import (
    Activations,
    compute_activations,
    onnx_lower_runner,
    torch_lower_runner,
)
from vitrine.classify.finetune.export import (
    base_version,
    export_finetuned,
    is_finetuned,
    list_finetuned,
    read_record,
)
from vitrine.classify.finetune.network import NUM_BLOCKS, check_trainable_blocks
from vitrine.classify.finetune.training import (
    FineTuneConfig,
    FineTuneResult,
    build_targets,
    fine_tune,
)
from vitrine.classify.finetune.whole_training import (
    WholeNetConfig,
    WholeNetResult,
    downscale_runner,
    fine_tune_whole,
)
from vitrine.vision.embedding import _default_threads as default_threads

__all__ = [
    "Activations",
    "FineTuneConfig",
    "FineTuneResult",
    "WholeNetConfig",
    "WholeNetResult",
    "base_version",
    "build_targets",
    "catalog_activations",
    "catalog_photos",
    "export_finetuned",
    "fine_tune",
    "fine_tune_whole",
    "is_finetuned",
    "list_finetuned",
    "load_base_network",
    "read_record",
]


def load_base_network() -> Any:
    from vitrine.vision.onnx_export import load_torch_model

    return load_torch_model()


def catalog_activations(
    store: CatalogStore,
    blobs: BlobStore,
    labels: dict[str, FieldLabels],
    config: FineTuneConfig,
    cache_dir: Path | None,
    *,
    product_ids: Sequence[str] | None = None,
    net: Any = None,
    on_progress: Callable[[int, int], None] | None = None,
) -> Activations:
    """Lower activations of the primary photo of every product labelled in some field
    (or of ``product_ids``), read through the blob store."""
    import torch

    if product_ids is None:
        product_ids = sorted({p for fl in labels.values() for p in fl.values})
    photos = store.primary_images(product_ids)
    cut = NUM_BLOCKS - check_trainable_blocks(config.trainable_blocks)
    net = net if net is not None else load_base_network()
    key_parts = [base_version(), f"cut={cut}"]
    with tempfile.TemporaryDirectory(prefix="vitrine-finetune-") as tmp:
        if torch.cuda.is_available():
            runner = torch_lower_runner(net, cut, "cuda")
        else:
            lower_dir = cache_dir if cache_dir is not None else Path(tmp)
            name = f"lower-{base_version()}-{cut}.onnx"
            threads = config.threads or default_threads()
            runner = onnx_lower_runner(net, cut, lower_dir / name, threads)
        return compute_activations(
            blobs,
            photos,
            runner,
            flip=config.flip,
            cache_dir=cache_dir,
            key_parts=key_parts,
            on_progress=on_progress,
        )


def catalog_photos(
    store: CatalogStore,
    blobs: BlobStore,
    product_ids: Sequence[str],
    input_size: int,
    cache_dir: Path | None,
    on_progress: Callable[[int, int], None] | None = None,
) -> Activations:
    """The primary photo of each product, prepared as served and averaged down to
    ``input_size`` (float16 NHWC, cached under ``cache_dir``)."""
    return compute_activations(
        blobs,
        store.primary_images(product_ids),
        downscale_runner(input_size),
        flip=False,
        cache_dir=cache_dir,
        key_parts=["photos", f"size={input_size}"],
        on_progress=on_progress,
    )
