"""Admin pages through FastAPI's test client: the recommendation pages against the admin's
interface to the recommendation service, and the catalog / analytics pages' data."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from vitrine.admin.ports import RecommendedItem, Strategy
from vitrine.api.app import create_app
from vitrine.catalog.models import Label
from vitrine.catalog.store import ProductRecord
from vitrine.config import load_settings
from vitrine.services.label_corrections import record_correction

PASSWORD = "correct horse battery"
ASPECTS = {"color": 0.2, "texture": 0.2, "shape": 0.2, "pattern": 0.2, "embedding": 0.2}


class InMemoryRecommendations:
    """The recommendation service's admin interface over a dict: enough to drive the pages.

    Preview ranks the catalog by a weighted sum of per-product aspect scores, so that
    changing a strategy's weights changes what it recommends.
    """

    def __init__(self, scores: dict[str, dict[str, float]]) -> None:
        self.scores = scores
        self._strategies = {
            "visual": Strategy("visual", {"visual": 1.0, "als": 0.0}, dict(ASPECTS)),
            "blend": Strategy("blend", {"visual": 0.5, "als": 0.5}, dict(ASPECTS)),
        }
        self.tests: list[dict[str, Any]] = []

    def strategies(self) -> list[Strategy]:
        return list(self._strategies.values())

    def save_strategy(self, strategy: Strategy) -> None:
        if sum(strategy.aspects.values()) == 0:
            raise ValueError("at least one aspect weight must be above 0")
        self._strategies[strategy.name] = strategy

    def preview(
        self, strategy: Strategy, *, customer_id: str | None, product_id: str | None, k: int
    ) -> list[RecommendedItem]:
        ranked = sorted(
            (
                (sum(strategy.aspects[a] * s[a] for a in strategy.aspects), pid)
                for pid, s in self.scores.items()
                if pid != product_id
            ),
            reverse=True,
        )
        return [RecommendedItem(pid, score, "weighted aspects") for score, pid in ranked[:k]]

    def ab_tests(self) -> list[dict[str, Any]]:
        return self.tests

    def start_ab_test(self, name: str, a: str, b: str, split: float) -> None:
        if a == b:
            raise ValueError("an A/B test needs two different strategies")
        self.tests.append(
            {
                "name": name,
                "a": a,
                "b": b,
                "split": split,
                "ctr_a": 0.0,
                "ctr_b": 0.0,
                "diff": 0.0,
                "ci_low": 0.0,
                "ci_high": 0.0,
            }
        )

    def metrics(self, days: int) -> dict[str, Any]:
        chart = {"type": "line", "labels": ["d1"], "datasets": [{"label": "visual", "data": [0.1]}]}
        return {
            "events_today": 42,
            "ctr": 0.05,
            "conversion": 0.01,
            "models": {"als": "als-3"},
            "ctr_chart": chart,
            "conversion_chart": chart,
            "coverage": 0.5,
            "top_recommended": [("a", 3)],
            "top_purchased": [("b", 2)],
            "offline_metrics": ["ndcg@10"],
            "offline": {"als": {"ndcg@10": 0.1234}},
        }


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
    _, client = app_client
    for path in ("/admin/recommendations", "/admin/analytics"):
        assert "recommendation service is not installed" in client.get(path).text


def test_strategy_weights_change_the_side_by_side_preview(app_client: Any) -> None:
    app, client = app_client
    backend = InMemoryRecommendations(
        {
            "a": {**dict.fromkeys(ASPECTS, 0.0), "color": 1.0, "shape": 0.5},
            "b": {**dict.fromkeys(ASPECTS, 0.0), "shape": 1.0},
            "c": dict.fromkeys(ASPECTS, 0.1),
        }
    )
    app.state.admin.backends.recommendations = backend
    page = client.get("/admin/recommendations")
    assert page.status_code == 200 and 'name="aspect:color"' in page.text
    h = csrf(client)

    def preview() -> list[list[str]]:
        response = client.post(
            "/admin/recommendations/preview/compare",
            data={"left": "visual", "right": "blend", "product_id": "d"},
            headers=h,
        )
        assert response.status_code == 200, response.text
        return [
            re.findall(r'/admin/catalog/([a-d])"', col) for col in response.text.split("<h3>")[1:]
        ]

    before = preview()
    form = {f"aspect:{a}": "0" for a in ASPECTS} | {"aspect:shape": "1", "algorithm:visual": "1"}
    saved = client.post("/admin/recommendations/visual", data=form, headers=h)
    assert saved.status_code == 200 and "Saved." in saved.text
    after = preview()
    assert before[0][0] == "a" and after[0][0] == "b"  # the left column follows the new weights
    assert after[1] == before[1]  # the other strategy is unchanged

    bad = client.post("/admin/recommendations/visual", data={"aspect:color": "-1"}, headers=h)
    assert bad.status_code == 422 and "color must not be negative" in bad.text
    none = client.post(
        "/admin/recommendations/visual", data={f"aspect:{a}": "0" for a in ASPECTS}, headers=h
    )
    assert none.status_code == 422 and "at least one aspect" in none.text

    ab = client.post(
        "/admin/recommendations/ab-tests/new",
        data={"name": "t1", "a": "visual", "b": "blend", "split": "0.3"},
        headers=h,
    )
    assert ab.status_code == 200 and "t1" in ab.text and "30%" in ab.text
    same = client.post(
        "/admin/recommendations/ab-tests/new",
        data={"name": "t2", "a": "visual", "b": "visual"},
        headers=h,
    )
    assert same.status_code == 422 and "two different strategies" in same.text
    overview = client.get("/admin/analytics").text
    assert "ndcg@10" in overview and "0.1234" in overview


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
        record_correction(engine, pid, "type", value)
    text = client.get("/admin/analytics?field=label:type").text
    assert "clf-7" in text and "3 products whose &#39;type&#39; a person reviewed" in text
    assert 'class="diag">1<' in text and 'class="off">1<' in text  # one dress taken for a shirt
    catalog = client.get("/admin/catalog?label=type%3Ddress&min_confidence=0.9")
    assert "/admin/catalog/b" in catalog.text and "/admin/catalog/c" in catalog.text
    bad = client.get("/admin/catalog?min_confidence=lots")
    assert "is not a number" in bad.text
