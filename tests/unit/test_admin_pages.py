"""Admin pages through FastAPI's test client: the recommendation pages on a small shop served
by the real recommendation service, and the catalog / analytics pages' data."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from vitrine.admin.recommendations import ServiceRecommendations
from vitrine.api.app import create_app
from vitrine.catalog.models import Label, RecommendationEvaluation
from vitrine.catalog.store import FeatureRecord, ImageRecord, ProductRecord
from vitrine.config import load_settings
from vitrine.recommend.strategies import Strategy as EngineStrategy
from vitrine.vision.features import FEATURE_VERSION

PASSWORD = "correct horse battery"
ASPECTS = ("color", "texture", "shape", "pattern", "embedding")
T0 = datetime.now(UTC) - timedelta(days=20)


@pytest.fixture()
def app_client(tmp_path: Path) -> Iterator[tuple[Any, TestClient]]:
    settings = load_settings(env={}).with_overrides(
        home=tmp_path / "home", admin_recall_check_minutes=0
    )
    app = create_app(settings, warm=False)
    admin = app.state.admin
    admin.users.create("alice", PASSWORD, "admin")
    admin.vitrine.store.upsert_products(
        [ProductRecord(id=pid, title=f"product {pid}") for pid in "abcd"]
    )
    with TestClient(app) as client:
        page = client.get("/admin/login")
        token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)  # type: ignore[union-attr]
        client.post(
            "/admin/login", data={"username": "alice", "password": PASSWORD, "csrf_token": token}
        )
        yield app, client


def csrf(client: TestClient) -> dict[str, str]:
    page = client.get("/admin/upload")
    return {"X-CSRF-Token": re.search(r'name="csrf-token" content="([^"]+)"', page.text).group(1)}  # type: ignore[union-attr]


def test_recommendation_pages_say_when_the_service_is_missing(app_client: Any) -> None:
    app, client = app_client
    assert isinstance(app.state.admin.backends.recommendations, ServiceRecommendations)
    app.state.admin.backends.recommendations = None  # a build without the service
    for path in ("/admin/recommendations", "/admin/analytics"):
        assert "recommendation service is not installed" in client.get(path).text


@pytest.fixture()
def shop_client(tmp_path: Path) -> Iterator[tuple[Any, TestClient]]:
    """A small shop through the real recommendation service: 20 products in two categories
    (embeddings clustered by category, random colour vectors), 30 customers' purchases."""
    settings = load_settings(env={}).with_overrides(
        home=tmp_path / "home", admin_recall_check_minutes=0, recommend_retrain_minutes=0
    )
    app = create_app(settings, warm=False)
    admin = app.state.admin
    admin.users.create("alice", PASSWORD, "admin")
    store = admin.vitrine.store
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(2, 16)) * 3
    for c, cat in enumerate(("shirts", "shoes")):
        for j in range(10):
            pid = f"{('sh', 'so')[c]}{j}"
            image = ImageRecord(
                pid,
                f"h{pid}",
                f"k{pid}",
                "jpeg",
                10,
                10,
                100,
                features=[
                    FeatureRecord("embedding", "m1", vector=centres[c] + rng.normal(size=16)),
                    FeatureRecord("color", FEATURE_VERSION, vector=rng.random(8)),
                ],
            )
            record = ProductRecord(pid, f"{cat} {j}", attributes={"category": cat})
            store.save_product(record, [image], replace_images=True)
    service = admin.vitrine.recommendations
    service.add_events(
        [
            {
                "user_id": f"u{u}",
                "product_id": f"{('sh', 'sh', 'so')[u % 3]}{(u + j) % 10}",
                "type": "purchase",
                "timestamp": T0 + timedelta(days=u % 15 + j),
            }
            for u in range(30)
            for j in range(3)
        ]
    )
    service.strategies.put(EngineStrategy("hybrid", "hybrid", params={"windows": 1}))
    service.strategies.put(EngineStrategy("default", "als"))
    service.train()
    with TestClient(app) as client:
        page = client.get("/admin/login")
        token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)  # type: ignore[union-attr]
        client.post(
            "/admin/login", data={"username": "alice", "password": PASSWORD, "csrf_token": token}
        )
        yield app, client


