"""The localiser's parts on small made-up images: letterboxing and its way back, candidate
boxes, IoU and non-maximum suppression, composed scenes that know their boxes, the box
scorer fitted on feature maps where the product is obvious, and its save/load."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from vitrine.index.product_finder import ProductFinder, crop, localizer_dir
from vitrine.vision.feature_map import CELLS, SIDE, STRIDE, letterbox
from vitrine.vision.localize import (
    Localizer,
    apply_offsets,
    candidate_boxes,
    edge_offsets,
    iou,
    non_maximum_suppression,
)
from vitrine.vision.scenes import (
    TEST_PHOTOS,
    TRAIN_PHOTOS,
    background,
    clutter,
    compose,
    cut_out,
    random_scene,
)


def _product_photo(colour: tuple[int, int, int], w: int = 60, h: int = 80) -> np.ndarray:
    """A studio photo: a coloured shape on white."""
    image = np.full((h, w, 3), 255, np.uint8)
    image[h // 6 : h - h // 6, w // 5 : w - w // 5] = colour
    return image


def test_letterbox_places_the_photo_and_maps_boxes_back() -> None:
    photo = np.zeros((300, 600, 3), np.uint8)
    photo[:, :] = (10, 200, 30)
    model_input, placement = letterbox(photo)
    assert model_input.shape == (SIDE, SIDE, 3)
    assert placement.scale == pytest.approx(SIDE / 600)
    assert placement.left == 0 and placement.top == (SIDE - 192) // 2
    back = placement.to_photo(np.array([0, placement.top, SIDE, placement.top + 192]))
    assert back == pytest.approx([0, 0, 600, 300], abs=1)
    assert placement.to_photo(np.array([-50, -50, 900, 900])).tolist() == [0, 0, 600, 300]


def test_candidate_boxes_iou_and_suppression() -> None:
    boxes = candidate_boxes()
    assert boxes.min() >= 0 and boxes.max() <= CELLS
    assert ((boxes[:, 2] - boxes[:, 0]) >= 2).all() and ((boxes[:, 3] - boxes[:, 1]) >= 2).all()
    a = np.array([[0, 0, 10, 10]])
    assert iou(a, np.array([[0, 0, 10, 10], [5, 0, 15, 10], [20, 20, 30, 30]])).tolist() == [
        [1.0, pytest.approx(1 / 3), 0.0]
    ]
    many = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [20, 20, 30, 30]])
    kept = non_maximum_suppression(many, np.array([0.9, 0.8, 0.7]), overlap=0.5, limit=5)
    assert kept == [0, 2]
    assert non_maximum_suppression(many, np.array([0.1, 0.8, 0.7]), 0.5, 1) == [1]
    # A box inside a better one (IoU 0.25 only) is the same product, not another.
    nested = np.array([[0, 0, 20, 20], [2, 2, 12, 12], [15, 0, 30, 20]])
    assert non_maximum_suppression(nested, np.array([0.9, 0.8, 0.7]), 0.5, 5) == [0, 2]


def test_edge_offsets_move_a_box_onto_its_target_and_never_inside_out() -> None:
    boxes = np.array([[0.0, 0.0, 64.0, 96.0], [32.0, 32.0, 96.0, 64.0]])
    targets = np.array([[8.0, -4.0, 60.0, 100.0], [40.0, 30.0, 100.0, 70.0]])
    assert apply_offsets(boxes, edge_offsets(boxes, targets)) == pytest.approx(targets)
    flipped = apply_offsets(boxes[:1], np.array([[0.5, 0.0, -0.5, 0.0]]))[0]
    assert flipped[2] > flipped[0]


def test_cut_out_and_compose_know_where_the_products_are() -> None:
    item = cut_out(_product_photo((200, 20, 20)), "red")
    assert item is not None and item.product_id == "red"
    assert item.alpha.max() == pytest.approx(1.0) and item.rgb.shape[:2] == item.alpha.shape
    noise = np.random.default_rng(0).integers(0, 256, (200, 200, 3), dtype=np.uint8)
    assert cut_out(noise) is None  # no plain background to cut along
    assert clutter(np.random.default_rng(0), 200, 150).shape == (150, 200, 3)
    rng = np.random.default_rng(1)
    other = cut_out(_product_photo((20, 20, 200)), "blue")
    assert other is not None
    scene = compose([item, other], background("train", rng, 400, 320), rng, degrade=False)
    assert scene.image.shape == (320, 400, 3) and len(scene.boxes) == 2
    for (x0, y0, x1, y1), colour in zip(scene.boxes, ((200, 20, 20), (20, 20, 200)), strict=True):
        inside = scene.image[y0:y1, x0:x1].reshape(-1, 3).astype(int)
        share = (np.abs(inside - colour).sum(axis=1) < 30).mean()
        assert share > 0.3, share  # the box holds its product's pixels
    assert not set(TRAIN_PHOTOS) & set(TEST_PHOTOS)
    assert random_scene([item, other], "test", rng, count=1).product_ids[0] in {"red", "blue"}


def _made_up_map(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A feature map whose cells light up where the (one) product is."""
    feature_map = rng.normal(0, 0.3, (CELLS, CELLS, 32)).astype(np.float32)
    x0, y0 = rng.integers(0, CELLS - 5, 2)
    w, h = rng.integers(3, 6, 2)
    feature_map[y0 : y0 + h, x0 : x0 + w, :8] += 2.0
    return feature_map, np.array([[x0, y0, x0 + w, y0 + h]]) * STRIDE


