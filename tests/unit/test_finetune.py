"""Fine-tuning the CNN's last blocks on tiny synthetic photos: it learns two classes, the
exported model loads in the Embedder and embeds differently from the base model, and
bad requests fail clearly."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from vitrine.catalog.blobs import LocalBlobStore
from vitrine.classify.dataset import FieldLabels
from vitrine.classify.features import FeatureBlocks
from vitrine.classify.finetune import (
    FineTuneConfig,
    export_finetuned,
    fine_tune,
    is_finetuned,
    list_finetuned,
    load_base_network,
)
from vitrine.classify.finetune.activations import compute_activations, torch_lower_runner
from vitrine.classify.trainer import TrainConfig, TrainingError, held_out_sides, train_heads
from vitrine.vision.embedding import Embedder

PER_CLASS = 8


def photo(kind: str, rng: np.random.Generator) -> np.ndarray:
    """A 60x80 'product photo': a red disc or a blue square on a light background."""
    img = np.full((80, 60, 3), 235, np.uint8)
    img += rng.integers(0, 15, img.shape, dtype=np.uint8)
    cx, cy, r = int(rng.integers(24, 36)), int(rng.integers(30, 50)), int(rng.integers(14, 20))
    if kind == "disc":
        cv2.circle(img, (cx, cy), r, (200, 30, 30), -1)
    else:
        cv2.rectangle(img, (cx - r, cy - r), (cx + r, cy + r), (30, 40, 190), -1)
    return img


def encode(rgb: np.ndarray) -> bytes:
    ok, data = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    assert ok
    return data.tobytes()


def stored_photos(
    root: Path, per_class: int
) -> tuple[LocalBlobStore, list[tuple[str, str]], dict[str, str], dict[str, np.ndarray]]:
    """Discs and squares in a blob store: (store, (id, key) photos with one missing,
    id -> shape, id -> pixels)."""
    rng = np.random.default_rng(0)
    blobs = LocalBlobStore(root)
    photos, values, images = [], {}, {}
    for k in range(2 * per_class):
        pid, kind = f"p{k:03d}", ("disc", "square")[k % 2]
        images[pid] = photo(kind, rng)
        blobs.put(f"img/{pid}.png", encode(images[pid]))
        photos.append((pid, f"img/{pid}.png"))
        values[pid] = kind
    photos.append(("broken", "img/missing.png"))  # not in the blob store
    return blobs, photos, values, images


@pytest.fixture(scope="module")
def catalog(tmp_path_factory: pytest.TempPathFactory) -> dict:
    blobs, photos, values, images = stored_photos(tmp_path_factory.mktemp("blobs"), PER_CLASS)
    net = load_base_network()
    config = FineTuneConfig(
        trainable_blocks=1, budget_seconds=20, max_epochs=12, patience=12, batch_size=16,
        min_support=3, lr=2e-3, head_lr=1e-2, warmup_steps=1, threads=2,
    )  # fmt: skip
    acts = compute_activations(blobs, photos, torch_lower_runner(net, 15, "cpu"), flip=True)
    labels = {"shape": FieldLabels("shape", values, set())}
    result = fine_tune(net, acts, labels, config)
    return {"acts": acts, "labels": labels, "result": result, "images": images}


def test_activations_cache_mirror_images_and_report_unreadable_photos(catalog: dict) -> None:
    acts = catalog["acts"]
    assert len(acts) == 2 * PER_CLASS and "broken" not in acts.ids
    assert acts.failed and acts.failed[0][0] == "broken"
    assert acts.data.dtype == np.float16 and acts.data.shape[1:] == (2, 192, 7, 7)
    assert not np.allclose(acts.data[0, 0], acts.data[0, 1])


def test_fine_tuning_learns_two_classes(catalog: dict) -> None:
    result, acts, labels = catalog["result"], catalog["acts"], catalog["labels"]
    predicted = result.predict(acts)["shape"]
    truth = np.array([labels["shape"].values[p] for p in acts.ids], dtype=object)
    assert (predicted == truth).mean() >= 0.9  # chance is 0.5
    assert result.history and result.metrics["train_rows"] < len(acts)  # rows were held out
    assert result.metrics["calibration_accuracy"]["shape"] == 1.0  # one row per class


def test_exported_model_loads_and_embeds_differently(
    catalog: dict, model_dir: Path, tmp_path: Path
) -> None:
    result, acts = catalog["result"], catalog["acts"]
    record = export_finetuned(result, tmp_path, {"products": len(acts)})
    version = record["version"]
    assert is_finetuned(version) and record["fields"] == {"shape": ["disc", "square"]}
    assert [r["version"] for r in list_finetuned(tmp_path)] == [version]
    tuned = Embedder(tmp_path, model=version, threads=2, top_labels=0)
    base = Embedder(model_dir, threads=2, top_labels=0)
    assert tuned.model_version == version != base.model_version
    sample = acts.ids[:4]
    vectors = tuned.embed([catalog["images"][p] for p in sample]).vectors
    reference = result.embed(acts)[acts.rows(sample)]
    assert np.allclose((vectors * reference).sum(axis=1), 1.0, atol=2e-3)
    base_vectors = base.embed([catalog["images"][p] for p in sample]).vectors
    assert (vectors * base_vectors).sum(axis=1).max() < 0.999


def test_unknown_or_int8_fine_tuned_model_is_refused(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no-such-model"):
        Embedder(tmp_path, model="no-such-model")
    with pytest.raises(ValueError, match="fp32"):
        Embedder(tmp_path, precision="int8", model="no-such-model")


def test_bad_requests_fail_clearly(catalog: dict) -> None:
    acts = catalog["acts"]
    one_class = {"shape": FieldLabels("shape", dict.fromkeys(acts.ids, "disc"), set())}
    with pytest.raises(TrainingError, match="fewer than 2 classes"):
        fine_tune(None, acts, one_class, FineTuneConfig(min_support=3))
    with pytest.raises(ValueError, match="trainable_blocks"):
        fine_tune(None, acts, catalog["labels"], FineTuneConfig(trainable_blocks=0))
    with pytest.raises(ValueError, match="budget"):
        fine_tune(None, acts, catalog["labels"], FineTuneConfig(budget_seconds=0))


def test_held_out_sides_are_the_head_trainers_split() -> None:
    rng = np.random.default_rng(1)
    ids = [f"q{i:03d}" for i in range(120)]
    values = {p: ("a", "b", "c")[i % 3] for i, p in enumerate(ids)}
    labels = {"f": FieldLabels("f", values, set())}
    features = FeatureBlocks(ids, {"embedding": rng.normal(size=(120, 8)).astype(np.float32)})
    config = TrainConfig(min_support=3)
    trained = train_heads(features, labels, config)
    sides = held_out_sides(labels, ids, config)["f"]
    assert sorted(p for p, s in sides.items() if s == "evaluation") == sorted(
        trained["f"].evaluation_ids
    )
