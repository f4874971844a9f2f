"""Events, strategies, rules and the service on a small database (no CNN, no photos)."""

from __future__ import annotations

import csv
import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from recommend_synth import CATEGORIES

from vitrine.catalog.database import make_engine, migrate
from vitrine.catalog.store import CatalogStore, FeatureRecord, ImageRecord, ProductRecord
from vitrine.config import load_settings
from vitrine.recommend import model_file, serving
from vitrine.recommend.data import History
from vitrine.recommend.event_store import EventColumns
from vitrine.recommend.events import EventError, event_weights, make_event
from vitrine.recommend.hybrid import Hybrid
from vitrine.recommend.responses import cached_list
from vitrine.recommend.rules import RuleError, Rules, candidate_mask, reshape
from vitrine.recommend.service import RecommendationService, UnknownItemError
from vitrine.recommend.strategies import Strategy, StrategyError

T0 = datetime(2024, 3, 1, tzinfo=UTC)


def test_event_validation_names_the_problem() -> None:
    w = event_weights()
    ok = make_event({"user_id": "u", "product_id": "p", "type": "view"}, w)
    assert ok.event_key.startswith("nk:") and ok.ts.tzinfo is not None
    for data, message in [
        ({"product_id": "p", "type": "view"}, "user_id is required"),
        ({"user_id": "u", "product_id": "p", "type": "like"}, "unknown event type 'like'"),
        (
            {"user_id": "u", "product_id": "p", "type": "view", "timestamp": "yesterday"},
            "not an ISO date",
        ),
        ({"user_id": "u", "product_id": "p", "type": "view", "price": -1}, "price"),
        ({"user_id": "u" * 200, "product_id": "p", "type": "view"}, "longer than"),
    ]:
        with pytest.raises(EventError, match=message):
            make_event(data, w)
    custom = event_weights("wishlist=3, purchase=10")
    assert custom["wishlist"] == 3 and custom["purchase"] == 10 and custom["view"] == 1
    with pytest.raises(EventError, match="not a number"):
        event_weights("wishlist=lots")
    e1 = make_event({"user_id": "u", "product_id": "p", "type": "view", "event_id": "e1"}, w)
    assert e1.event_key == "id:e1"
    same_day = {"user_id": "u", "product_id": "p", "type": "purchase", "timestamp": "2024-01-01"}
    assert make_event(same_day, w).event_key != make_event(same_day, w, occurrence=1).event_key


@pytest.fixture()
def shop(tmp_path: Path) -> RecommendationService:
    """30 products in 3 categories with clustered embeddings, 40 loyal customers."""
    engine = make_engine(f"sqlite:///{tmp_path / 'v.db'}")
    migrate(engine)
    store = CatalogStore(engine)
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(3, 16)) * 3
    for c, cat in enumerate(CATEGORIES):
        for j in range(10):
            pid = f"{cat[0]}{j}"
            product = ProductRecord(
                pid,
                f"{cat} {j}",
                price=10.0 + j,
                attributes={"category": cat, "colour": ("Black", "Red")[j % 2]},
            )
            image = ImageRecord(
                pid,
                f"h{pid}",
                f"k{pid}",
                "jpeg",
                10,
                10,
                100,
                features=[
                    FeatureRecord(
                        "embedding", "test-model", vector=centres[c] + rng.normal(size=16)
                    ),
                    FeatureRecord("color", "features-1", vector=rng.random(8)),
                ],
            )
            store.save_product(product, [image], replace_images=True)
    settings = load_settings(env={}).with_overrides(home=tmp_path, recommend_retrain_minutes=0)
    service = RecommendationService(settings, engine, store)
    rows = []
    for u in range(40):
        cat = CATEGORIES[u % 3]
        for j in range(4):
            rows.append(
                {
                    "user_id": f"u{u}",
                    "product_id": f"{cat[0]}{(u + j) % 10}",
                    "type": "purchase",
                    "timestamp": T0 + timedelta(days=u % 20 + j),
                }
            )
    service.add_events(rows)
    strategy = Strategy("hybrid", "hybrid", params={"windows": 1, "label_days": 5})
    service.strategies.put(strategy)
    service.strategies.put(Strategy("default", "als"))
    service.train()
    return service


