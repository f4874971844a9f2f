"""The hybrid's candidate sources and features on tiny hand-made shops."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import numpy as np
import pytest
from recommend_synth import START

from vitrine.recommend import candidates as candidates_module
from vitrine.recommend import hybrid as hybrid_module
from vitrine.recommend.candidates import DEFAULT_SOURCES, CandidateSources
from vitrine.recommend.data import CatalogProduct, Dataset, to_days
from vitrine.recommend.events import DEFAULT_EVENT_WEIGHTS
from vitrine.recommend.hybrid import WINDOWS, Hybrid
from vitrine.recommend.item_stats import variant_groups


def tiny_shop() -> Dataset:
    """Two shirts sold in three colours (same title), a dress, shoes; prices 10..60."""
    rows = [
        ("s-red", "Linen Shirt", "Shirt", "Red", 20.0),
        ("s-blue", "linen  shirt", "Shirt", "Blue", 20.0),
        ("s-white", "Linen Shirt", "Shirt", "White", 22.0),
        ("d-red", "Summer Dress", "Dress", "Red", 40.0),
        ("shoe", "Runner", "Shoes", "White", 60.0),
        ("sock", None, "Socks", "White", 10.0),
    ]
    rng = np.random.default_rng(0)
    products = [
        CatalogProduct(pid, title, {"category": cat, "colour": colour, "price": price})
        for pid, title, cat, colour, price in rows
    ]
    embeddings = {pid: rng.normal(size=8) for pid, *_ in rows}
    return Dataset.from_catalog(products, embeddings, embedding_dims=0)


def with_purchases(data: Dataset, rows: list[tuple[str, str, int]]) -> Dataset:
    events = [(user, pid, "purchase", START + timedelta(days=day), None) for user, pid, day in rows]
    return data.with_events(sorted(events, key=lambda r: r[3]), DEFAULT_EVENT_WEIGHTS)


def test_variant_groups_match_titles_case_and_space_insensitively() -> None:
    data = tiny_shop()
    groups = variant_groups(data)
    shirts = [data.item_index[p] for p in ("s-red", "s-blue", "s-white")]
    assert len({int(groups[i]) for i in shirts}) == 1 and groups[shirts[0]] >= 0
    # a title of its own (no other variant) or no title: no group
    assert groups[data.item_index["d-red"]] == -1
    assert groups[data.item_index["sock"]] == -1


def features_of(data: Dataset, user: str, now: float) -> dict[str, dict[str, float]]:
    """Each candidate product's features for one customer's history."""
    sources = CandidateSources(data, DEFAULT_SOURCES, {"factors": 4, "iterations": 2})
    history = data.histories()[data.user_index[user]]
    items, f = sources.candidates(history, now, data.available)
    names = sources.feature_names
    return {
        data.items[int(i)]: dict(zip(names, row.tolist(), strict=True))
        for i, row in zip(items, f, strict=True)
    }


def test_candidates_include_other_variants_with_affinity_and_price_features() -> None:
    data = with_purchases(
        tiny_shop(),
        [
            ("ann", "s-red", 0),
            ("ann", "s-red", 20),
            ("ann", "sock", 21),
            ("bob", "d-red", 1),
            ("bob", "shoe", 2),
            ("cid", "s-white", 3),
        ],
    )
    now = to_days(START) + 30
    feats = features_of(data, "ann", now)
    assert {"s-blue", "s-white"} <= set(feats)  # other colours of the shirt she bought
    assert feats["s-blue"]["variant"] > 0 and feats["shoe"]["variant"] == 0
    assert feats["s-red"]["in_history"] == 1
    # she bought shirts twice and socks once: category and colour shares of her history
    assert feats["s-blue"]["category_affinity"] > feats["shoe"]["category_affinity"] == 0
    assert feats["s-white"]["facet_colour"] > 0 and feats["d-red"]["facet_colour"] > 0
    # her price band is 10-20: the 60 shoes are far above it, the 22 shirt close
    assert feats["shoe"]["price_ratio"] > feats["s-white"]["price_ratio"] > 0
    assert feats["sock"]["price_ratio"] < 0


def test_hybrid_label_windows_end_window_step_apart(monkeypatch: pytest.MonkeyPatch) -> None:
    data = with_purchases(
        tiny_shop(),
        [
            (f"u{u}", pid, day)
            for u in range(12)
            for pid, day in (("s-red", 3 * u), ("s-blue", 3 * u + 20), ("shoe", 3 * u + 40))
        ],
    )
    periods: list[tuple[float, float]] = []
    real = hybrid_module._purchases

    def spy(d: Dataset, start: float, end: float, *args: Any) -> dict[int, np.ndarray]:
        periods.append((start, end))
        return real(d, start, end, *args)

    monkeypatch.setattr(hybrid_module, "_purchases", spy)
    Hybrid(
        windows=3, window_step=14.0, label_days=28.0, als_params={"factors": 4, "iterations": 2}
    ).fit(data)
    end = data.last_day + 1
    assert periods == [(end - 28, end), (end - 42, end - 14), (end - 56, end - 28)]
    assert Hybrid().windows == WINDOWS


def test_each_window_learns_from_a_seeded_sample_of_its_customers() -> None:
    rows = [
        (f"u{u}", pid, day)
        for u in range(30)
        for pid, day in (("s-red", u % 10), ("s-blue", 20 + u % 10), ("shoe", 40 + u % 10))
    ]
    data = with_purchases(tiny_shop(), rows)
    end = data.last_day + 1
    every = hybrid_module._purchases(data, end - 28, end)
    assert len(every) == 30
    sample = hybrid_module._purchases(data, end - 28, end, 7, np.random.default_rng(3))
    again = hybrid_module._purchases(data, end - 28, end, 7, np.random.default_rng(3))
    assert len(sample) == 7 and set(sample) <= set(every)
    assert list(sample) == sorted(sample) == list(again)
    for user, items in sample.items():
        assert items.tolist() == every[user].tolist()
    als = {"factors": 4, "iterations": 2}
    capped = Hybrid(windows=2, als_params=als, customers_per_window=7).fit(data)
    whole = Hybrid(windows=2, als_params=als, customers_per_window=0).fit(data)
    assert capped.training_report["groups"] <= 2 * 7 < whole.training_report["groups"]


def test_every_twelfth_position_goes_to_the_new_product_most_like_the_customers_items() -> None:
    names = candidates_module.BASE_FEATURES
    n = 60
    items = np.arange(100, 100 + n)
    f = np.full((n, len(names)), np.nan, np.float32)
    look = f[:, names.index("visual_max")]
    cold = np.zeros(n, bool)
    cold[[5, 50, 51, 52, 53]] = True  # candidates nobody bought yet
    look[[5, 50, 51, 52]] = [0.95, 0.2, 0.9, 0.5]  # 53: no photo history to compare with
    model = Hybrid()
    model.stage1 = type("Stage1", (), {"cold": np.zeros(200, bool)})()
    model.stage1.cold[items[cold]] = True
    order = np.arange(n)  # the ranker's order: index 5 (cold) sits in the first page

    out = model.with_new_products(order, items, f).tolist()
    assert sorted(out) == list(range(n))  # a reordering: nothing lost, nothing doubled
    assert out[:12] == list(range(12))  # the first page already shows the closest one
    # then the closest look-alikes, best first, at the end of each page
    assert [out[23], out[35], out[47]] == [51, 52, 50]
    assert out[12:23] == list(range(12, 23)) and out[24:35] == list(range(23, 34))
    assert out.index(53) > out.index(49)  # never picked without a look-alike to explain it
    assert model.with_new_products(order, items, f, 12).tolist() == out[:12]

    # a new product on the first page that looks less like the customer's items than
    # another does not keep the closest one out
    look[5] = 0.1
    out = model.with_new_products(order, items, f).tolist()
    assert out[:12] == [*range(11), 51] and [out[23], out[35]] == [52, 50]

    model.new_every = 0
    assert model.with_new_products(order, items, f).tolist() == list(range(n))


def test_launch_days_trust_a_creation_before_the_first_event_only() -> None:
    data = with_purchases(
        tiny_shop(), [("u1", "s-red", 20), ("u1", "s-blue", 30), ("u2", "d-red", 40)]
    )
    day0 = to_days(START)
    # s-red: created before its first sale; s-blue and d-red: records younger than their
    # first sale (an imported catalog); shoe: created, never sold; sock: nothing known
    data.created_day = np.array([day0 + 10, day0 + 100, day0 + 10, day0 + 100, day0 + 50, np.nan])
    launched = data.launch_days(lead_days=7.0)
    assert launched[:5].tolist() == [day0 + 10, day0 + 23, day0 + 10, day0 + 33, day0 + 50]
    assert launched[5] == -np.inf


def test_training_windows_only_see_products_on_sale_at_their_start(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rows = [(f"u{u}", "s-red", day) for u in range(6) for day in (5, 40, 75)]
    rows += [("u0", "d-red", 80)]  # the dress is first sold on day 80
    data = with_purchases(tiny_shop(), rows)
    data.created_day = np.full(data.n_catalog, to_days(START) + 200)  # imported later
    seen: list[tuple[float, set[int]]] = []
    original = CandidateSources.candidates

    def spy(self: CandidateSources, history, now, valid, user=None):  # type: ignore[no-untyped-def]
        seen.append((now, set(np.flatnonzero(valid).tolist())))
        return original(self, history, now, valid, user)

    monkeypatch.setattr(CandidateSources, "candidates", spy)
    Hybrid(
        windows=3,
        window_step=30.0,
        label_days=30.0,
        launch_lead_days=40.0,
        als_params={"factors": 4, "iterations": 2},
    ).fit(data)
    dress, shoe = data.item_index["d-red"], data.item_index["shoe"]
    # windows start on days 51 and 21; the dress is on sale from day 40 (40 days before
    # its first sale); the shoe, never sold in a catalog imported after the log, is on
    # sale in no past window
    assert {start - to_days(START) for start, _ in seen} == {51.0, 21.0}
    for start, valid in seen:
        assert (dress in valid) == (start >= to_days(START) + 40)
        assert shoe not in valid
