"""Unit tests for the aspect store, the fusion and weights of aspects, and the layout matcher."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from vitrine.index import Hit
from vitrine.index.aspect_store import AspectStore
from vitrine.index.fusion import DEFAULT_WEIGHTS, format_weights, fuse, parse_weights
from vitrine.vision.layout import (
    LAYOUT_DIM,
    AlignedLayoutQuery,
    hypotheses,
    layout_vector,
    normalise_exposure,
)
from vitrine.vision.query import TypicalAspect, canonical_view, to_aspect


def unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def random_unit(n: int, dim: int, seed: int = 0) -> np.ndarray:
    return unit(np.random.default_rng(seed).standard_normal((n, dim)))


# -- weights ---------------------------------------------------------------------------


def test_parse_weights_reads_names_and_numbers() -> None:
    assert parse_weights(" embedding = 2, color=0.5 ,pattern=1e-1") == {
        "embedding": 2.0,
        "color": 0.5,
        "pattern": 0.1,
    }
    assert parse_weights("") == {}
    assert parse_weights("   ") == {}
    assert parse_weights(format_weights(DEFAULT_WEIGHTS)) == DEFAULT_WEIGHTS


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("color", "name=number"),
        ("=1", "no name"),
        ("color=", "not a number"),
        ("color=abc", "not a number"),
        ("color=-1", ">= 0"),
        ("color=nan", ">= 0"),
        ("color=inf", ">= 0"),
        ("color=1,color=2", "twice"),
        ("color=1,,shape=2", "empty item"),
        ("color=0,shape=0", "all zero"),
    ],
)
def test_parse_weights_errors_name_the_problem(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_weights(text)


def test_parse_weights_checks_known_names() -> None:
    assert parse_weights("color=1", known={"color", "shape"}) == {"color": 1.0}
    with pytest.raises(ValueError, match="unknown weight 'colour'"):
        parse_weights("colour=1", known={"color", "shape"})


def test_parse_weights_rejects_non_strings() -> None:
    with pytest.raises(TypeError):
        parse_weights({"color": 1})  # type: ignore[arg-type]


# -- fusion ----------------------------------------------------------------------------


def test_fuse_single_aspect_keeps_its_order_and_scale() -> None:
    sims = np.array([0.2, 0.9, -0.5, 0.99])
    fused = fuse({"a": sims}, {"a": 1.0})
    assert list(np.argsort(-fused)) == [3, 1, 0, 2]
    np.testing.assert_allclose(fused, sims, atol=1e-9)


def test_fuse_skips_missing_aspects_and_zero_weights() -> None:
    a = np.array([0.9, np.nan])
    b = np.array([0.1, 0.8])
    fused = fuse({"a": a, "b": b, "c": np.array([1.0, 1.0])}, {"a": 1.0, "b": 1.0, "c": 0.0})
    assert fused[1] == pytest.approx(0.8)  # only b is known for the second candidate
    assert 0.1 < fused[0] < 0.9
    none = fuse({"a": np.array([np.nan])}, {"a": 1.0})
    assert none[0] == -np.inf
    with pytest.raises(ValueError):
        fuse({"a": a}, {"b": 1.0})


def test_fuse_stretches_the_top_of_the_scale() -> None:
    # 0.999 vs 0.99 on one aspect outweighs 0.90 vs 0.93 on another of equal weight.
    fused = fuse({"a": np.array([0.999, 0.99]), "b": np.array([0.90, 0.93])}, {"a": 1, "b": 1})
    assert fused[0] > fused[1]


# -- store -----------------------------------------------------------------------------


def test_fusion_flips_an_order_the_embedding_gets_wrong() -> None:
    basis = np.linalg.qr(np.random.default_rng(1).standard_normal((16, 16)))[0].T
    query_emb = basis[0].astype(np.float32)
    # "right" is further from the query in the embedding (cosine 0.80) but has the query's
    # colour; "wrong" is the embedding's favourite (cosine 0.90) with another colour.
    right_emb = (0.80 * basis[0] + 0.6 * basis[1]).astype(np.float32)
    wrong_emb = (0.90 * basis[0] + np.sqrt(1 - 0.81) * basis[2]).astype(np.float32)
    colors = random_unit(2, 8, seed=3)
    query_color = colors[0]
    right_color = unit(colors[0] + 0.05 * colors[1])
    wrong_color = colors[1]
    store = AspectStore()
    store.upsert(["right", "wrong"], {"color": np.stack([right_color, wrong_color])})
    candidates = [
        Hit("wrong", float(wrong_emb @ query_emb)),
        Hit("right", float(right_emb @ query_emb)),
    ]
    assert candidates[0].score > candidates[1].score
    only_embedding = store.rerank({"color": query_color}, query_emb, candidates, {"embedding": 1})
    assert [h.product_id for h in only_embedding] == ["wrong", "right"]
    fused = store.rerank(
        {"color": query_color}, query_emb, candidates, {"embedding": 1, "color": 1}, k=2
    )
    assert [h.product_id for h in fused] == ["right", "wrong"]
    assert all(-1.0 <= h.score <= 1.0 for h in fused)
    # The same with embeddings looked up instead of taken from the hits' scores.
    looked_up = store.rerank(
        {"color": query_color},
        query_emb,
        [Hit("wrong", 0.0), Hit("right", 0.0)],
        {"embedding": 1, "color": 1},
        candidate_embeddings=np.stack([wrong_emb, right_emb]),
    )
    assert [h.product_id for h in looked_up] == ["right", "wrong"]


def test_rerank_k_duplicates_unknown_ids_and_views() -> None:
    store = AspectStore()
    x = random_unit(5, 4)
    store.upsert([f"p{i}" for i in range(5)], {"color": x})
    q = x[3]
    hits = [Hit("p0", 0.0), Hit("p3", 0.0), Hit("p3", 0.5), Hit("ghost", 0.0), Hit("p1", 0.0)]
    out = store.rerank({"color": q}, None, hits, {"color": 1.0}, k=10)
    assert out[0].product_id == "p3"
    assert len(out) == 3  # duplicate dropped, "ghost" has no aspect at all
    assert store.rerank({"color": q}, None, hits, {"color": 1.0}, k=1)[0].product_id == "p3"
    assert store.rerank({"color": q}, None, [], {"color": 1.0}) == []
    # Several views of the query: the best one counts.
    views = np.stack([x[0], x[3]])
    out = store.rerank({"color": views}, None, hits, {"color": 1.0}, k=2)
    assert {h.product_id for h in out} == {"p0", "p3"}
    assert out[0].score == pytest.approx(1.0, abs=1e-5)


def test_upsert_replace_and_remove() -> None:
    store = AspectStore()
    a = random_unit(3, 6, seed=5)
    b = random_unit(3, 4, seed=6)
    store.upsert(["x", "y", "z"], {"color": a, "shape": b})
    assert len(store) == 3 and "y" in store
    assert store.kinds == {"color": 6, "shape": 4}
    np.testing.assert_allclose(store.get("y")["color"], a[1], atol=1e-6)
    # Rows are stored unit-length.
    store.upsert(["y"], {"color": 3 * a[0][None, :]})
    got = store.get("y")
    np.testing.assert_allclose(got["color"], a[0], atol=1e-6)
    assert "shape" not in got  # an upsert sets exactly the kinds given
    store.upsert(["y"], {"shape": b[1][None, :]}, replace=False)  # ... or adds to them
    assert set(store.get("y")) == {"color", "shape"}
    assert store.remove(["y", "nope"]) == 1
    assert "y" not in store and len(store) == 2 and store.get("y") == {}
    # A freed row is reused, without leaking the old vectors.
    store.upsert(["w"], {"shape": b[2][None, :]})
    assert set(store.get("w")) == {"shape"}
    assert sorted(store.ids()) == ["w", "x", "z"]
    # Last duplicate wins.
    store.upsert(["d", "d"], {"color": a[:2]})
    np.testing.assert_allclose(store.get("d")["color"], a[1], atol=1e-6)


def test_upsert_validates_input() -> None:
    store = AspectStore(dims={"color": 4})
    with pytest.raises(ValueError, match="dimension 4"):
        store.upsert(["a"], {"color": np.ones((1, 5))})
    with pytest.raises(ValueError, match="rows"):
        store.upsert(["a", "b"], {"color": np.ones((1, 4))})
    with pytest.raises(ValueError, match="NaN"):
        store.upsert(["a"], {"color": np.array([[1.0, np.nan, 0, 0]])})
    with pytest.raises(TypeError):
        store.upsert("abc", {"color": np.ones((3, 4))})
    with pytest.raises(TypeError):
        store.upsert([1], {"color": np.ones((1, 4))})  # type: ignore[list-item]
    with pytest.raises(TypeError):
        store.remove("abc")
    store.upsert(["a"], {"color": np.zeros((1, 4))})  # a zero row stays zero
    assert not store.get("a")["color"].any()


def test_store_grows_past_its_initial_capacity() -> None:
    store = AspectStore()
    x = random_unit(3000, 8, seed=7)
    ids = [f"{i:06d}" for i in range(3000)]
    for s in range(0, 3000, 700):
        store.upsert(ids[s : s + 700], {"color": x[s : s + 700]})
    assert len(store) == 3000
    np.testing.assert_allclose(store.get("002999")["color"], x[2999], atol=1e-6)
    hits = store.scan({"color": x[1234]}, {"color": 1.0}, k=3)
    assert hits[0].product_id == "001234"
    assert hits[0].score == pytest.approx(1.0, abs=1e-5)


def test_scan_weights_filters_and_exclusions() -> None:
    store = AspectStore()
    color = random_unit(50, 8, seed=8)
    shape = random_unit(50, 5, seed=9)
    ids = [f"p{i}" for i in range(50)]
    store.upsert(ids, {"color": color, "shape": shape})
    q = {"color": color[7], "shape": shape[9]}
    assert store.scan(q, {"color": 1.0}, k=1)[0].product_id == "p7"
    assert store.scan(q, {"shape": 1.0}, k=1)[0].product_id == "p9"
    top = store.scan(q, {"color": 1.0, "shape": 1.0}, k=5)
    assert len(top) == 5 and {"p7", "p9"} <= {h.product_id for h in top}
    assert [h.score for h in top] == sorted((h.score for h in top), reverse=True)
    assert store.scan(q, {"color": 1.0}, k=3, exclude={"p7"})[0].product_id != "p7"
    allowed = store.scan(q, {"color": 1.0}, k=10, allowed={"p1", "p2", "nope"})
    assert {h.product_id for h in allowed} == {"p1", "p2"}
    store.remove(["p7"])
    assert all(h.product_id != "p7" for h in store.scan(q, {"color": 1.0}, k=50))
    with pytest.raises(ValueError):
        store.scan(q, {"pattern": 1.0}, k=3)
    assert AspectStore().scan(q, {"color": 1.0}, k=3) == []


def test_concurrent_upserts_and_reranks() -> None:
    store = AspectStore()
    x = random_unit(400, 8, seed=10)
    ids = [f"p{i}" for i in range(400)]
    store.upsert(ids[:200], {"color": x[:200]})
    errors: list[BaseException] = []

    def writer() -> None:
        try:
            for s in range(200, 400, 10):
                store.upsert(ids[s : s + 10], {"color": x[s : s + 10]})
                store.remove(ids[s - 200 : s - 195])
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    def reader() -> None:
        try:
            for i in range(100):
                hits = [Hit(ids[j], 0.0) for j in range(i, i + 40)]
                store.rerank({"color": x[i]}, None, hits, {"color": 1.0}, k=5)
                store.scan({"color": x[i]}, {"color": 1.0}, k=5)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer)] + [
        threading.Thread(target=reader) for _ in range(3)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(store) == 400 - 100


# -- layout and the query side ---------------------------------------------------------


def product_photo(seed: int, h: int = 160, w: int = 120) -> np.ndarray:
    """A blocky 'product' on white: coloured rectangles in a random layout."""
    rng = np.random.default_rng(seed)
    img = np.full((h, w, 3), 255, np.uint8)
    for _ in range(6):
        y0, x0 = rng.integers(0, h - 30), rng.integers(0, w - 30)
        y1, x1 = y0 + rng.integers(20, 60), x0 + rng.integers(20, 50)
        img[y0:y1, x0:x1] = rng.integers(0, 200, 3)
    return img


def test_layout_vector_is_unit_and_aspect_free() -> None:
    img = product_photo(1)
    v = layout_vector(img)
    assert v.shape == (LAYOUT_DIM,) and v.dtype == np.float32
    assert np.linalg.norm(v) == pytest.approx(1.0, abs=1e-5)
    squashed = to_aspect(img, 1.0)  # squashed to a square: same layout
    assert float(v @ layout_vector(squashed)) > 0.98
    assert float(v @ layout_vector(product_photo(2))) < 0.9
    assert not layout_vector(np.full((40, 30, 3), 120, np.uint8)).any()
    assert layout_vector(np.zeros((5, 3, 3), np.uint8)).shape == (LAYOUT_DIM,)


def test_normalise_exposure_restores_a_dark_photo_and_leaves_bright_ones() -> None:
    img = product_photo(3)
    assert normalise_exposure(img) is img
    dark = (img.astype(np.float32) * 0.8).astype(np.uint8)
    restored = normalise_exposure(dark)
    assert abs(int(restored.max()) - 255) <= 1
    assert np.abs(restored.astype(int) - img.astype(int)).mean() < 3


def test_aligned_layout_finds_a_cropped_rotated_darkened_photo() -> None:
    import cv2

    photos = [product_photo(s) for s in range(30)]
    catalog = np.stack([layout_vector(p) for p in photos])
    target = photos[11]
    h, w = target.shape[:2]
    crop = np.ascontiguousarray(target[10 : 10 + int(0.85 * h), 5 : 5 + int(0.85 * w)])
    m = cv2.getRotationMatrix2D((crop.shape[1] / 2, crop.shape[0] / 2), 8.0, 1.0)
    crop = cv2.warpAffine(crop, m, crop.shape[1::-1], borderMode=cv2.BORDER_REPLICATE)
    crop = (crop.astype(np.float32) * 0.8).astype(np.uint8)
    query = AlignedLayoutQuery(crop, frame_aspect=w / h)
    sims = query.similarity(catalog)
    assert sims.shape == (30,)
    assert int(np.argmax(sims)) == 11
    assert query.similarity(np.zeros((0, LAYOUT_DIM), np.float32)).shape == (0,)
    with pytest.raises(ValueError):
        query.similarity(np.zeros((2, 7), np.float32))


def test_hypotheses_add_the_stretched_frame_only_for_other_aspects() -> None:
    def stretched(hyps: list) -> int:
        return sum(h.scale_x == h.scale_y for h in hyps)

    same = hypotheses(0.75, 0.75)
    assert all(h.scale_x == h.scale_y for h in same)  # the query keeps its shape
    assert any(h.angle == 0 and h.scale_x == 1 and h.cx == 0.5 for h in same)
    square = hypotheses(1.0, 0.75)
    assert stretched(square) == len(same)  # stretched to the frame, as a squashed photo
    assert len(square) > len(same)
    assert all(max(h.scale_x, h.scale_y) <= 1.0 for h in square)


def test_typical_aspect_and_canonical_view() -> None:
    tracker = TypicalAspect()
    assert tracker.value is None
    tracker.add_many(np.array([[60, 80]] * 9 + [[100, 100]]))
    tracker.add(53, 80)
    assert tracker.value == pytest.approx(0.75, rel=0.01)
    square = product_photo(4, 120, 120)
    view = canonical_view(square, tracker.value)
    assert view.shape[1] / view.shape[0] == pytest.approx(0.75, rel=0.02)
    tall = product_photo(5, 160, 120)
    assert canonical_view(tall, tracker.value) is tall
    assert canonical_view(square, None) is square


def test_aligned_layout_falls_back_to_the_whole_photo() -> None:
    from vitrine.vision.layout import Hypothesis

    photo = product_photo(6)
    tiny = [Hypothesis(0.1, 0.1, 0.0, 0.5, 0.5)]  # covers too little of the frame
    query = AlignedLayoutQuery(photo, 0.75, hyps=tiny)
    sims = query.similarity(np.stack([layout_vector(photo), layout_vector(product_photo(7))]))
    assert sims[0] > 0.98 > sims[1]


def test_coarse_layout_and_catalog_aspects() -> None:
    from vitrine.vision.layout import COARSE_DIM, coarse_layout
    from vitrine.vision.query import catalog_aspects

    layouts = np.stack([layout_vector(product_photo(s)) for s in range(3)] + [np.zeros(300)])
    coarse = coarse_layout(layouts)
    assert coarse.shape == (4, COARSE_DIM)
    np.testing.assert_allclose(np.linalg.norm(coarse[:3], axis=1), 1.0, atol=1e-5)
    assert not coarse[3].any()
    np.testing.assert_allclose(coarse_layout(layouts[1]), coarse[1])
    with pytest.raises(ValueError):
        coarse_layout(np.zeros((2, 10)))
    stored = {"color": np.ones((4, 5)), "shape": np.ones((4, 3)), "layout": layouts}
    rows = catalog_aspects(stored, kinds={"color", "layout", "layout_coarse"})
    assert set(rows) == {"color", "layout", "layout_coarse"}
    np.testing.assert_allclose(rows["layout_coarse"], coarse)
    assert set(catalog_aspects(stored)) == {"color", "shape", "layout", "layout_coarse"}
