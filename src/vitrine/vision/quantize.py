"""Static int8 quantisation of the exported EfficientNet-Lite0 ONNX model.

:func:`quantize_int8` calibrates activation ranges on real product photos given by the
caller and writes a statically quantised model (``onnxruntime.quantization.quantize_static``)
next to the fp32 export::

    model_dir / f"efficientnet-lite0-{sha12}-int8-{calib12}.onnx"

``sha12`` identifies the pretrained weights, ``calib12`` the calibration photos *and* the
recipe below, so the same photos give the same (cached) file, and new photos or a new
recipe give a new file. :class:`vitrine.vision.embedding.Embedder` with
``precision="int8"`` loads the newest such file for the current weights.

The recipe (measured on real catalog photos; see ``RECIPE``):

* QDQ format, MinMax calibration, uint8 activations, per-channel symmetric int8 weights.
  onnxruntime fuses the QDQ groups into ``QLinearConv`` at load time, so QDQ runs as fast
  as the QOperator format while staying plain, portable ONNX.
* The stem convolution and the first two MBConv blocks stay in float. Quantising them costs
  most of the accuracy (their activations are small-ranged and 112x112/56x56 wide) and
  saves almost no time: a float prefix followed by one float->int8 hop ran as fast as the
  all-int8 graph. Global pooling and the classifier (``ReduceMean``, ``Gemm``) stay float
  too, so the embedding itself is never rounded to 8 bits.
* The weights of the 1x1 (pointwise) convolutions use 7 bits (``reduce_range``). On x86
  CPUs without VNNI (AVX2, e.g. AMD Zen 2/3) onnxruntime's fast u8 x s8 kernels add pairs
  of products in saturating 16-bit lanes; full 8-bit weights overflow there and wreck the
  embeddings (mean cosine to fp32 fell to 0.80). 7-bit weights cannot overflow. Depthwise
  convolutions use a kernel without that problem and keep 8 bits. (The alternative,
  ``session.x64quantprecision=1``, is exact with 8-bit weights but slower than this.)

Dynamic quantisation is deliberately not offered: for this convolutional model it is both
slower and less accurate than static quantisation.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from vitrine.vision.model_input import INPUT_SIZE, prepare_image
from vitrine.vision.onnx_export import INPUT_NAME, MODEL_NAME, export_onnx, weights_sha12

logger = logging.getLogger(__name__)

CALIBRATION_BATCH = 16

# The recipe. It is hashed into the calibration checksum, so changing it invalidates caches.
QUANT_FORMAT = "QDQ"
CALIBRATE_METHOD = "MinMax"
#: Nodes kept in float, matched against node names of the exported graph.
FLOAT_NODES = r"^/_conv_stem/|^/_blocks\.[01]/|^/ReduceMean|^/_fc/"
#: 1x1 convolutions get 7-bit weights (no u8s8 overflow on non-VNNI x86).
REDUCE_RANGE_POINTWISE = True
RECIPE = (
    f"recipe=v2 format={QUANT_FORMAT} calib={CALIBRATE_METHOD} act=QUInt8 weights=QInt8 "
    f"per_channel=1 float={FLOAT_NODES} reduce_range_pointwise={REDUCE_RANGE_POINTWISE}"
)

#: onnxruntime optimiser to disable when running these models: it would re-quantise the
#: float convolutions that sit between Q/DQ nodes with per-tensor weights, undoing
#: ``FLOAT_NODES`` and costing accuracy.
DISABLED_OPTIMIZERS = ("WeightBiasQuantization",)


INT8_MARK = "-int8-"  # in a fine-tuned model's version: its static int8 twin


def is_int8_version(version: str) -> bool:
    return INT8_MARK in version


class Int8ModelNotFoundError(FileNotFoundError):
    """No int8 model for the current weights exists in the model directory yet."""


def int8_path(model_dir: Path, calib12: str) -> Path:
    """File name of the int8 model for the current weights and a calibration checksum."""
    return Path(model_dir) / f"{MODEL_NAME}-{weights_sha12()}-int8-{calib12}.onnx"


def latest_int8_model(model_dir: Path) -> tuple[Path, str]:
    """The newest int8 model in ``model_dir`` for the current weights, and its calibration id.

    Raises:
        Int8ModelNotFoundError: with instructions, if there is none.
    """
    candidates = list(Path(model_dir).glob(f"{MODEL_NAME}-{weights_sha12()}-int8-*.onnx"))
    if not candidates:
        raise Int8ModelNotFoundError(
            f"no int8 model for {MODEL_NAME} (weights {weights_sha12()}) in {model_dir}. "
            "Create one from a folder of real product photos with "
            "`vitrine model quantize --images DIR` "
            "(or vitrine.vision.quantize.quantize_int8), or use precision='fp32'."
        )
    newest = max(candidates, key=lambda p: (p.stat().st_mtime_ns, p.name))
    calib12 = newest.stem.rsplit("-int8-", 1)[1]
    return newest, calib12


class _BatchReader:
    """Feeds prepared uint8 batches to the calibrator (supports ORT's strided collection)."""

    def __init__(self, images: np.ndarray, batch_size: int = CALIBRATION_BATCH) -> None:
        self._batches = [images[i : i + batch_size] for i in range(0, len(images), batch_size)]
        self._start = 0
        self._end = len(self._batches)
        self._pos = 0

    def __len__(self) -> int:
        return len(self._batches)

    def set_range(self, start_index: int, end_index: int) -> None:
        self._start, self._end = start_index, min(end_index, len(self._batches))
        self._pos = self._start

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self._pos >= self._end:
            return None
        batch = self._batches[self._pos]
        self._pos += 1
        return {INPUT_NAME: np.ascontiguousarray(batch)}

    def rewind(self) -> None:
        self._pos = self._start


def _collect_images(calibration_images: Iterable[np.ndarray], max_images: int) -> np.ndarray:
    prepared: list[np.ndarray] = []
    for img in calibration_images:
        if len(prepared) >= max_images:
            break
        prepared.append(prepare_image(img, INPUT_SIZE))
    if not prepared:
        raise ValueError("quantize_int8 needs at least one calibration image")
    return np.stack(prepared)


def calibration_checksum(images: np.ndarray, recipe: str = RECIPE) -> str:
    """SHA-256 (hex) of the quantisation recipe and the prepared calibration images."""
    digest = hashlib.sha256(recipe.encode())
    digest.update(str(images.shape).encode())
    digest.update(np.ascontiguousarray(images).tobytes())
    return digest.hexdigest()


def _conv_attrs(node: Any) -> dict[str, Any]:
    import onnx

    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def _plan(
    model_path: Path, float_nodes: str, reduce_range_pointwise: bool
) -> tuple[list[str], dict[str, list[dict[str, Any]]]]:
    """Nodes to keep in float, and weight overrides (7-bit) for the pointwise convolutions."""
    import onnx

    graph = onnx.load(str(model_path), load_external_data=False).graph
    pattern = re.compile(float_nodes) if float_nodes else None
    excluded = [n.name for n in graph.node if pattern and pattern.search(n.name)]
    if pattern and not excluded:
        raise RuntimeError(f"no node of {model_path.name} matches {float_nodes!r}")
    # An activation (Clip/Relu) right after a float convolution stays float as well.
    float_outputs = {o for n in graph.node if n.name in excluded for o in n.output}
    excluded += [
        n.name
        for n in graph.node
        if n.op_type in ("Clip", "Relu") and n.input[0] in float_outputs and n.name not in excluded
    ]
    overrides: dict[str, list[dict[str, Any]]] = {}
    if reduce_range_pointwise:
        for node in graph.node:
            if node.op_type != "Conv" or node.name in excluded:
                continue
            attrs = _conv_attrs(node)
            if list(attrs.get("kernel_shape", [])) == [1, 1] and attrs.get("group", 1) == 1:
                overrides[node.input[1]] = [{"reduce_range": True, "axis": 0}]
    return excluded, overrides


def quantize_model(
    fp32_path: Path,
    out_path: Path,
    images: np.ndarray,
    *,
    quant_format: str = QUANT_FORMAT,
    calibrate_method: str = CALIBRATE_METHOD,
    float_nodes: str = FLOAT_NODES,
    reduce_range_pointwise: bool = REDUCE_RANGE_POINTWISE,
    nodes_to_exclude: Sequence[str] = (),
    extra_options: dict[str, Any] | None = None,
) -> Path:
    """Quantise ``fp32_path`` into ``out_path`` (atomically), calibrating on prepared ``images``.

    The keyword arguments expose the recipe for experiments; :func:`quantize_int8` uses the
    module defaults.
    """
    from onnxruntime.quantization import (
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    excluded, overrides = _plan(Path(fp32_path), float_nodes, reduce_range_pointwise)
    excluded += list(nodes_to_exclude)
    options: dict[str, Any] = {
        # One calibration batch at a time: bounded memory for any number of photos.
        "CalibStridedMinMax": 1,
    }
    if overrides:
        options["TensorQuantOverrides"] = overrides
    options.update(extra_options or {})
    out_path = Path(out_path)
    fd, tmp_name = tempfile.mkstemp(
        prefix=f".{out_path.stem}-", suffix=".tmp.onnx", dir=out_path.parent
    )
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        quantize_static(
            model_input=str(fp32_path),
            model_output=str(tmp),
            calibration_data_reader=_BatchReader(images),  # type: ignore[arg-type]
            quant_format=QuantFormat[quant_format],
            per_channel=True,
            reduce_range=False,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod[calibrate_method],
            nodes_to_exclude=excluded or None,
            extra_options=options,
        )
        tmp.chmod(0o644)  # mkstemp creates 0600; the model is not a secret
        os.replace(tmp, out_path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
    return out_path


def quantize_finetuned(
    model_dir: Path,
    version: str,
    calibration_images: Iterable[np.ndarray],
    max_images: int = 256,
) -> tuple[Path, str]:
    """The int8 twin of the fine-tuned model ``version`` (same recipe as
    :func:`quantize_int8`), calibrated on the given photos: ``<version>-int8-<calib12>``,
    a model version of its own (its embeddings, index and heads are its own too). Returns
    its path and version; an existing file for the same photos and recipe is reused."""
    model_dir = Path(model_dir)
    fp32 = model_dir / f"{version}.onnx"
    if not fp32.is_file() or INT8_MARK in version:
        raise FileNotFoundError(f"no fine-tuned fp32 model {version!r} in {model_dir}")
    images = _collect_images(calibration_images, max_images)
    int8_version = f"{version}{INT8_MARK}{calibration_checksum(images)[:12]}"
    target = model_dir / f"{int8_version}.onnx"
    if not target.exists():
        logger.info("quantizing %s on %d photos -> %s", fp32.name, len(images), target.name)
        quantize_model(fp32, target, images)
    record = fp32.with_suffix(".json")
    if record.exists():  # the twin lists with the fine-tuned versions, its origin named
        import json

        data = json.loads(record.read_text()) | {"version": int8_version, "int8_of": version}
        target.with_suffix(".json").write_text(json.dumps(data, indent=2))
    return target, int8_version


def quantize_int8(
    model_dir: Path,
    calibration_images: Iterable[np.ndarray],
    max_images: int = 256,
) -> Path:
    """Create (or reuse) the static int8 model calibrated on the given product photos.

    Args:
        model_dir: the model directory; the fp32 model is exported there first if needed.
        calibration_images: raw RGB uint8 photos of any size, ideally a few hundred typical
            catalog photos (each goes through ``prepare_image``). Only the first
            ``max_images`` are read from the iterable.
        max_images: upper bound on the number of calibration photos.

    Returns:
        Path of ``efficientnet-lite0-{sha12}-int8-{calib12}.onnx`` in ``model_dir``, which
        becomes the newest int8 model there. An existing file for the same weights, photos
        and recipe is reused; otherwise quantisation takes roughly 10-20 s for 256 photos.
    """
    model_dir = Path(model_dir)
    images = _collect_images(calibration_images, max_images)
    calib12 = calibration_checksum(images)[:12]
    target = int8_path(model_dir, calib12)
    if target.exists():
        os.utime(target)  # the caller just asked for it: make it the newest again
        return target
    fp32 = export_onnx(model_dir)
    logger.info("quantizing %s on %d photos -> %s", fp32.name, len(images), target.name)
    return quantize_model(fp32, target, images)