def test_the_box_scorer_learns_where_the_product_is_and_round_trips(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    train = [_made_up_map(rng) for _ in range(60)]
    localizer = Localizer(min_score=0.3).fit(
        np.stack([m for m, _ in train]), [t for _, t in train], negatives=60, rounds=60
    )
    hits = 0
    for _ in range(20):
        feature_map, truth = _made_up_map(rng)
        found = localizer.predict(feature_map)
        hits += bool(found) and iou(truth, np.array([found[0].box]))[0, 0] >= 0.5
    assert hits >= 16, hits
    path = tmp_path / "localizer.npz"
    localizer.save(path)
    again = Localizer.load(path)
    feature_map, _ = _made_up_map(rng)
    assert np.allclose(again.score(feature_map), localizer.score(feature_map))
    assert again.info == localizer.info
    with pytest.raises(RuntimeError, match="not fitted"):
        Localizer().predict(feature_map)


def test_crop_widens_the_box_within_the_photo() -> None:
    image = np.arange(100 * 100 * 3, dtype=np.uint8).reshape(100, 100, 3)
    assert crop(image, (10, 20, 60, 70), margin=0.1).shape == (60, 60, 3)
    assert crop(image, (0, 0, 100, 100), margin=0.1).shape == (100, 100, 3)


def _write_record(folder: Path, version: str, when: str, model: bool = True) -> None:
    if model:
        (folder / f"{version}.npz").write_bytes(b"")
    (folder / f"{version}.json").write_text(json.dumps({"version": version, "trained_at": when}))


def test_the_finder_follows_the_newest_localiser_written(tmp_path: Path) -> None:
    finder = ProductFinder(tmp_path)
    assert finder.record() is None and not finder.available
    assert finder.find(np.zeros((64, 64, 3), np.uint8)) == []
    folder = localizer_dir(tmp_path)
    folder.mkdir()
    for version, when in (("localizer-a", "2026-01-01"), ("localizer-b", "2026-02-01")):
        _write_record(folder, version, when)
        assert finder.record()["version"] == version  # a new version is seen at once
    _write_record(folder, "localizer-c", "2027-01-01", model=False)
    assert finder.record()["version"] == "localizer-b"  # a record without its model: unused
