"""A fine-tuned backbone as a new embedding model version, exported to ONNX and recorded.

The version is the base version plus a hash of the trained weights
(``efficientnet-lite0-fp32-<weights sha12>-ft<sha12>``). The model lies in the models
directory as ``<version>.onnx`` with the same inputs and outputs as the base model (so
:class:`vitrine.vision.embedding.Embedder` loads it with ``model=<version>``), next to
``<version>.json``: which fields it was tuned for, on how many products, for how long,
and its held-out figures. The ImageNet ``logits`` output keeps the base classifier; on
fine-tuned features its labels are less meaningful than the base model's.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path
from typing import Any

from vitrine.classify.finetune.training import FineTuneResult
from vitrine.classify.finetune.whole_training import WholeNetResult
from vitrine.vision.onnx_export import MODEL_NAME, weights_sha12, write_onnx

FINETUNED_MARK = "-ft"


def base_version() -> str:
    return f"{MODEL_NAME}-fp32-{weights_sha12()}"


def weights_digest(result: FineTuneResult | WholeNetResult) -> str:
    """A hash of the weights the embedding depends on (not the heads)."""
    digest = hashlib.sha256()
    for name, tensor in sorted(result.model.embedding_state().items()):
        digest.update(name.encode())
        digest.update(tensor.cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def is_finetuned(version: str) -> bool:
    return version.startswith(f"{MODEL_NAME}-fp32-") and FINETUNED_MARK in version


def record_path(model_dir: Path, version: str) -> Path:
    return Path(model_dir) / f"{version}.json"


def export_finetuned(
    result: FineTuneResult | WholeNetResult, model_dir: Path, extra: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Write ``<version>.onnx`` and ``<version>.json`` into ``model_dir``; returns the record."""
    model_dir = Path(model_dir)
    version = f"{base_version()}{FINETUNED_MARK}{weights_digest(result)[:12]}"
    result.model.to("cpu")
    write_onnx(result.model.serving_module(), model_dir / f"{version}.onnx")
    result.model.to(result.device)
    whole = isinstance(result, WholeNetResult)
    record = {
        "version": version,
        "base_version": base_version(),
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "fields": {t.field: t.classes for t in result.targets},
        "method": "whole network" if whole else "last blocks",
        "trainable_blocks": 16 if whole else 16 - result.cut,
        "input_size": result.model.input_size if whole else 224,
        "device": result.device,
        "train_seconds": result.seconds,
        "stopped": result.stopped,
        "metrics": result.metrics,
        "history": result.history,
        "config": result.config,
        **(extra or {}),
    }
    path = record_path(model_dir, version)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(record, indent=2))
    os.replace(tmp, path)
    return record


def read_record(model_dir: Path, version: str) -> dict[str, Any]:
    path = record_path(model_dir, version)
    if not path.exists():
        raise FileNotFoundError(f"no fine-tuned model {version!r} in {model_dir}")
    return json.loads(path.read_text())


def list_finetuned(model_dir: Path) -> list[dict[str, Any]]:
    """Records of the fine-tuned models in ``model_dir``, newest first."""
    records = []
    for path in Path(model_dir).glob(f"{MODEL_NAME}-fp32-*{FINETUNED_MARK}*.json"):
        if (path.with_suffix(".onnx")).exists():
            records.append(json.loads(path.read_text()))
    return sorted(records, key=lambda r: r.get("created_at", ""), reverse=True)
