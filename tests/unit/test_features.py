"""Hand-crafted visual features on small synthetic product photos."""

from __future__ import annotations

import json
from collections.abc import Callable

import cv2
import numpy as np
import pytest
from PIL import Image, ImageDraw
from skimage.feature import graycomatrix, graycoprops, local_binary_pattern

from vitrine.vision import texture
from vitrine.vision.features import (
    FEATURE_VERSION,
    VECTOR_DIMS,
    VisualFeatures,
    extract_features,
)
from vitrine.vision.foreground import estimate_foreground

RGB = tuple[int, int, int]
Fill = Callable[[np.ndarray, np.ndarray], np.ndarray]

RED: RGB = (200, 25, 35)
NAVY: RGB = (25, 35, 75)
WHITE: RGB = (245, 245, 245)
YELLOW: RGB = (240, 210, 50)
GREEN: RGB = (40, 140, 70)
BLACK: RGB = (20, 20, 20)


def _product(
    fill: Fill, size: tuple[int, int] = (160, 120), bg: RGB = (252, 252, 252)
) -> np.ndarray:
    """A 120x80 rectangle 'garment' drawn by ``fill`` on a plain studio background."""
    h, w = size
    img = np.empty((h, w, 3), dtype=np.uint8)
    img[:] = bg
    ys, xs = np.mgrid[0:120, 0:80]
    img[20:140, 20:100] = fill(ys, xs)
    return img


def _two(c1: RGB, c2: RGB, sel: np.ndarray) -> np.ndarray:
    out = np.empty((*sel.shape, 3), dtype=np.uint8)
    out[sel], out[~sel] = c1, c2
    return out


def solid(c: RGB) -> Fill:
    return lambda ys, xs: _two(c, c, ys >= 0)


