"""Fine-tuning the CNN's last blocks on the catalog's own photos and labels.

:func:`catalog_activations` runs the frozen lower part once per stored photo (cached),
:func:`fine_tune` trains the top blocks with one head per field, and
:func:`export_finetuned` writes the result as a new embedding model version.
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
from vitrine.classify.finetune.training import FineTuneConfig, FineTuneResult, fine_tune
from vitrine.vision.embedding import _default_threads as default_threads

__all__ = [
    "Activations",
    "FineTuneConfig",
    "FineTuneResult",
    "base_version",
    "catalog_activations",
    "export_finetuned",
    "fine_tune",
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