def test_events_are_idempotent_and_import_reports_bad_rows(
    shop: RecommendationService, tmp_path: Path
) -> None:
    before = shop.events.count()
    history = len(shop.history("u1"))
    added, duplicates = shop.add_events(
        [
            {"user_id": "u1", "product_id": "D1", "type": "view", "event_id": "x1"},
            {"user_id": "u1", "product_id": "D1", "type": "view", "event_id": "x1"},
        ]
    )
    assert len(added) == 1 and duplicates == 1
    # events are applied before they are stored; a duplicate is taken back out
    assert len(shop.history("u1")) == history + 1
    listed = shop.recommend_user("u1", k=5).items
    added, duplicates = shop.add_events(
        [{"user_id": "u1", "product_id": "D1", "type": "view", "event_id": "x1"}]
    )
    assert len(added) == 0 and duplicates == 1 and len(shop.history("u1")) == history + 1
    assert shop.recommend_user("u1", k=5).items == listed
    with pytest.raises(EventError, match="event 1: unknown event type"):
        shop.add_events(
            [
                {"user_id": "u", "product_id": "D1", "type": "view"},
                {"user_id": "u", "product_id": "D1", "type": "zap"},
            ]
        )
    assert shop.events.count() == before + 1  # the bad batch wrote nothing
    path = tmp_path / "log.csv"
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["t_dat", "customer_id", "article_id", "price"])
        w.writerow(["2024-05-01", "c1", "0001", "0.1"])
        w.writerow(["2024-05-01", "c1", "0001", "0.1"])  # a second item: kept
        w.writerow(["not a date", "c2", "0002", "0.1"])
        w.writerow(["2024-05-02", "", "0003", "0.1"])
    columns = EventColumns(
        user="customer_id", item="article_id", time="t_dat", type_value="purchase", price="price"
    )
    report = shop.import_events(path, columns)
    assert (report.rows, report.added, len(report.rejected)) == (4, 2, 2)
    assert report.rejected[0][0] == 4 and "ISO date" in report.rejected[0][1]
    assert "user_id is required" in report.rejected[1][1]
    assert shop.import_events(path, columns).added == 0
    with pytest.raises(ValueError, match="no column 'user'"):
        shop.import_events(path, EventColumns(user="user", item="article_id", type_value="view"))


def test_user_recommendations_are_explained_and_follow_new_events(
    shop: RecommendationService,
) -> None:
    result = shop.recommend_user("u0", k=5)  # u0 buys dresses
    assert result.strategy == "default" and len(result.items) == 5 and len(result.id) == 32
    assert all(i.explanation["text"] for i in result.items)
    # a brand-new customer looks at bags: the next answer is about bags, no retraining
    assert shop.recommend_user("new", k=5, strategy="visual").fallback
    shop.add_events([{"user_id": "new", "product_id": f"B{j}", "type": "view"} for j in range(3)])
    result = shop.recommend_user("new", k=5, strategy="visual")
    assert [i.product_id[0] for i in result.items].count("B") >= 4
    assert "looks like" in result.items[0].explanation["text"]
    hybrid = shop.recommend_user("u1", k=5, strategy="hybrid")
    assert len(hybrid.items) == 5


def test_product_session_trending_and_errors(shop: RecommendationService) -> None:
    similar = shop.similar("S1", k=4, weights={"embedding": 1, "color": 2})
    assert "S1" not in [i.product_id for i in similar.items]
    assert [i.product_id[0] for i in similar.items].count("S") >= 3
    assert "color" in similar.items[0].explanation["similarities"]
    comp = shop.complementary("D1", k=5)
    assert all(not i.product_id.startswith("D") for i in comp.items)
    trending = shop.trending(k=3, category="Shoes")
    assert trending.items and all(i.product_id.startswith("S") for i in trending.items)
    session = shop.recommend_session(["B1", "B2", "nope"], k=3, strategy="visual")
    assert session.extra["unknown_products"] == ["nope"]
    with pytest.raises(UnknownItemError):
        shop.similar("nope")
    with pytest.raises(UnknownItemError):
        shop.trending(category="Hats")
    with pytest.raises(StrategyError, match="unknown strategy 'nope'"):
        shop.recommend_user("u0", strategy="nope")
    with pytest.raises(ValueError, match="invalid filter"):
        shop.recommend_user("u0", filters=["colour"])