def stripes(c1: RGB, c2: RGB, period: int = 8, phase: int = 0, vertical: bool = True) -> Fill:
    return lambda ys, xs: _two(c1, c2, ((xs if vertical else ys) + phase) % period < period // 2)


def checks(c1: RGB, c2: RGB, period: int = 12, phase: int = 0) -> Fill:
    half = period // 2
    return lambda ys, xs: _two(c1, c2, ((xs + phase) // half + (ys + phase) // half) % 2 == 0)


def dots(c1: RGB, c2: RGB, period: int = 10, radius: float = 2.2, phase: int = 0) -> Fill:
    def fill(ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
        dy = (ys + phase) % period - period / 2
        dx = (xs + phase) % period - period / 2
        return _two(c1, c2, dy * dy + dx * dx <= radius * radius)

    return fill


def printed(c1: RGB, c2: RGB, seed: int) -> Fill:
    """An irregular two-colour print (thresholded smooth noise)."""

    def fill(ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
        rng = np.random.default_rng(seed)
        h, w = ys.shape
        noise = rng.standard_normal((h // 4 + 2, w // 4 + 2)).astype(np.float32)
        noise = cv2.resize(
            cv2.GaussianBlur(noise, (0, 0), 1.0), (w, h), interpolation=cv2.INTER_CUBIC
        )
        return _two(c1, c2, noise > 0)

    return fill


def _check_vectors(f: VisualFeatures) -> None:
    vecs = f.vectors()
    assert set(vecs) == {"color", "texture", "shape", "pattern"}
    for key, v in vecs.items():
        assert v.dtype == np.float32 and v.shape == (VECTOR_DIMS[key],), key
        assert np.isfinite(v).all(), key
        assert np.linalg.norm(v) == pytest.approx(1.0, abs=1e-4), key


# --- colour -------------------------------------------------------------------------------


def test_red_square_on_white_is_red() -> None:
    f = extract_features(_product(solid(RED)))
    assert f.color.primary == "Red"
    top = f.color.colors[0]
    assert top.name == "Red" and top.share >= 0.9
    assert f.background_uniform
    assert sum(c.share for c in f.color.colors) == pytest.approx(1.0)
    assert [c.share for c in f.color.colors] == sorted(
        (c.share for c in f.color.colors), reverse=True
    )
    assert top.rgb_hex.startswith("#") and len(top.rgb_hex) == 7
    assert top.lab[1] > 40  # strongly red in Lab


def test_navy_square_is_navy_blue() -> None:
    f = extract_features(_product(solid(NAVY)))
    assert f.color.primary == "Navy Blue"
    assert f.color.colors[0].share >= 0.9


def test_two_colour_garment_reports_both() -> None:
    f = extract_features(_product(stripes(RED, YELLOW, period=16)))
    names = {c.name for c in f.color.colors}
    assert {"Red", "Yellow"} <= names
    assert {f.color.primary, f.color.secondary} == {"Red", "Yellow"}


def test_many_colours_is_multi() -> None:
    colours = [RED, YELLOW, GREEN, NAVY]

    def fill(ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
        out = np.empty((*ys.shape, 3), dtype=np.uint8)
        quadrant = 2 * (ys >= 60) + (xs >= 40)
        for i, c in enumerate(colours):
            out[quadrant == i] = c
        return out

    assert extract_features(_product(fill)).color.primary == "Multi"


def test_colour_histogram_separates_colours() -> None:
    red = extract_features(_product(solid(RED))).vectors()["color"]
    red2 = extract_features(_product(solid((210, 35, 30)))).vectors()["color"]
    navy = extract_features(_product(solid(NAVY))).vectors()["color"]
    assert float(red @ red2) > 0.9
    assert float(red @ navy) < 0.1


# --- foreground ---------------------------------------------------------------------------


def test_foreground_of_square_on_plain_background() -> None:
    img = _product(solid(RED))
    fg = estimate_foreground(img)
    truth = np.zeros(img.shape[:2], dtype=bool)
    truth[20:140, 20:100] = True
    iou = (fg.mask & truth).sum() / (fg.mask | truth).sum()
    assert iou > 0.95
    assert fg.background_uniform
    assert fg.background_lab[0] > 95
    assert fg.ratio == pytest.approx(truth.mean(), abs=0.02)


def test_busy_background_falls_back() -> None:
    rng = np.random.default_rng(3)
    img = rng.integers(0, 256, (120, 100, 3), dtype=np.uint8)
    fg = estimate_foreground(img)
    assert not fg.background_uniform
    assert 0.3 < fg.ratio <= 1.0


def test_white_shirt_on_white_background() -> None:
    """Near-white product with a faint outline and shading: no crash, non-empty mask."""
    im = Image.new("RGB", (120, 160), (255, 255, 255))
    d = ImageDraw.Draw(im)
    shirt = [(30, 30), (50, 20), (70, 20), (90, 30), (105, 55), (90, 62), (88, 140), (32, 140),
             (30, 62), (15, 55)]  # fmt: skip
    d.polygon(shirt, fill=(246, 246, 244), outline=(215, 215, 215))
    d.line([(60, 25), (60, 135)], fill=(232, 232, 230), width=2)
    f = extract_features(np.asarray(im))
    assert f.foreground_ratio > 0.05
    assert f.color.colors[0].name in {"White", "Off White"}
    _check_vectors(f)
    # Entirely white: nothing to segment, still a sensible (fallback) mask.
    blank = extract_features(np.full((80, 60, 3), 255, dtype=np.uint8))
    assert blank.foreground_ratio > 0.3
    assert not blank.background_uniform  # a fallback mask, not a segmentation
    assert blank.color.primary == "White"


# --- texture ------------------------------------------------------------------------------


def test_lbp_matches_scikit_image(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(texture, "_LBP_TOLERANCE", -1e-4)  # plain ">=" comparison
    rng = np.random.default_rng(5)
    gray = (rng.integers(0, 256, (40, 50)) // 16 * 16).astype(np.uint8)
    for p, r in ((8, 1.0), (16, 2.0)):
        ours = texture.lbp_uniform(gray, p, r)[3:-3, 3:-3]
        ref = local_binary_pattern(gray, p, r, "uniform")[3:-3, 3:-3]
        assert (ours == ref).mean() > 0.99


def test_glcm_matches_scikit_image() -> None:
    rng = np.random.default_rng(6)
    q = rng.integers(0, 16, (30, 40)).astype(np.uint8)
    ours = texture._glcm_props(q, np.ones(q.shape, dtype=bool))
    angles = [0, np.pi / 4, np.pi / 2, 3 * np.pi / 4]
    m = graycomatrix(q, [1], angles, levels=16, symmetric=True, normed=True)
    for prop in texture.GLCM_PROPS:
        np.testing.assert_allclose(ours[prop], graycoprops(m, prop).ravel(), atol=1e-9)


def test_texture_of_solid_and_striped_surfaces() -> None:
    flat = extract_features(_product(solid(GREEN))).texture.summary()
    striped = extract_features(_product(stripes(GREEN, WHITE, period=4))).texture.summary()
    assert flat["contrast"] < 0.5 and flat["homogeneity"] > 0.9
    assert striped["contrast"] > 10 * max(flat["contrast"], 0.1)
    assert striped["lbp_flat_share"] < flat["lbp_flat_share"]


# --- pattern ------------------------------------------------------------------------------

PATTERNS: dict[str, list[Fill]] = {
    "solid": [solid(RED), solid(NAVY), solid(GREEN)],
    "stripes": [
        stripes(RED, WHITE),
        stripes(NAVY, YELLOW, phase=3),
        stripes(GREEN, BLACK, phase=1),
    ],
    "checks": [checks(RED, WHITE), checks(NAVY, YELLOW, phase=4), checks(GREEN, BLACK, phase=2)],
    "dots": [dots(WHITE, RED), dots(YELLOW, NAVY, phase=3), dots(BLACK, GREEN, phase=5)],
}


def test_pattern_descriptor_separates_solid_stripes_checks_dots() -> None:
    vecs = {
        cls: [extract_features(_product(f)).vectors()["pattern"] for f in fills]
        for cls, fills in PATTERNS.items()
    }
    within = max(float(np.linalg.norm(a - b)) for vs in vecs.values() for a in vs for b in vs)
    between = min(
        float(np.linalg.norm(a - b))
        for c1, v1 in vecs.items()
        for c2, v2 in vecs.items()
        if c1 != c2
        for a in v1
        for b in v2
    )
    assert between > 3.0 * within, (within, between)

    prints = [
        extract_features(_product(printed(a, b, seed))).vectors()["pattern"]
        for a, b, seed in ((RED, WHITE, 1), (NAVY, YELLOW, 2), (GREEN, BLACK, 3))
    ]
    within_print = max(float(np.linalg.norm(a - b)) for a in prints for b in prints)
    to_others = min(
        float(np.linalg.norm(a - b)) for a in prints for vs in vecs.values() for b in vs
    )
    assert to_others > 2.0 * within_print, (within_print, to_others)


def test_pattern_orientation_summary() -> None:
    vertical = extract_features(_product(stripes(RED, WHITE))).pattern
    horizontal = extract_features(_product(stripes(RED, WHITE, vertical=False))).pattern
    checked = extract_features(_product(checks(RED, WHITE))).pattern
    plain = extract_features(_product(solid(RED))).pattern
    assert vertical.dominant_orientation_deg == pytest.approx(90.0, abs=5.0)
    assert horizontal.dominant_orientation_deg % 180.0 == pytest.approx(0.0, abs=5.0)
    assert vertical.orientedness > 0.8 and horizontal.orientedness > 0.8
    assert checked.orientedness < 0.3
    assert vertical.periodicity > 0.5
    assert plain.edge_density < 0.01 < vertical.edge_density


# --- shape --------------------------------------------------------------------------------


def _silhouette() -> np.ndarray:
    """An L-shaped dark product, 100 tall and 40 wide, on white."""
    img = np.full((140, 80, 3), 250, dtype=np.uint8)
    img[20:120, 20:40] = BLACK
    img[100:120, 20:60] = BLACK
    return img


def test_rotated_silhouette_inverts_aspect_ratio() -> None:
    img = _silhouette()
    upright = extract_features(img).shape
    rotated = extract_features(np.ascontiguousarray(np.rot90(img))).shape
    assert upright.aspect_ratio == pytest.approx(0.4, rel=0.1)
    assert rotated.aspect_ratio == pytest.approx(1.0 / upright.aspect_ratio, rel=0.1)
    assert upright.fill_ratio == pytest.approx(rotated.fill_ratio, abs=0.05)
    assert upright.fill_ratio == pytest.approx(0.6, abs=0.06)
    assert upright.solidity < 0.8
    a = extract_features(img).vectors()["shape"]
    b = extract_features(np.ascontiguousarray(np.rot90(img))).vectors()["shape"]
    assert float(a @ b) < 0.95  # the descriptor sees the difference


def test_shape_of_rectangle() -> None:
    s = extract_features(_product(solid(RED))).shape
    assert s.aspect_ratio == pytest.approx(80 / 120, rel=0.05)
    assert s.fill_ratio > 0.95 and s.solidity > 0.95


# --- entry point --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "shape",
    [(1, 1, 3), (2, 2, 3), (8, 8, 3), (3, 40, 3), (1, 300, 3), (9, 7), (16, 16, 4), (600, 450, 3)],
)
def test_any_size_gives_fixed_finite_vectors(shape: tuple[int, ...]) -> None:
    rng = np.random.default_rng(sum(shape))
    f = extract_features(rng.integers(0, 256, shape, dtype=np.uint8))
    _check_vectors(f)
    json.dumps(f.summary())


def test_rejects_non_images() -> None:
    with pytest.raises(ValueError):
        extract_features(np.zeros((0, 5, 3), dtype=np.uint8))
    with pytest.raises(ValueError):
        extract_features(np.zeros((8, 8, 3), dtype=np.float32))
    with pytest.raises(ValueError):
        extract_features(np.zeros((8, 8, 2), dtype=np.uint8))


def test_tiny_uniform_image() -> None:
    f = extract_features(np.array([[[200, 25, 35]]], dtype=np.uint8))
    assert f.color.primary == "Red"
    assert f.foreground_ratio > 0
    _check_vectors(f)


def test_summary_is_json_and_complete() -> None:
    f = extract_features(_product(stripes(NAVY, WHITE)))
    s = json.loads(json.dumps(f.summary()))
    assert s["feature_version"] == FEATURE_VERSION
    assert s["color"]["primary"] in {"Navy Blue", "White"}
    first = s["color"]["colors"][0]
    assert set(first) == {"name", "share", "lab", "hex"} and len(first["lab"]) == 3
    for key in ("edge_density", "dominant_orientation_deg", "periodicity", "orientedness"):
        assert isinstance(s["pattern"][key], float)
    assert {"aspect_ratio", "fill_ratio", "solidity", "hu_moments"} <= set(s["shape"])
    assert {"contrast", "homogeneity", "energy", "correlation"} <= set(s["texture"])
    assert 0 < s["foreground_ratio"] < 1 and s["background_uniform"] is True


def test_deterministic() -> None:
    rng = np.random.default_rng(9)
    img = _product(dots(WHITE, RED))
    img = np.clip(img.astype(int) + rng.integers(-20, 20, img.shape), 0, 255).astype(np.uint8)
    a, b = extract_features(img), extract_features(img)
    assert a.summary() == b.summary()
    for key, v in a.vectors().items():
        assert np.array_equal(v, b.vectors()[key])
