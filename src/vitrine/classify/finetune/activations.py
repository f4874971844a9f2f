"""The frozen lower part of the CNN, run once per catalog photo and cached.

Fine-tuning trains only the last blocks, so the activations entering them never change:
they are computed once per photo (and once for its mirror image, the augmentation that
survives caching) and kept as float16, in memory or in a ``.npy`` memory map under a
cache directory that later runs reuse. The lower part runs on onnxruntime (exported once
next to the cache), which is several times faster than eager torch on a CPU; with a CUDA
GPU it runs in torch on the GPU.

Photos are read from the blob store and prepared exactly as the served model prepares
them (:func:`vitrine.vision.model_input.prepare_image`, 224x224), so the fine-tuned model
is trained on what it will see in service.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from vitrine.catalog.blobs import BlobNotFoundError, BlobStore
from vitrine.vision.analyzer import WORKING_SIDE
from vitrine.vision.decode import ImageDecodeError, decode_image
from vitrine.vision.embedding import MAX_BATCH
from vitrine.vision.model_input import prepare_image

log = logging.getLogger(__name__)

LowerRunner = Callable[[np.ndarray], np.ndarray]  # uint8 N x 224 x 224 x 3 -> float16 maps


@dataclass
class Activations:
    """Row-aligned lower-part activations: ``data[i, 0]`` of photo ``ids[i]``, ``data[i, 1]``
    of its mirror image (absent when flips were not cached)."""

    ids: list[str]
    data: np.ndarray  # (N, views, C, H, W) float16, possibly a read-only memory map
    failed: list[tuple[str, str]] = field(default_factory=list)  # (product id, reason)

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def views(self) -> int:
        return int(self.data.shape[1])

    def rows(self, ids: Sequence[str]) -> np.ndarray:
        """Row indices of ``ids`` (each must be present)."""
        position = {pid: i for i, pid in enumerate(self.ids)}
        return np.array([position[pid] for pid in ids], dtype=np.int64)


def onnx_lower_runner(net: Any, cut: int, model_path: Path, threads: int) -> LowerRunner:
    """Export the frozen lower part to ``model_path`` (once) and run it on onnxruntime."""
    import onnxruntime as ort

    from vitrine.classify.finetune.network import Lower
    from vitrine.vision.onnx_export import INPUT_NAME, write_onnx

    if not model_path.exists():
        write_onnx(Lower(net, cut).eval(), model_path, output_names=("features",))
    options = ort.SessionOptions()
    options.intra_op_num_threads = max(1, threads)
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session = ort.InferenceSession(str(model_path), options, providers=["CPUExecutionProvider"])

    def run(batch: np.ndarray) -> np.ndarray:
        return session.run(None, {INPUT_NAME: batch})[0].astype(np.float16)

    return run


def torch_lower_runner(net: Any, cut: int, device: str) -> LowerRunner:
    """The lower part in torch (used on a GPU)."""
    import torch

    from vitrine.classify.finetune.network import Lower

    lower = Lower(net, cut).eval().to(device)

    def run(batch: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            out = lower(torch.from_numpy(batch).to(device))
        return out.to(torch.float16).cpu().numpy()

    return run


def _prepared(blobs: BlobStore, key: str) -> np.ndarray:
    rgb = decode_image(blobs.get(key), source=key, max_side=WORKING_SIDE).rgb
    return prepare_image(rgb)


def cache_key(parts: Sequence[str], photos: Sequence[tuple[str, str]]) -> str:
    digest = hashlib.sha256("\n".join(parts).encode())
    for pid, key in photos:
        digest.update(f"\n{pid}\t{key}".encode())
    return digest.hexdigest()[:16]


def compute_activations(
    blobs: BlobStore,
    photos: Sequence[tuple[str, str]],
    runner: LowerRunner,
    *,
    flip: bool = True,
    cache_dir: Path | None = None,
    key_parts: Sequence[str] = (),
    on_progress: Callable[[int, int], None] | None = None,
) -> Activations:
    """Activations of the (product id, blob key) photos; a photo that cannot be read is
    reported in ``failed`` and left out. With ``cache_dir`` the result is stored there
    (keyed by ``key_parts`` and the photos) and reused by the next call."""
    views = 2 if flip else 1
    stem = cache_key([*key_parts, f"views={views}"], photos)
    if cache_dir is not None:
        cached = _load_cached(cache_dir, stem)
        if cached is not None:
            log.info("lower activations: reusing %s (%d photos)", stem, len(cached))
            return cached
    data: np.ndarray | None = None
    ids: list[str] = []
    failed: list[tuple[str, str]] = []
    tmp_path: Path | None = None
    for start in range(0, len(photos), MAX_BATCH):
        chunk_ids: list[str] = []
        images: list[np.ndarray] = []
        for pid, key in photos[start : start + MAX_BATCH]:
            try:
                images.append(_prepared(blobs, key))
                chunk_ids.append(pid)
            except (BlobNotFoundError, ImageDecodeError, OSError) as exc:
                failed.append((pid, str(exc)))
        if images:
            batch = np.stack(images)
            if flip:
                batch = np.concatenate([batch, batch[:, :, ::-1]])
            maps = runner(np.ascontiguousarray(batch))
            if data is None:
                data, tmp_path = _allocate(len(photos), views, maps.shape[1:], cache_dir)
            n = len(chunk_ids)
            rows = slice(len(ids), len(ids) + n)
            data[rows, 0] = maps[:n]
            if flip:
                data[rows, 1] = maps[n:]
            ids.extend(chunk_ids)
        if on_progress:
            on_progress(min(start + MAX_BATCH, len(photos)), len(photos))
    if data is None:
        return Activations([], np.zeros((0, views, 0, 0, 0), np.float16), failed)
    if failed:
        log.warning("fine-tuning: %d photos could not be read", len(failed))
    if cache_dir is None or tmp_path is None:
        return Activations(ids, data[: len(ids)], failed)
    return _finish_cache(cache_dir, stem, data, tmp_path, ids, failed)


def _allocate(
    n: int, views: int, shape: tuple[int, ...], cache_dir: Path | None
) -> tuple[np.ndarray, Path | None]:
    full = (n, views, *shape)
    if cache_dir is None:
        return np.zeros(full, np.float16), None
    cache_dir.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=".activations-", suffix=".npy", dir=cache_dir)
    os.close(fd)
    return np.lib.format.open_memmap(name, mode="w+", dtype=np.float16, shape=full), Path(name)


def _finish_cache(
    cache_dir: Path,
    stem: str,
    data: np.ndarray,
    tmp_path: Path,
    ids: list[str],
    failed: list[tuple[str, str]],
) -> Activations:
    assert isinstance(data, np.memmap)
    data.flush()
    del data
    meta = {"ids": ids, "failed": failed}
    (cache_dir / f"{stem}.json").write_text(json.dumps(meta))
    os.replace(tmp_path, cache_dir / f"{stem}.npy")
    loaded = _load_cached(cache_dir, stem)
    assert loaded is not None
    return loaded


def _load_cached(cache_dir: Path, stem: str) -> Activations | None:
    npy, meta_path = cache_dir / f"{stem}.npy", cache_dir / f"{stem}.json"
    if not (npy.exists() and meta_path.exists()):
        return None
    meta = json.loads(meta_path.read_text())
    data = np.load(npy, mmap_mode="r")
    ids = list(meta["ids"])
    return Activations(ids, data[: len(ids)], [tuple(f) for f in meta["failed"]])
