"""Colour palette: vocabulary coverage, CIEDE2000 and naming of typical colours."""

from __future__ import annotations

import numpy as np
import pytest
from skimage.color import deltaE_ciede2000

from vitrine.vision.palette import (
    COLOR_FAMILY,
    COLOR_NAMES,
    MULTI,
    PALETTE_HEX,
    delta_e_2000,
    hex_to_rgb,
    lab_to_rgb,
    name_color,
    name_colors,
    rgb_to_hex,
    rgb_to_lab,
)

# The fashion catalogue's baseColour vocabulary.
BASE_COLOURS = [
    "Black", "White", "Blue", "Brown", "Grey", "Red", "Green", "Navy Blue", "Pink", "Purple",
    "Silver", "Yellow", "Beige", "Gold", "Maroon", "Orange", "Olive", "Cream", "Multi", "Steel",
    "Charcoal", "Peach", "Lavender", "Off White", "Skin", "Khaki", "Grey Melange", "Magenta",
    "Teal", "Tan", "Mustard", "Bronze", "Copper", "Turquoise Blue", "Rust", "Burgundy",
    "Metallic", "Coffee Brown", "Mauve", "Sea Green", "Nude", "Rose", "Mushroom Brown", "Taupe",
    "Lime Green", "Fluorescent Green",
]  # fmt: skip


def _lab(rgb: tuple[int, int, int]) -> np.ndarray:
    return rgb_to_lab(np.array(rgb, dtype=np.uint8))


def test_every_base_colour_is_in_the_palette() -> None:
    missing = [n for n in BASE_COLOURS if n not in COLOR_NAMES]
    assert missing == []
    assert all(n in COLOR_FAMILY for n in COLOR_NAMES)


def test_multi_is_not_a_point_colour() -> None:
    assert MULTI in COLOR_NAMES
    assert MULTI not in PALETTE_HEX
    rng = np.random.default_rng(0)
    labs = rgb_to_lab(rng.integers(0, 256, (500, 3), dtype=np.uint8))
    assert MULTI not in set(name_colors(labs))


def test_each_reference_colour_names_itself() -> None:
    for name, hex_value in PALETTE_HEX.items():
        assert name_color(_lab(hex_to_rgb(hex_value))) == name, name


def test_delta_e_2000_matches_scikit_image() -> None:
    rng = np.random.default_rng(1)
    a = rng.uniform([0, -100, -100], [100, 100, 100], (2000, 3))
    b = rng.uniform([0, -100, -100], [100, 100, 100], (2000, 3))
    b[:50] = a[:50]  # identical colours
    a[50:100, 1:] = 0.0  # neutral colours (zero chroma)
    b[100:150, 1:] = 0.0
    np.testing.assert_allclose(delta_e_2000(a, b), deltaE_ciede2000(a, b), atol=1e-9)
    # Published test pair from Sharma et al. (2005): delta E00 = 2.0425.
    assert delta_e_2000(np.array([50.0, 2.6772, -79.7751]), np.array([50.0, 0.0, -82.7485])) == (
        pytest.approx(2.0425, abs=1e-4)
    )


@pytest.mark.parametrize(
    ("rgb", "name"),
    [
        ((0, 0, 0), "Black"),
        ((255, 255, 255), "White"),
        ((200, 20, 30), "Red"),
        ((0, 0, 128), "Navy Blue"),
        ((30, 40, 70), "Navy Blue"),
        ((0, 0, 255), "Blue"),
        ((45, 100, 180), "Blue"),
        ((40, 140, 70), "Green"),
        ((128, 128, 0), "Olive"),
        ((250, 215, 50), "Yellow"),
        ((240, 125, 35), "Orange"),
        ((128, 128, 128), "Grey"),
        ((100, 30, 150), "Purple"),
        ((240, 150, 185), "Pink"),
        ((110, 25, 35), "Maroon"),
        ((105, 65, 40), "Brown"),
        ((216, 195, 162), "Beige"),
    ],
)
def test_typical_colours(rgb: tuple[int, int, int], name: str) -> None:
    assert name_color(_lab(rgb)) == name


def test_colour_space_round_trip() -> None:
    rgb = np.array([[12, 200, 99], [255, 255, 255], [0, 0, 0]], dtype=np.uint8)
    back = lab_to_rgb(rgb_to_lab(rgb))
    assert np.abs(back.astype(int) - rgb.astype(int)).max() <= 1
    assert rgb_to_hex((255, 0, 16)) == "#ff0010"
    assert hex_to_rgb("#ff0010") == (255, 0, 16)
