"""The automatic CNN precision: int8 on VNNI CPUs for new catalogs, and an existing
catalog keeps the CNN version its vectors were made by."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from vitrine.catalog.blobs import image_key
from vitrine.catalog.store import EMBEDDING_KIND, FeatureRecord, ImageRecord, ProductRecord
from vitrine.classify.finetune.export import base_version
from vitrine.config import load_settings
from vitrine.runtime import Runtime
from vitrine.vision import embedding
from vitrine.vision.cpu import cpu_flags, has_fast_int8
from vitrine.vision.embedding import Embedder, Int8ModelNotFoundError
from vitrine.vision.onnx_export import MODEL_NAME, weights_sha12
from vitrine.vision.quantize import int8_path


def test_cpu_flags_read_from_cpuinfo(tmp_path: Path) -> None:
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nflags\t\t: fpu sse avx2 avx512f avx512_vnni\n\n")
    flags = cpu_flags(info)
    assert {"avx2", "avx512f", "avx512_vnni"} <= flags
    assert has_fast_int8(flags)
    assert not has_fast_int8(frozenset({"avx2", "avx512f"}))
    assert has_fast_int8(frozenset({"avx2", "avx_vnni"}))
    assert cpu_flags(tmp_path / "missing") == frozenset()


def int8_version(calibration: str) -> str:
    return f"{MODEL_NAME}-int8-{weights_sha12()}-{calibration}"


def fake_int8(model_dir: Path, calibration: str) -> None:
    """An int8 model file: the choice reads names only, never the graph."""
    model_dir.mkdir(parents=True, exist_ok=True)
    int8_path(model_dir, calibration).write_bytes(b"")


@pytest.fixture()
def runtime(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Runtime]:
    monkeypatch.setattr(embedding, "has_fast_int8", lambda: True)
    settings = load_settings(env={}).with_overrides(home=tmp_path / "home")
    assert settings.embedding_precision == "auto"
    vitrine = Runtime(settings)
    yield vitrine
    vitrine.close()


def store_vectors(vitrine: Runtime, version: str) -> None:
    vec = np.ones(4, np.float32) / 2
    digest = "ab" * 32
    vitrine.store.save_products(
        [ProductRecord(id="p1")],
        [
            ImageRecord(
                product_id="p1",
                content_hash=digest,
                blob_key=image_key(digest, "JPEG"),
                format="JPEG",
                width=60,
                height=80,
                byte_size=100,
                features=[FeatureRecord(EMBEDDING_KIND, version, vec, {"labels": []})],
            )
        ],
    )


def test_new_catalog_on_vnni_gets_the_int8_model(runtime: Runtime) -> None:
    assert runtime.needs_auto_int8()  # no int8 model yet: the first import calibrates one
    assert runtime.auto_cnn_version() == base_version()
    fake_int8(runtime.settings.model_dir, "c0ffee000001")
    assert not runtime.needs_auto_int8()
    assert runtime.auto_cnn_version() == int8_version("c0ffee000001")
    assert runtime.cnn_version == int8_version("c0ffee000001")


def test_new_catalog_without_vnni_stays_fp32(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(embedding, "has_fast_int8", lambda: False)
    fake_int8(runtime.settings.model_dir, "c0ffee000001")
    assert runtime.auto_cnn_version() == base_version()


def test_fp32_catalog_keeps_fp32_when_int8_appears(runtime: Runtime) -> None:
    store_vectors(runtime, base_version())
    fake_int8(runtime.settings.model_dir, "c0ffee000001")
    assert not runtime.needs_auto_int8()
    assert runtime.auto_cnn_version() == base_version()
    assert runtime.cnn_version == base_version()


def test_int8_catalog_keeps_its_calibration(runtime: Runtime) -> None:
    fake_int8(runtime.settings.model_dir, "c0ffee000001")
    store_vectors(runtime, int8_version("c0ffee000001"))
    fake_int8(runtime.settings.model_dir, "c0ffee000002")  # newer: not this catalog's
    int8_path(runtime.settings.model_dir, "c0ffee000002").touch()
    assert runtime.auto_cnn_version() == int8_version("c0ffee000001")


def test_for_version_names_what_is_missing(tmp_path: Path) -> None:
    with pytest.raises(Int8ModelNotFoundError, match="c0ffee000003"):
        Embedder.for_version(tmp_path, int8_version("c0ffee000003"))
    with pytest.raises(ValueError, match="no CNN version"):
        Embedder.for_version(tmp_path, "resnet-50-fp32-000000000000")