def test_rules_reshape_lists(shop: RecommendationService) -> None:
    data = shop.models.data
    history = shop.history("u0")
    bought = {data.items[i] for i in history.items}
    rules = Rules(exclude_purchased=True, price_max=14, filters=["colour=Black"])
    mask = candidate_mask(rules, data, history)
    allowed = {data.items[i] for i in np.flatnonzero(mask)}
    assert allowed and not allowed & bought
    assert all(data.attributes[data.item_index[p]]["colour"] == "Black" for p in allowed)
    assert all(data.price[data.item_index[p]] <= 14 for p in allowed)
    ranked = list(range(30))  # D0..D9, S0..S9, B0..B9 in catalog order
    by_cat = reshape(Rules(max_per_category=2), data, ranked, 6)
    assert [data.items[i][0] for i in by_cat] == ["B", "B", "D", "D", "S", "S"]
    boosted = reshape(Rules(boost={"category=Shoes": 10}), data, ranked, 3)
    assert all(data.items[i].startswith("S") for i in boosted)
    buried = reshape(Rules(bury={"category=Bag": 100}), data, ranked, 20)
    assert not any(data.items[i].startswith("B") for i in buried)
    diverse = reshape(Rules(diversity=0.9), data, ranked, 3)
    assert len({data.items[i][0] for i in diverse}) == 3
    with pytest.raises(RuleError, match="unknown rules: colour"):
        Rules.from_json({"colour": "red"})
    with pytest.raises(RuleError, match="price_min is above price_max"):
        Rules.from_json({"price_min": 5, "price_max": 1})


def test_strategies_validate_and_split_customers(shop: RecommendationService) -> None:
    with pytest.raises(StrategyError, match="unknown algorithm"):
        Strategy.from_json("x", {"algorithm": "magic"})
    with pytest.raises(StrategyError, match="params of als"):
        Strategy.from_json("x", {"algorithm": "als", "params": {"colour": 1}})
    with pytest.raises(StrategyError, match="unknown aspect weight"):
        Strategy.from_json("x", {"algorithm": "similar", "weights": {"smell": 1}})
    with pytest.raises(StrategyError, match="name"):
        Strategy.from_json("Bad Name", {})
    ab = Strategy.from_json("ab", {"variants": {"als": 1, "visual": 1}})
    with pytest.raises(StrategyError, match="variant 'nope'"):
        shop.strategies.put(Strategy.from_json("ab2", {"variants": {"nope": 1}}))
    shop.strategies.put(ab)
    picks = [ab.variant_for(f"c{i}") for i in range(400)]
    assert picks == [ab.variant_for(f"c{i}") for i in range(400)]  # stable
    assert 150 < picks.count("als") < 250
    result = shop.recommend_user("u3", k=3, strategy="ab")
    assert result.strategy == ab.variant_for("u3")


def test_attribution_gives_ctr_and_conversion(shop: RecommendationService) -> None:
    shop.start()
    try:
        # product and session lists first: one batch of served records mixes their shapes
        product = shop.recommend_user("u5", k=1).items[0].product_id
        shop.similar(product, k=3)
        shop.recommend_session([product], k=3, strategy="visual")
        shown = [shop.recommend_user("u5", k=3, strategy="visual") for _ in range(4)]
        rec = shown[0]
        shop.add_events(
            [
                {
                    "user_id": "u5",
                    "product_id": rec.items[0].product_id,
                    "type": "click",
                    "recommendation_id": rec.id,
                    "strategy": rec.strategy,
                },
                {
                    "user_id": "u5",
                    "product_id": rec.items[0].product_id,
                    "type": "purchase",
                    "recommendation_id": rec.id,
                    "strategy": rec.strategy,
                },
            ]
        )
        stats = {s["strategy"]: s for s in shop.strategy_stats()}
    finally:
        shop.stop()
    assert stats["visual"]["served"] == 5 and stats["similar"]["served"] == 1
    assert stats["visual"]["ctr"] == pytest.approx(0.2)
    assert stats["visual"]["conversion"] == pytest.approx(0.2)


