"""Fine-tuning the whole network on tiny synthetic photos: it learns a shape and a colour
field at once, the colour field's loss skips colour-jittered rows, the region-colour
attention learns, the exported model embeds as the trained network does (its own 2x
downscaling inside), and bad settings fail clearly."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from test_finetune import stored_photos

from vitrine.classify.dataset import FieldLabels
from vitrine.classify.finetune import (
    WholeNetConfig,
    build_targets,
    export_finetuned,
    fine_tune_whole,
    list_finetuned,
    load_base_network,
)
from vitrine.classify.finetune.activations import compute_activations
from vitrine.classify.finetune.augment import augment_batch
from vitrine.classify.finetune.whole import (
    RegionColour,
    area_matrix,
    check_input_size,
    downscale,
)
from vitrine.classify.finetune.whole_training import (
    downscale_runner,
    is_colour_field,
    resolve_device,
    resolve_precision,
)
from vitrine.classify.trainer import TrainingError
from vitrine.vision.embedding import Embedder
from vitrine.vision.quantize import quantize_finetuned

PER_CLASS = 10


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict:
    blobs, photos, shapes, images = stored_photos(tmp_path_factory.mktemp("blobs"), PER_CLASS)
    colours = {pid: "Red" if kind == "disc" else "Blue" for pid, kind in shapes.items()}
    data = compute_activations(blobs, photos, downscale_runner(112), flip=False)
    labels = {
        "shape": FieldLabels("shape", shapes, set()),
        "baseColour": FieldLabels("baseColour", colours, set()),
    }
    config = WholeNetConfig(
        input_size=112, max_epochs=8, patience=8, batch_size=8, lr=1e-3,
        min_support=3, threads=2, device="cpu",
    )  # fmt: skip
    targets = build_targets(data.ids, labels, config)
    torch.manual_seed(0)
    result = fine_tune_whole(load_base_network(), data, targets, config)
    return {"data": data, "result": result, "images": images, "shapes": shapes}


def test_photos_are_cached_at_the_input_size_and_unreadable_ones_reported(trained: dict) -> None:
    data = trained["data"]
    assert data.data.shape[1:] == (1, 112, 112, 3) and data.data.dtype == np.float16
    assert "broken" not in data.ids and data.failed[0][0] == "broken"
    assert float(data.data[0].min()) >= -1.0 and float(data.data[0].max()) <= 1.0


def test_whole_network_learns_shape_and_colour(trained: dict) -> None:
    result, data = trained["result"], trained["data"]
    probs = result.probabilities(data, tta=True)
    fields = [t.field for t in result.targets]
    shape = np.array(result.targets[fields.index("shape")].classes)[
        probs[fields.index("shape")].argmax(1)
    ]
    truth = np.array([trained["shapes"][p] for p in data.ids])
    assert (shape == truth).mean() >= 0.9  # chance is 0.5
    assert result.config["colour_fields"] == ["baseColour"]
    assert result.model.colour_fields == ["baseColour"]
    assert result.history[-1]["photos_per_second"] > 0
    assert all(np.isfinite(e["train_loss"]) and e["skipped_steps"] == 0 for e in result.history)
    assert result.metrics["precision"] == "fp32"  # 112 px: bf16 does not pay
    # The attention started at zero (the whole-photo histogram) and was trained.
    assert float(result.model.region.attention.weight.detach().abs().sum()) > 0


def test_export_embeds_as_the_trained_network(trained: dict, tmp_path: Path) -> None:
    result, data = trained["result"], trained["data"]
    record = export_finetuned(result, tmp_path, {"products": len(data)})
    assert record["method"] == "whole network" and record["input_size"] == 112
    tuned = Embedder(tmp_path, model=record["version"], threads=2, top_labels=0)
    sample = data.ids[:3]
    served = tuned.embed([trained["images"][p] for p in sample]).vectors
    model = result.model.eval()
    with torch.inference_mode():
        x = torch.from_numpy(np.asarray(data.data[:3, 0], np.float32)).permute(0, 3, 1, 2)
        reference = torch.nn.functional.normalize(model(x)[0], dim=1).numpy()
    assert np.allclose((served * reference).sum(axis=1), 1.0, atol=2e-3)


def test_colour_jitter_is_masked_for_the_colour_loss_only() -> None:
    rng = np.random.default_rng(3)
    x = torch.rand(8, 3, 32, 32) * 2 - 1
    out, jittered = augment_batch(x, rng, jitter_share=0.5)
    assert out.shape == x.shape and jittered.tolist() == [False] * 4 + [True] * 4
    assert float(out.min()) >= -1.0 and float(out.max()) <= 1.0
    _, mask = augment_batch(x, rng, jitter_share=0.0)
    assert not mask.any()
    assert is_colour_field("baseColour") and is_colour_field("colour_group_name")
    assert not is_colour_field("articleType")


def test_region_colour_follows_the_attention() -> None:
    region = RegionColour(channels=4, grid=8)
    pixels = torch.full((1, 3, 16, 16), 1.0)  # white...
    pixels[..., :, 8:] = torch.tensor([1.0, -1.0, -1.0])[:, None, None]  # ...and red halves
    features = torch.zeros(1, 4, 2, 2)
    features[0, 0, :, 1] = 1.0  # channel 0 marks the right (red) half
    uniform = region(features, pixels)
    with torch.no_grad():
        region.attention.weight[0, 0] = 20.0
    focused = region(features, pixels)
    red = int(torch.cdist(torch.tensor([[1.0, -1.0, -1.0]]), region.prototypes).argmin())
    assert focused[0, red] > uniform[0, red]


def test_bad_settings_fail_clearly(trained: dict) -> None:
    for size in (40, 300):
        with pytest.raises(ValueError, match="input_size"):
            check_input_size(size)
    with pytest.raises(ValueError, match="device"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA"):
            resolve_device("cuda")
    assert resolve_precision("fp32", "cpu", 224) == "fp32"
    with pytest.raises(ValueError, match="precision"):
        resolve_precision("fp8", "cpu", 224)
    data, result = trained["data"], trained["result"]
    with pytest.raises(ValueError, match="cached at 112"):
        fine_tune_whole(None, data, result.targets, WholeNetConfig(input_size=128))
    empty = [
        type(t)(t.field, t.classes, np.full_like(t.train, -100), t.weight, t.calibration,
                t.evaluation)
        for t in result.targets
    ]  # fmt: skip
    with pytest.raises(TrainingError, match="no labelled product"):
        fine_tune_whole(None, data, empty, WholeNetConfig(input_size=112))


def test_int8_twin_of_a_fine_tuned_network(trained: dict, tmp_path: Path) -> None:
    record = export_finetuned(trained["result"], tmp_path, {"products": 20})
    version = record["version"]
    photos = list(trained["images"].values())
    path, int8_version = quantize_finetuned(tmp_path, version, photos)
    assert int8_version.startswith(f"{version}-int8-") and path.is_file()
    assert quantize_finetuned(tmp_path, version, photos)[1] == int8_version  # reused
    listed = {r["version"]: r for r in list_finetuned(tmp_path)}
    assert listed[int8_version]["int8_of"] == version
    fp32 = Embedder(tmp_path, model=version, threads=2, top_labels=0)
    int8 = Embedder(tmp_path, model=int8_version, threads=2, top_labels=0)
    assert int8.precision == "int8" and int8.model_version == int8_version
    a, b = fp32.embed(photos).vectors, int8.embed(photos).vectors
    assert float((a * b).sum(axis=1).min()) >= 0.97
    with pytest.raises(FileNotFoundError):
        quantize_finetuned(tmp_path, int8_version, photos)
    with pytest.raises(FileNotFoundError):
        quantize_finetuned(tmp_path, "no-such-version", photos)


def test_area_resize_is_average_pooling_generalised() -> None:
    x = torch.rand(2, 3, 224, 224)
    assert torch.allclose(downscale(x, 112), torch.nn.functional.avg_pool2d(x, 2))
    m = area_matrix(224, 128)
    assert torch.allclose(m.sum(dim=1), torch.ones(128))  # each output pixel: a mean
    flat = torch.full((1, 3, 224, 224), 0.25)
    assert torch.allclose(downscale(flat, 128, m), torch.full((1, 3, 128, 128), 0.25))
    runner = downscale_runner(128)
    photo = np.zeros((1, 224, 224, 3), np.uint8)
    photo[:, :, 112:] = 255  # a sharp vertical edge stays one soft column wide
    row = runner(photo)[0, 64, :, 0].astype(np.float32)
    assert np.sum((row > -0.99) & (row < 0.99)) <= 1
