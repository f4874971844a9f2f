"""The recommenders on synthetic shops: each must find the structure put there."""

from __future__ import annotations

import numpy as np
import pytest
from recommend_synth import CATEGORIES, catalog, events, shop

from vitrine.recommend.cf import ALS, Cooccurrence
from vitrine.recommend.complementary import Complementary
from vitrine.recommend.data import CatalogProduct, Dataset, History, to_days
from vitrine.recommend.evaluate import average_precision, evaluate, make_split, ndcg
from vitrine.recommend.events import DEFAULT_EVENT_WEIGHTS
from vitrine.recommend.hybrid import Hybrid
from vitrine.recommend.popularity import Popularity, Rebuy
from vitrine.recommend.visual import VisualProfile, VisualSimilar, weighted_kmeans


def category_of(data: Dataset, items: np.ndarray) -> list[str]:
    return [data.attributes[int(i)]["category"] for i in items]


def one_user(data: Dataset, pids: list[str], day: float, purchases: bool = True) -> History:
    rows = [data.item_index[p] for p in pids]
    n = len(rows)
    return History(
        np.array(rows, np.int32),
        np.full(n, day),
        np.full(n, 8.0, np.float32),
        np.full(n, purchases),
    )


def test_metrics_known_values() -> None:
    assert average_precision([1, 2, 3], {1, 3}, 12) == pytest.approx((1 + 2 / 3) / 2)
    assert average_precision([5, 6], {1}, 12) == 0.0
    assert average_precision([1], {1, 2, 3}, 1) == 1.0  # denominator min(|relevant|, k)
    assert ndcg([1, 2], {1}, 12) == pytest.approx(1.0)
    assert ndcg([2, 1], {1}, 12) == pytest.approx(1 / np.log2(3))


def test_popularity_decays_and_filters_by_category() -> None:
    data = catalog()
    old = [("a", "D000", "purchase", __import__("recommend_synth").START, None)] * 1
    rows = [(f"u{i}", "D001", "purchase", old[0][3], None) for i in range(5)]
    late = old[0][3].replace(month=3)
    rows += [(f"v{i}", "S002", "purchase", late, None) for i in range(2)]
    d = data.with_events(rows, DEFAULT_EVENT_WEIGHTS)
    alltime = Popularity(half_life_days=None).fit(d)
    assert d.items[int(alltime.recommend(History.empty(), 1, d.last_day)[0][0])] == "D001"
    trending = Popularity(half_life_days=7).fit(d)
    assert d.items[int(trending.recommend(History.empty(), 1, d.last_day)[0][0])] == "S002"
    items, _ = trending.trending(5, category="Dress")
    assert category_of(d, items) == ["Dress"]
    assert len(trending.trending(5, category="Nope")[0]) == 0
    assert "trending in Shoes" in trending.explain(History.empty(), d.item_index["S002"], 0)["text"]


def test_als_learns_category_taste() -> None:
    data = shop(n_users=90, per_user=10)
    als = ALS(factors=8, iterations=10, regularization=0.1).fit(data)
    hits = total = 0
    for user, history in enumerate(data.histories()):
        favourite = CATEGORIES[int(data.users[user][1:]) % 3]
        items, _ = als.recommend(history, 5, data.last_day + 1)
        hits += sum(c == favourite for c in category_of(data, items))
        total += len(items)
    assert hits / total > 0.7  # random would be 1/3


def test_als_real_time_user_vector_follows_new_events() -> None:
    data = shop(n_users=90, per_user=10)
    als = ALS(factors=8, iterations=10, regularization=0.1).fit(data)
    shoes = one_user(data, ["S000", "S001", "S002"], data.last_day)
    items, _ = als.recommend(shoes, 5, data.last_day + 1)
    assert category_of(data, items).count("Shoes") >= 4
    bags = one_user(data, ["B000", "B001", "B002", "B003", "B004", "B005"], data.last_day)
    items, _ = als.recommend(bags, 5, data.last_day + 1)
    assert category_of(data, items).count("Bag") >= 4


def test_cooccurrence_finds_bought_together() -> None:
    data = catalog()
    t = __import__("recommend_synth").START
    rows = [(f"u{i}", "D005", "purchase", t, None) for i in range(6)]
    rows += [(f"u{i}", "B007", "purchase", t, None) for i in range(6)]
    rows += [("x", "S001", "purchase", t, None), ("x", "D009", "purchase", t, None)]
    d = data.with_events(rows, DEFAULT_EVENT_WEIGHTS)
    cooc = Cooccurrence().fit(d)
    items, _ = cooc.recommend(one_user(d, ["D005"], 0), 3, d.last_day)
    assert d.items[int(items[0])] == "B007"
    assert "often bought with" in cooc.explain(one_user(d, ["D005"], 0), int(items[0]), 0)["text"]


def test_visual_profile_is_multi_interest() -> None:
    data = catalog()
    d = data.with_events([], DEFAULT_EVENT_WEIGHTS)
    profile = VisualProfile(max_interests=3).fit(d)
    history = one_user(d, ["D001", "D002", "D003", "S004", "S005"], 10)
    items, _ = profile.recommend(history, 10, 11)
    cats = category_of(d, items)
    assert "Dress" in cats and "Shoes" in cats and "Bag" not in cats
    reason = profile.explain(history, int(items[0]), 11)
    assert reason["kind"] == "looks_like" and "you bought" in reason["text"]