def test_strategy_weights_change_the_side_by_side_preview(shop_client: Any) -> None:
    app, client = shop_client
    service = app.state.admin.vitrine.recommendations
    page = client.get("/admin/recommendations")
    assert page.status_code == 200 and 'name="aspect:color"' in page.text
    assert "<option selected>visual_profile</option>" in page.text  # the visual strategy's
    h = csrf(client)

    def preview(**target: str) -> list[list[str]]:
        response = client.post(
            "/admin/recommendations/preview/compare",
            data={"left": "similar", "right": "trending", **target},
            headers=h,
        )
        assert response.status_code == 200, response.text
        return [
            re.findall(r'/admin/catalog/(\w+)"', col) for col in response.text.split("<h3>")[1:]
        ]

    before = preview(product_id="sh0")
    assert len(before[0]) == 12 and "sh0" not in before[0]
    assert {p[:2] for p in before[0][:5]} == {"sh"}  # embedding neighbours: same category
    form = {f"aspect:{a}": "0" for a in ASPECTS} | {
        "aspect:color": "1",
        "algorithm": "similar",
        "fallback": "trending",
    }
    saved = client.post("/admin/recommendations/similar", data=form, headers=h)
    assert saved.status_code == 200 and "Saved." in saved.text
    assert service.strategies.get("similar").weights == {"color": 1.0}
    after = preview(product_id="sh0")
    assert after[0] != before[0]  # the left column follows the new weights
    assert after[1] == before[1]  # the other strategy is unchanged
    assert service.strategy_stats() == []  # previews are not counted as served lists

    # another algorithm and fallback chain; rules the page does not show are kept
    engine_strategy = service.strategies.get("trending")
    engine_strategy.rules.exclude_seen = True
    service.strategies.put(engine_strategy)
    form = {"algorithm": "popularity", "fallback": "similar, trending", "rule:diversity": "0.3"}
    assert client.post("/admin/recommendations/trending", data=form, headers=h).status_code == 200
    stored = service.strategies.get("trending")
    assert (stored.algorithm, stored.fallback) == ("popularity", ["similar", "trending"])
    assert stored.rules.exclude_seen and stored.rules.diversity == 0.3
    assert len(preview(customer_id="u1")[1]) == 12

    bad = client.post("/admin/recommendations/similar", data={"aspect:color": "-1"}, headers=h)
    assert bad.status_code == 422 and "color must not be negative" in bad.text
    unknown = client.post("/admin/recommendations/similar", data={"algorithm": "magic"}, headers=h)
    assert unknown.status_code == 422 and "unknown algorithm &#39;magic&#39;" in unknown.text
    missing = client.post(
        "/admin/recommendations/preview/compare",
        data={"left": "similar", "right": "trending", "product_id": "nope"},
        headers=h,
    )
    assert missing.status_code == 422 and "&#39;nope&#39; is not known" in missing.text
    product = client.get("/admin/catalog/sh0").text
    assert "not installed" not in product and "/admin/catalog/so" in product  # complements


