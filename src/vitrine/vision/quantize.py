"""Static int8 quantisation of the exported EfficientNet-Lite0 ONNX model.

:func:`quantize_int8` calibrates activation ranges on real product photos given by the
caller and writes a statically quantised model (``onnxruntime.quantization.quantize_static``,
per-channel int8 weights, uint8 activations) next to the fp32 export::

    model_dir / f"efficientnet-lite0-{sha12}-int8-{calib12}.onnx"

``sha12`` identifies the pretrained weights, ``calib12`` the calibration set *and* the
quantisation recipe below, so the same photos give the same (cached) file and a new set of
photos or a new recipe gives a new file. :class:`vitrine.vision.embedding.Embedder` with
``precision="int8"`` loads the newest such file for the current weights.

Dynamic quantisation is deliberately not offered: for this convolutional model it is both
slower and less accurate than static quantisation.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from vitrine.vision.onnx_export import INPUT_NAME, MODEL_NAME, export_onnx, weights_sha12

logger = logging.getLogger(__name__)

CALIBRATION_BATCH = 16

# The recipe. It is hashed into the calibration checksum, so changing it invalidates caches.
QUANT_FORMAT = "QDQ"
CALIBRATE_METHOD = "MinMax"
PER_CHANNEL = True
REDUCE_RANGE = False
WEIGHT_TYPE = "QInt8"
EXCLUDE_STEM = False
EXCLUDE_HEAD = False
RECIPE = (
    f"recipe=v1 format={QUANT_FORMAT} calib={CALIBRATE_METHOD} per_channel={PER_CHANNEL} "
    f"reduce_range={REDUCE_RANGE} weights={WEIGHT_TYPE} "
    f"exclude_stem={EXCLUDE_STEM} exclude_head={EXCLUDE_HEAD}"
)


class Int8ModelNotFoundError(FileNotFoundError):
    """No int8 model for the current weights exists in the model directory yet."""


def _int8_glob(model_dir: Path) -> list[Path]:
    return sorted(Path(model_dir).glob(f"{MODEL_NAME}-{weights_sha12()}-int8-*.onnx"))


def int8_path(model_dir: Path, calib12: str) -> Path:
    """File name of the int8 model for the current weights and a calibration checksum."""
    return Path(model_dir) / f"{MODEL_NAME}-{weights_sha12()}-int8-{calib12}.onnx"


def latest_int8_model(model_dir: Path) -> tuple[Path, str]:
    """The newest int8 model in ``model_dir`` for the current weights, and its calibration id.

    Raises:
        Int8ModelNotFoundError: with instructions, if there is none.
    """
    candidates = _int8_glob(model_dir)
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
    from vitrine.vision.embedding import INPUT_SIZE, prepare_image

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


def _nodes_to_exclude(model_path: Path, exclude_stem: bool, exclude_head: bool) -> list[str]:
    import onnx

    model = onnx.load(str(model_path), load_external_data=False)
    convs = [n for n in model.graph.node if n.op_type == "Conv"]
    names: list[str] = []
    if exclude_stem and convs:
        names.append(convs[0].name)
    if exclude_head:
        if convs:
            names.append(convs[-1].name)
        names += [n.name for n in model.graph.node if n.op_type in ("ReduceMean", "Gemm")]
    return names


def quantize_model(
    fp32_path: Path,
    out_path: Path,
    images: np.ndarray,
    *,
    quant_format: str = QUANT_FORMAT,
    calibrate_method: str = CALIBRATE_METHOD,
    per_channel: bool = PER_CHANNEL,
    reduce_range: bool = REDUCE_RANGE,
    weight_type: str = WEIGHT_TYPE,
    exclude_stem: bool = EXCLUDE_STEM,
    exclude_head: bool = EXCLUDE_HEAD,
    nodes_to_exclude: Sequence[str] = (),
    extra_options: dict[str, Any] | None = None,
    calibration_cache: Path | None = None,
) -> Path:
    """Quantise ``fp32_path`` into ``out_path`` (atomically) calibrating on prepared ``images``.

    The keyword arguments expose the recipe for experiments; :func:`quantize_int8` uses the
    module defaults.
    """
    from onnxruntime.quantization import (
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    excluded = [*_nodes_to_exclude(fp32_path, exclude_stem, exclude_head), *nodes_to_exclude]
    options: dict[str, Any] = {
        # One calibration batch at a time: bounded memory for any number of photos.
        "CalibStridedMinMax": 1,
    }
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
            per_channel=per_channel,
            reduce_range=reduce_range,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType[weight_type],
            calibrate_method=CalibrationMethod[calibrate_method],
            nodes_to_exclude=excluded or None,
            extra_options=options,
            calibration_cache_path=calibration_cache,
        )
        os.replace(tmp, out_path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
    return out_path


def quantize_int8(
    model_dir: Path,
    calibration_images: Iterable[np.ndarray],
    max_images: int = 256,
) -> Path:
    """Create (or reuse) the static int8 model calibrated on the given product photos.

    Args:
        model_dir: the model directory; the fp32 model is exported there first if needed.
        calibration_images: raw RGB uint8 photos of any size, ideally a few hundred typical
            catalog photos; each goes through ``prepare_image``. Only the first
            ``max_images`` are used (and read from the iterable).
        max_images: upper bound on the number of calibration photos.

    Returns:
        Path of ``efficientnet-lite0-{sha12}-int8-{calib12}.onnx`` in ``model_dir``. An existing
        file for the same weights, photos and recipe is reused; otherwise it takes about
        ten seconds per 100 photos.
    """
    model_dir = Path(model_dir)
    images = _collect_images(calibration_images, max_images)
    calib12 = calibration_checksum(images)[:12]
    target = int8_path(model_dir, calib12)
    if target.exists():
        # Make it the "newest" int8 model again, since the caller just asked for it.
        os.utime(target)
        return target
    fp32 = export_onnx(model_dir)
    logger.info("quantizing %s on %d photos -> %s", fp32.name, len(images), target.name)
    return quantize_model(fp32, target, images)