def test_weighted_kmeans_separates_clusters() -> None:
    rng = np.random.default_rng(0)
    a = rng.normal([5, 0, 0], 0.1, (10, 3))
    b = rng.normal([0, 5, 0], 0.1, (4, 3))
    x = np.vstack([a, b]).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    _, mass, labels = weighted_kmeans(x, np.ones(14), 2)
    assert len(set(labels[:10])) == 1 and len(set(labels[10:])) == 1
    assert labels[0] != labels[-1]
    assert sorted(mass) == [4, 10]


def test_visual_similar_aspect_weights_change_the_order() -> None:
    dim = 4
    products = [CatalogProduct(p, p, {"category": "X"}) for p in ("q", "emb", "col")]
    emb = {
        "q": np.array([1, 0, 0, 0.0]),
        "emb": np.array([1, 0.1, 0, 0]),
        "col": np.array([1, 0.6, 0, 0]),
    }
    colors = {
        "q": np.array([1, 0, 0.0]),
        "emb": np.array([0, 1, 0.0]),
        "col": np.array([1, 0.05, 0.0]),
    }
    d = Dataset.from_catalog(products, emb, {"color": colors}, embedding_dims=0)
    d = d.with_events([], DEFAULT_EVENT_WEIGHTS)
    sim = VisualSimilar().fit(d)
    by_embedding, _ = sim.similar_items(0, 2, 0)
    assert [d.items[int(i)] for i in by_embedding] == ["emb", "col"]
    by_color, _ = sim.similar_items(0, 2, 0, weights={"embedding": 0.1, "color": 5})
    assert [d.items[int(i)] for i in by_color] == ["col", "emb"]
    assert dim == 4


def test_complementary_crosses_categories_and_falls_back_visually() -> None:
    data = catalog()
    t = __import__("recommend_synth").START
    rows = []
    for i in range(5):
        rows += [
            (f"u{i}", "D001", "purchase", t, None),
            (f"u{i}", "S001", "purchase", t, None),
            (f"u{i}", "D002", "purchase", t, None),
        ]
    d = data.with_events(rows, DEFAULT_EVENT_WEIGHTS)
    comp = Complementary().fit(d)
    items, _ = comp.similar_items(d.item_index["D001"], 5, 0)
    assert [d.items[int(i)] for i in items] == ["S001"]  # D002 is the same category
    # D020 was never bought: it borrows the complements of the dresses it looks like.
    cold = d.item_index["D020"]
    items, _ = comp.similar_items(cold, 5, 0)
    assert "S001" in [d.items[int(i)] for i in items]
    reason = comp.explain(one_user(d, ["D020"], 0), d.item_index["S001"], 0)
    assert "look like" in reason["text"]


def test_rebuy_orders_by_recency() -> None:
    data = shop()
    history = History(
        np.array([1, 2], np.int32),
        np.array([0.0, 50.0]),
        np.array([8.0, 8.0], np.float32),
        np.array([True, True]),
    )
    items, _ = Rebuy().fit(data).recommend(history, 5, 60)
    assert items.tolist() == [2, 1]


def test_hybrid_trains_and_beats_popularity_on_a_learnable_shop() -> None:
    data = catalog()
    rows = events(data, n_users=90, per_user=12, days=120)
    d = data.with_events(rows, DEFAULT_EVENT_WEIGHTS)
    split = to_days(__import__("recommend_synth").START) + 100
    algorithms = {
        "popularity_4w": lambda: Popularity(half_life_days=None, window_days=28.0),
        "hybrid": lambda: Hybrid(
            label_days=20,
            windows=2,
            als_params={"factors": 8, "iterations": 5},
            sources={"als": 20, "visual_profile": 20, "popularity": 10, "rebuy": 10},
        ),
    }
    results, facts = evaluate(d, split, 12, algorithms)
    scores = {r.name: r.metrics["map@12"] for r in results}
    assert facts["test_users"] > 20
    assert results[1].extra["training"]["groups"] >= 5
    assert scores["hybrid"] > scores["popularity_4w"]


def test_split_marks_cold_items() -> None:
    d = shop()
    split = make_split(d, d.ev_day[len(d.ev_day) // 2])
    seen_before = set(split.train.ev_item.tolist())
    assert all(split.cold[i] != (i in seen_before) for i in range(d.n_items))


def test_split_catalog_holds_the_products_on_sale_at_the_split() -> None:
    d = shop()
    d.created_day = np.full(d.n_catalog, d.last_day + 30)  # a catalog imported after the log
    split_day = float(d.ev_day[len(d.ev_day) // 2])
    split = make_split(d, split_day, lead_days=5.0)
    first: dict[int, float] = {}
    for item, day in zip(d.ev_item.tolist(), d.ev_day.tolist(), strict=True):
        first.setdefault(item, day)
    expected = [i in first and first[i] - 5.0 <= split_day for i in range(d.n_catalog)]
    assert split.catalog.tolist() == expected
    assert 0 < sum(expected) < d.n_catalog  # some launched later, some never sold