def test_ab_test_results_and_metrics_come_from_served_lists_and_events(shop_client: Any) -> None:
    app, client = shop_client
    service = app.state.admin.vitrine.recommendations
    h = csrf(client)
    ab = client.post(
        "/admin/recommendations/ab-tests/new",
        data={"name": "t1", "a": "similar", "b": "trending", "split": "0.3"},
        headers=h,
    )
    assert ab.status_code == 200 and "t1" in ab.text and "30%" in ab.text
    for data, message in [
        ({"name": "t2", "a": "similar", "b": "similar"}, "two different strategies"),
        ({"name": "t1", "a": "similar", "b": "als"}, "already a strategy or test named"),
        ({"name": "t3", "a": "similar", "b": "t1"}, "&#39;t1&#39; is not a strategy"),
    ]:
        response = client.post("/admin/recommendations/ab-tests/new", data=data, headers=h)
        assert response.status_code == 422 and message in response.text
    clicks = {"similar": 0, "trending": 0}
    served = {"similar": 0, "trending": 0}
    for u in range(60):
        result = service.recommend_user(f"u{u}", 6, strategy="t1")
        served[result.strategy] += 1
        if result.strategy == "trending" or u % 4 == 0:  # B is clicked more often
            clicks[result.strategy] += 1
            service.add_events(
                [
                    {
                        "user_id": f"u{u}",
                        "product_id": result.items[0].product_id,
                        "type": "click",
                        "recommendation_id": result.id,
                        "strategy": result.strategy,
                    }
                ]
            )
    service.add_events(
        [{"user_id": f"u{u}", "product_id": "so3", "type": "purchase"} for u in range(5)]
    )
    assert min(served.values()) > 5  # both arms got traffic
    (test,) = ServiceRecommendations(service).ab_tests()
    assert (test["a"], test["b"], test["served_a"]) == ("similar", "trending", served["similar"])
    assert test["ctr_a"] == pytest.approx(clicks["similar"] / served["similar"])
    assert test["ctr_b"] == pytest.approx(1.0)
    assert test["ci_low"] < test["diff"] < test["ci_high"] and test["ci_low"] > 0
    page = client.get("/admin/recommendations").text
    assert f"{100 * test['diff']:.1f}%" in page

    with app.state.admin.vitrine.engine.begin() as conn:
        conn.execute(
            RecommendationEvaluation.__table__.insert().values(
                split_date=T0,
                k=12,
                params={},
                created_at=T0,
                results=[{"algorithm": "als", "ndcg@12": 0.1234, "fit_seconds": 1.0}],
            )
        )
    metrics = ServiceRecommendations(service).metrics(days=7)
    assert metrics["events_today"] == sum(clicks.values()) + 5
    assert metrics["ctr"] == pytest.approx(sum(clicks.values()) / 60)
    assert metrics["conversion"] == pytest.approx(0.0)  # the purchase was not attributed
    top = dict(metrics["top_purchased"])
    assert top["so3"] >= 5 and list(top.values()) == sorted(top.values(), reverse=True)
    assert 0 < metrics["coverage"] <= 1 and metrics["top_recommended"][0][1] > 1
    labels = {d["label"]: d["data"][-1] for d in metrics["ctr_chart"]["datasets"]}
    assert labels["trending"] == pytest.approx(1.0) and len(metrics["ctr_chart"]["labels"]) == 7
    analytics = client.get("/admin/analytics").text
    assert "ndcg@12" in analytics and "0.1234" in analytics
    overview = client.get("/admin").text
    assert "not installed" not in overview and f"{100 * metrics['ctr']:.1f}%" in overview


def test_analytics_shows_per_class_quality_from_reviewed_labels(app_client: Any) -> None:
    app, client = app_client
    engine = app.state.admin.vitrine.engine
    with engine.begin() as conn:
        for pid, value in [("a", "shirt"), ("b", "shirt"), ("c", "dress")]:
            conn.execute(
                Label.__table__.insert().values(
                    product_id=pid,
                    field="type",
                    value=value,
                    source="model",
                    confidence=0.7,
                    model_version="clf-7",
                )
            )
    for pid, value in [("a", "shirt"), ("b", "dress"), ("c", "dress")]:
        app.state.admin.vitrine.classification.feedback(pid, "type", value)
    text = client.get("/admin/analytics?field=label:type").text
    assert "clf-7" in text and "3 products whose &#39;type&#39; a person reviewed" in text
    assert 'class="diag">1<' in text and 'class="off">1<' in text  # one dress taken for a shirt
    catalog = client.get("/admin/catalog?label=type%3Ddress&min_confidence=0.9")
    assert "/admin/catalog/b" in catalog.text and "/admin/catalog/c" in catalog.text
    bad = client.get("/admin/catalog?min_confidence=lots")
    assert "is not a number" in bad.text