def test_event_times_outside_1970_to_tomorrow_are_refused_and_import_rejects_their_rows(
    shop: RecommendationService, tmp_path: Path
) -> None:
    w = event_weights()
    base = {"user_id": "u", "product_id": "p", "type": "view"}
    for ts, message in [
        ("0001-01-01T00:00:00", "timestamp 0001-01-01T00:00:00 is before 1970-01-01"),
        (datetime(1, 1, 1), "timestamp 0001-01-01T00:00:00 is before 1970-01-01"),
        ("1969-12-31T23:59:59Z", "before 1970-01-01"),
        ("0001-01-01T00:00:00+01:00", "before 1970-01-01"),  # before year 1 in UTC
        ("9999-12-31T23:59:59Z", "9999-12-31T23:59:59Z is more than 1 day in the future"),
        ("9999-12-31T23:59:59-05:00", "in the future"),  # after year 9999 in UTC
        ((datetime.now(UTC) + timedelta(days=2)).isoformat(), "in the future"),
    ]:
        with pytest.raises(EventError, match=message):
            make_event({**base, "timestamp": ts}, w)
    assert make_event({**base, "timestamp": "1970-01-01T00:00:00"}, w).ts == datetime(
        1970, 1, 1, tzinfo=UTC
    )
    soon = datetime.now(UTC) + timedelta(hours=12)  # a client's clock a little ahead
    assert make_event({**base, "timestamp": soon.isoformat()}, w).ts == soon
    with pytest.raises(EventError, match="event 1: timestamp 0001-01-01T00:00:00 is before"):
        shop.add_events(
            [
                {**base, "product_id": "D1"},
                {**base, "product_id": "D1", "timestamp": "0001-01-01T00:00:00"},
            ]
        )
    path = tmp_path / "times.csv"
    path.write_text(
        "t,customer_id,article_id\n"
        "2024-05-01,c1,D1\n"
        "0001-01-01,c1,D2\n"
        "9999-12-31T23:59:59Z,c2,D3\n"
        "2024-05-02,c2,D4\n"
    )
    columns = EventColumns(user="customer_id", item="article_id", time="t", type_value="view")
    report = shop.import_events(path, columns)
    assert (report.rows, report.added) == (4, 2)
    assert [line for line, _ in report.rejected] == [3, 4]
    assert "before 1970-01-01" in report.rejected[0][1]
    assert "in the future" in report.rejected[1][1]


def test_stored_events_with_absurd_times_never_stop_training(
    shop: RecommendationService, caplog: pytest.LogCaptureFixture
) -> None:
    """Rows written around validation (an older version, SQL by hand) are left out and
    counted; training and loading go on."""
    from sqlalchemy import text

    from vitrine.catalog.models import Event
    from vitrine.recommend.loading import load_dataset

    good = shop.events.count()
    bad = [datetime(1, 1, 1), datetime(9999, 12, 31, 23, 59, 59), datetime(1969, 12, 31)]
    with shop.engine.begin() as conn:
        conn.execute(
            Event.__table__.insert(),
            [
                {
                    "event_key": f"bad-{n}",
                    "user_id": "u1",
                    "product_id": "D1",
                    "type": "purchase",
                    "ts": ts,
                }
                for n, ts in enumerate(bad)
            ],
        )
        conn.execute(
            text(
                "INSERT INTO events (event_key, user_id, product_id, type, ts, created_at) "
                "VALUES ('bad-text', 'u1', 'D1', 'purchase', 'not a time', '2024-01-01')"
            )
        )
    with caplog.at_level("WARNING"):
        data = load_dataset(shop.store, shop.events, shop.weights)
    assert data.skipped_events == 4 and len(data.ev_day) == good
    assert "left out 4 stored events" in caplog.text
    models = shop.train()
    assert models.data.skipped_events == 4 and len(models.data.ev_day) == good
    assert shop.recommend_user("u1", k=4).items


