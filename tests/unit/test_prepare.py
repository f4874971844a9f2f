"""prepare_image: aspect-preserving resize and padding with the photo's border colour."""

from __future__ import annotations

import numpy as np
import pytest

from vitrine.vision.model_input import INPUT_SIZE, prepare_image

BACKGROUND = (10, 200, 30)
OBJECT = (250, 0, 0)


def _scene(h: int, w: int, box: int) -> np.ndarray:
    """A plain background with a centred square object of side ``box``."""
    img = np.empty((h, w, 3), np.uint8)
    img[:] = BACKGROUND
    top, left = (h - box) // 2, (w - box) // 2
    img[top : top + box, left : left + box] = OBJECT
    return img


def _object_bbox(out: np.ndarray) -> tuple[int, int]:
    mask = (out[:, :, 0] > 200) & (out[:, :, 1] < 60)
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    return rows[-1] - rows[0] + 1, cols[-1] - cols[0] + 1


@pytest.mark.parametrize(
    ("h", "w"),
    [(60, 120), (120, 60), (80, 60), (1000, 500), (224, 224), (300, 451), (7, 3)],
)
def test_output_shape_and_dtype(h: int, w: int) -> None:
    out = prepare_image(_scene(h, w, max(1, min(h, w) // 2)))
    assert out.shape == (INPUT_SIZE, INPUT_SIZE, 3)
    assert out.dtype == np.uint8
    assert out.flags.c_contiguous


def test_landscape_keeps_aspect_and_pads_top_and_bottom() -> None:
    out = prepare_image(_scene(60, 120, 30))
    # scale 224/120: the photo becomes 112 x 224, centred vertically
    assert (out[:56] == BACKGROUND).all()
    assert (out[168:] == BACKGROUND).all()
    bh, bw = _object_bbox(out)
    assert abs(bh - bw) <= 2
    assert 52 <= bw <= 60


def test_portrait_keeps_aspect_and_pads_left_and_right() -> None:
    out = prepare_image(_scene(400, 100, 80))  # shrink
    assert (out[:, :84] == BACKGROUND).all()
    assert (out[:, 140:] == BACKGROUND).all()
    bh, bw = _object_bbox(out)
    assert abs(bh - bw) <= 2
    assert 42 <= bw <= 48


def test_pad_colour_is_median_of_border() -> None:
    img = np.full((50, 100, 3), 255, np.uint8)  # white border ...
    img[0, :10] = 0  # ... with a few dark pixels on it
    img[10:40, 20:80] = (0, 0, 255)  # and a blue product inside
    out = prepare_image(img)
    assert (out[0, 0] == (255, 255, 255)).all()
    assert (out[-1, -1] == (255, 255, 255)).all()


def test_pad_colour_per_channel() -> None:
    img = np.zeros((30, 90, 3), np.uint8)
    img[:] = (12, 34, 56)
    out = prepare_image(img)
    assert (out[0, 0] == (12, 34, 56)).all()
    assert (out[INPUT_SIZE // 2, INPUT_SIZE // 2] == (12, 34, 56)).all()


def test_tiny_1x1_input() -> None:
    out = prepare_image(np.array([[[1, 2, 3]]], np.uint8))
    assert out.shape == (INPUT_SIZE, INPUT_SIZE, 3)
    assert (out == (1, 2, 3)).all()


def test_thin_strip() -> None:
    out = prepare_image(np.full((1, 500, 3), 77, np.uint8))
    assert out.shape == (INPUT_SIZE, INPUT_SIZE, 3)
    assert (out == 77).all()


def test_custom_size() -> None:
    out = prepare_image(_scene(40, 80, 20), size=64)
    assert out.shape == (64, 64, 3)
    assert (out[:16] == BACKGROUND).all()


def test_square_input_of_right_size_is_unchanged() -> None:
    img = np.random.default_rng(0).integers(0, 256, (INPUT_SIZE, INPUT_SIZE, 3), dtype=np.uint8)
    out = prepare_image(img)
    assert np.array_equal(out, img)
    out[0, 0] = 0
    assert img is not out


def test_input_is_not_modified() -> None:
    img = _scene(60, 120, 30)
    before = img.copy()
    prepare_image(img)
    assert np.array_equal(img, before)


def test_greyscale_is_accepted() -> None:
    out = prepare_image(np.full((20, 40), 9, np.uint8))
    assert out.shape == (INPUT_SIZE, INPUT_SIZE, 3)
    assert (out == 9).all()


def test_rejects_bad_input() -> None:
    with pytest.raises(TypeError):
        prepare_image(np.zeros((10, 10, 3), np.float32))
    with pytest.raises(ValueError):
        prepare_image(np.zeros((10, 10, 4), np.uint8))
    with pytest.raises(ValueError):
        prepare_image(np.zeros((0, 10, 3), np.uint8))


def test_prepare_does_not_load_onnxruntime() -> None:
    import subprocess
    import sys

    code = (
        "import sys, numpy as np\n"
        "from vitrine.vision.model_input import prepare_image\n"
        "prepare_image(np.zeros((5, 9, 3), np.uint8))\n"
        "assert 'onnxruntime' not in sys.modules and 'torch' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