def test_models_are_saved_and_reloaded(shop: RecommendationService) -> None:
    fresh = RecommendationService(shop.settings, shop.engine, shop.store)
    loaded = fresh.load_or_train()
    assert loaded.fingerprint == shop.models.fingerprint
    assert loaded.trained_at == shop.models.trained_at  # loaded from disk, not retrained
    assert [i.product_id for i in fresh.recommend_user("u2", k=4).items] == [
        i.product_id for i in shop.recommend_user("u2", k=4).items
    ]


def test_loaded_models_map_their_arrays_and_serve_as_trained(
    shop: RecommendationService, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every array out of band (mapped, read-only): serving, new events, the hybrid and a
    catalog extended after training work on them as on the trained set."""
    monkeypatch.setattr(model_file, "MAPPED_MIN_BYTES", 0)
    shop.models.save(shop.model_dir)
    fresh = RecommendationService(shop.settings, shop.engine, shop.store)
    loaded = fresh.load_or_train()
    assert loaded.trained_at == shop.models.trained_at
    assert not loaded.data.embeddings.flags.writeable  # a view of the mapped file
    for strategy in ("default", "hybrid"):
        assert [i.product_id for i in fresh.recommend_user("u2", k=6, strategy=strategy).items] == [
            i.product_id for i in shop.recommend_user("u2", k=6, strategy=strategy).items
        ]
    event = {"user_id": "u2", "product_id": "D5", "type": "purchase"}
    fresh.add_events([event])
    assert fresh.recommend_user("u2", k=6, strategy="hybrid").items
    assert list(fresh.recommend_many(["u1", "u2", "nobody"], 5, "hybrid", workers=1))
    vector = np.ones(16)
    _add_new_shoes(shop.store, vector)
    fresh.catalog_changed(["NEW"])
    fresh.publish_catalog()
    assert fresh.recommend_user("u1", k=6, strategy="hybrid").items


def test_training_in_a_child_process_swaps_in_its_saved_models(
    shop: RecommendationService,
) -> None:
    before = shop.models
    url = str(shop.engine.url)  # the child opens the fixture's database
    shop.lifecycle.settings = shop.settings.with_overrides(database_url=url)
    trained = shop.lifecycle.train_separately()
    assert shop.models is trained and trained.trained_at > before.trained_at
    assert trained.fingerprint == before.fingerprint
    assert shop.recommend_user("u2", k=4, strategy="hybrid").items


def test_a_catalog_changed_while_the_server_was_down_is_not_served_from_old_models(
    shop: RecommendationService,
) -> None:
    """A product made unavailable (or edited) between two runs of the server changes no
    count: the saved models must still not be taken for current."""
    served = {i.product_id for i in shop.recommend_user("u2", k=10).items}
    gone = sorted(served)[0]
    assert shop.store.update_product(gone, {"available": False})
    fresh = RecommendationService(shop.settings, shop.engine, shop.store)
    loaded = fresh.load_or_train()
    assert loaded.fingerprint != shop.models.fingerprint
    assert loaded.trained_at > shop.models.trained_at  # retrained, not loaded
    assert gone not in {i.product_id for i in fresh.recommend_user("u2", k=10).items}


def test_batch_in_worker_processes_matches_one_process(shop: RecommendationService) -> None:
    ids = [f"u{i % 40}" for i in range(2100)] + ["nobody", "u3"]
    one = list(shop.recommend_many(ids, 5, "als", workers=1))
    two = list(shop.recommend_many(ids, 5, "als", workers=2))
    assert one == two and [u for u, _ in two] == ids
    assert all(len(items) == 5 for _, items in two)
    single = [i.product_id for i in shop.recommend_user("u3", k=5, strategy="als").items]
    assert two[-1][1] == single


def test_hybrid_batch_ranks_many_customers_as_one_by_one(shop: RecommendationService) -> None:
    models = shop.models
    hybrid = models.algorithms[shop.strategies.get("hybrid").model_key]  # type: ignore[union-attr]
    assert isinstance(hybrid, Hybrid) and hybrid.model is not None
    ids = [f"u{i}" for i in range(40)] + ["nobody"]
    requests = []
    for user_id in ids:
        history = shop.history(user_id)
        requests.append((history, shop.computer.now(models, history), None))
    many = hybrid.recommend_explained_many(requests, 24)
    for (history, now, _), (items, scores, explain) in zip(requests, many, strict=True):
        one_items, one_scores, one_explain = hybrid.recommend_explained(history, 24, now)
        assert items.tolist() == one_items.tolist()
        assert np.array_equal(scores, one_scores)
        assert [explain(i) for i in items[:3].tolist()] == [
            one_explain(i) for i in one_items[:3].tolist()
        ]
    batch = dict(shop.recommend_many([*ids, "u5"], 8, "hybrid", workers=1))
    for user_id in ids:
        single = [i.product_id for i in shop.recommend_user(user_id, k=8, strategy="hybrid").items]
        assert batch[user_id] == single, user_id


def test_precomputed_hybrid_lists_are_the_lists_computed_one_by_one(
    shop: RecommendationService, monkeypatch: pytest.MonkeyPatch
) -> None:
    shop.strategies.put(Strategy("default", "hybrid", params={"windows": 1, "label_days": 5}))
    models = shop.train()
    assert len(models.precomputed) == 41  # 40 customers and the no-history list
    computer = shop.computer
    chosen = computer.strategy(None)
    for key, kept in models.precomputed.items():
        history = models.history(key[0]) if key[0] else History.empty()
        items, fallback = computer.compute_items(
            chosen, history, key[2], chosen.rules, None, None, models
        )
        assert kept.items_json == cached_list(items, fallback).items_json, key[0]

    monkeypatch.setattr(serving, "PRECOMPUTE_BLOCK", 5)
    shop.user_lists.settings = shop.settings.with_overrides(recommend_precompute_seconds=1e-9)
    assert len(shop.user_lists.precompute(models)) == 5  # one block, then out of time


def _listed(result: object) -> list[tuple[str, str, dict]]:
    return [(i.product_id, i.source, i.explanation) for i in result.items]  # type: ignore[attr-defined]


def test_cached_lists_are_exact_and_invalidated_by_events_and_swaps(
    shop: RecommendationService,
) -> None:
    models = shop.models
    # lists precomputed at training are what a request computes (a preview is never cached)
    assert models.precomputed
    for user in ("u4", "u5", "nobody"):
        served = shop.recommend_user(user, k=12)
        computed = shop.recommend_user(user, k=12, preview=shop.strategy(None, user))
        assert _listed(served) == _listed(computed)
    assert shop.lists_served == 3  # all precomputed
    hits = shop.lists_served
    first = shop.recommend_user("u6", k=5, strategy="hybrid")
    again = shop.recommend_user("u6", k=5, strategy="hybrid")
    assert shop.lists_served == hits + 1 and again.id != first.id  # each response its own id
    assert _listed(again) == _listed(first)
    # an event of this customer: the very next list is computed from the new history
    shop.add_events(
        [{"user_id": "u6", "product_id": f"B{j}", "type": "add_to_cart"} for j in range(5)]
    )
    after = shop.recommend_user("u6", k=5, strategy="hybrid")
    assert shop.lists_served == hits + 1
    fresh = shop.recommend_user("u6", k=5, preview=shop.strategy("hybrid"))
    assert _listed(after) == _listed(fresh) and _listed(after) != _listed(first)
    # another customer's event leaves this list cached; a filter is a different list
    shop.add_events([{"user_id": "u7", "product_id": "B1", "type": "view"}])
    shop.recommend_user("u6", k=5, strategy="hybrid")
    assert shop.lists_served == hits + 2
    filtered = shop.recommend_user("u6", k=5, strategy="hybrid", filters=["colour=Red"])
    assert all(
        shop.models.data.attributes[shop.models.data.item_index[i.product_id]]["colour"] == "Red"
        for i in filtered.items
    )
    # a model swap: nothing of the old set is served
    shop.train()
    assert shop.models is not models and len(shop.user_lists.lists) == 0
    body = json.loads(shop.recommend_user("u6", k=5, strategy="hybrid").to_body())
    assert body["strategy"] == "hybrid" and len(body["items"]) == 5
    assert all("explanation" in i for i in body["items"])


def _add_new_shoes(store: CatalogStore, vector: np.ndarray, **attributes: str) -> None:
    """A product "NEW" in the Shoes category with one photo of this embedding."""
    image = ImageRecord(
        "NEW",
        "hNEW",
        "kNEW",
        "jpeg",
        10,
        10,
        100,
        features=[FeatureRecord("embedding", "test-model", vector=vector)],
    )
    record = ProductRecord(
        "NEW", "Shoes new", price=12.0, attributes={"category": "Shoes", **attributes}
    )
    store.save_product(record, [image], replace_images=True)


def test_catalog_changes_after_training_are_served_without_retraining(
    shop: RecommendationService,
) -> None:
    trained = shop.models
    store = shop.store
    _, vectors = store.primary_vectors("embedding", "test-model", ["S1"])
    rng = np.random.default_rng(5)
    _add_new_shoes(store, vectors[0] + 0.01 * rng.normal(size=16), colour="Red")
    store.save_product(
        ProductRecord(
            "S2", "Shoes 2", price=12.0, available=False, attributes={"category": "Shoes"}
        ),
        [],
        replace_images=False,
    )
    store.delete_product("S3")
    before = shop.recommend_user("u1", k=10, strategy="visual")  # a Shoes customer
    shop.catalog_changed(["NEW", "S2", "S3"])
    models = shop.models
    assert models.base is trained and models.catalog_generation == 1
    assert models.data.item_index["NEW"] >= trained.data.n_items  # snapshot indices kept
    assert models.data.categories[models.data.category[models.data.item_index["NEW"]]] == "Shoes"
    assert [i.product_id for i in shop.similar("NEW", k=1).items] == ["S1"]
    assert "NEW" in [i.product_id for i in shop.similar("S1", k=3).items]
    for strategy in ("visual", "hybrid", None):
        for user in ("u1", "u4", "u7", "nobody"):
            served = shop.recommend_user(user, k=10, strategy=strategy)
            assert not {"S2", "S3"} & {i.product_id for i in served.items}, (strategy, user)
    after = shop.recommend_user("u1", k=10, strategy="visual")
    assert "NEW" in [i.product_id for i in after.items] and after.items != before.items
    with pytest.raises(UnknownItemError):
        shop.similar("S3")
    # a retrain learns the catalog as it is now: nothing left to extend
    shop.train()
    data = shop.models.data
    assert shop.models.catalog_generation == 0 and data.item_index["S3"] >= data.n_catalog


def test_under_load_an_older_catalog_generation_is_served_and_refreshed_behind(
    shop: RecommendationService, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = shop.recommend_user("u1", k=10, strategy="visual")  # a Shoes customer
    store = shop.store
    _, vectors = store.primary_vectors("embedding", "test-model", ["S1"])
    _add_new_shoes(store, vectors[0])
    shop.catalog.refresh_s = 0.0  # the previous generation's lists are stale at once
    shop.catalog_changed(["NEW"])
    assert shop.models.catalog_generation == 1

    monkeypatch.setattr(shop.user_lists, "busy", lambda: True)  # every core computing lists
    stale = shop.recommend_user("u1", k=10, strategy="visual")
    assert [i.product_id for i in stale.items] == [i.product_id for i in first.items]
    assert shop.list_stats()["stale_under_load"] == 1
    for _ in range(200):  # the background refresher recomputes it
        if not shop.user_lists.pending:
            break
        time.sleep(0.01)
    fresh = shop.recommend_user("u1", k=10, strategy="visual")
    assert "NEW" in [i.product_id for i in fresh.items]

    # a product deleted since is never served, busy or not
    gone = fresh.items[0].product_id
    store.delete_product(gone)
    shop.catalog_changed([gone])
    assert gone not in [
        i.product_id for i in shop.recommend_user("u1", k=10, strategy="visual").items
    ]

    monkeypatch.undo()  # idle cores: a stale list is computed afresh in the request
    store.save_product(
        ProductRecord(
            "NEW", "Shoes new", price=12.0, available=True, attributes={"category": "Dress"}
        ),
        [],
        replace_images=False,
    )
    shop.catalog_changed(["NEW"])
    before = shop.list_stats()
    shop.recommend_user("u1", k=10, strategy="visual")
    after = shop.list_stats()
    assert after["computed"] == before["computed"] + 1
    assert after["stale_under_load"] == before["stale_under_load"]
