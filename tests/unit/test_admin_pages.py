"""Admin pages through FastAPI's test client: the recommendation pages on a small shop served
by the real recommendation service, and the catalog / analytics pages' data."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from small_shop import PASSWORD, purchases, small_shop
from vitrine.admin.recommendations import ServiceRecommendations
from vitrine.admin.strategy_form import FACTORS, FLAGS, LISTS, NUMBERS
from vitrine.api.app import create_app
from vitrine.catalog.models import Label, RecommendationEvaluation
from vitrine.catalog.store import ProductRecord
from vitrine.config import load_settings
from vitrine.recommend.ab_tests import Arm, newcombe, verdict, wilson
from vitrine.recommend.strategies import Strategy as EngineStrategy

ASPECTS = ("color", "texture", "shape", "pattern", "embedding")
T0 = datetime.now(UTC) - timedelta(days=20)
EDIT = "/admin/recommendations/strategies"
AB = "/admin/recommendations/ab-tests"


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
    events = purchases(T0)
    strategies = [
        EngineStrategy("hybrid", "hybrid", params={"windows": 1}),
        EngineStrategy("default", "als"),
    ]
    app = small_shop(tmp_path / "home", events, strategies)
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
    assert (
        page.status_code == 200 and 'href="/admin/recommendations/strategies/similar"' in page.text
    )
    editor = client.get(f"{EDIT}/similar")
    assert editor.status_code == 200 and 'name="aspect:color"' in editor.text
    visual = client.get(f"{EDIT}/visual").text
    assert "<option selected>visual_profile</option>" in visual  # the visual strategy's
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
    saved = client.post(f"{EDIT}/similar", data=form, headers=h)
    assert saved.status_code == 200 and "Saved." in saved.text
    assert 'name="aspect:color"' in saved.text and 'value="1.0"' in saved.text  # form again
    assert service.strategies.get("similar").weights == {"color": 1.0}
    after = preview(product_id="sh0")
    assert after[0] != before[0]  # the left column follows the new weights
    assert after[1] == before[1]  # the other strategy is unchanged
    assert service.strategy_stats() == []  # previews are not counted as served lists

    # another algorithm and fallback chain; a post without editor=full changes only its fields
    engine_strategy = service.strategies.get("trending")
    engine_strategy.rules.exclude_seen = True
    service.strategies.put(engine_strategy)
    form = {"algorithm": "popularity", "fallback": "similar, trending", "rule:diversity": "0.3"}
    assert client.post(f"{EDIT}/trending", data=form, headers=h).status_code == 200
    stored = service.strategies.get("trending")
    assert (stored.algorithm, stored.fallback) == ("popularity", ["similar", "trending"])
    assert stored.rules.exclude_seen and stored.rules.diversity == 0.3
    assert len(preview(customer_id="u1")[1]) == 12

    bad = client.post(f"{EDIT}/similar", data={"aspect:color": "-1"}, headers=h)
    assert bad.status_code == 422 and "color must not be negative" in bad.text
    unknown = client.post(f"{EDIT}/similar", data={"algorithm": "magic"}, headers=h)
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
    assert f"{100 * test['diff']:+.1f} pts" in page

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


def test_the_editor_shows_every_rule_and_only_the_chosen_algorithms_fields(
    shop_client: Any,
) -> None:
    _, client = shop_client
    page = client.get(f"{EDIT}/hybrid")
    assert page.status_code == 200 and 'name="editor" value="full"' in page.text
    names = set(re.findall(r'name="([^"]+)"', page.text))
    rules = {f"rule:{r}" for r in (*FLAGS, *LISTS, *NUMBERS, *FACTORS, "filters")}
    shown = {"algorithm", "fallback", "description", "param:windows", "param:label_days"}
    assert rules | shown <= names
    assert not any(n.startswith("aspect:") for n in names)  # hybrid reads no weights
    assert (
        f'hx-post="{EDIT}/hybrid/preview"' in page.text and 'list="recent-customers"' in page.text
    )
    assert '<option value="u' in page.text  # recent customers to preview for
    assert 'href="/admin/recommendations"' in page.text
    similar = client.get(f"{EDIT}/hybrid/fields", params={"algorithm": "similar"})
    swapped = set(re.findall(r'name="([^"]+)"', similar.text))
    params = {"param:recent", "param:half_life_days", "param:pool"}
    assert swapped == {f"aspect:{a}" for a in ASPECTS} | params
    als = client.get(f"{EDIT}/hybrid/fields", params={"algorithm": "als"}).text
    assert 'name="param:factors"' in als and 'value="64"' in als  # the default
    assert "param:windows" not in als and "aspect:" not in als
    decay = client.get(f"{EDIT}/trending/fields", params={"algorithm": "cooccurrence"}).text
    assert 'value="60.0"' in decay and 'value="7.0"' not in decay  # not trending's half-life
    bad = client.get(f"{EDIT}/hybrid/fields", params={"algorithm": "magic"})
    assert bad.status_code == 422 and "unknown algorithm &#39;magic&#39;" in bad.text
    assert client.get(f"{EDIT}/nope").status_code == 404
    assert client.get(f"{EDIT}/nope/fields", params={"algorithm": "als"}).status_code == 404


def test_create_duplicate_and_delete_strategies(shop_client: Any) -> None:
    app, client = shop_client
    service = app.state.admin.vitrine.recommendations
    h = csrf(client)
    new = {"name": "summer", "algorithm": "cooccurrence", "fallback": "trending"}
    created = client.post(EDIT, data=new, headers=h, follow_redirects=False)
    assert created.status_code == 303 and created.headers["location"] == f"{EDIT}/summer"
    stored = service.strategies.get("summer")
    assert (stored.algorithm, stored.fallback) == ("cooccurrence", ["trending"])
    htmx = client.post(EDIT, data={**new, "name": "winter"}, headers={**h, "HX-Request": "true"})
    assert htmx.headers["HX-Redirect"] == f"{EDIT}/winter"
    for data, message in [
        (new, "already a strategy or test named"),
        ({**new, "name": " "}, "give the new strategy a name"),
        ({**new, "name": "Big Sale"}, "must be 1-64 characters"),
        ({**new, "name": "x", "algorithm": "magic"}, "unknown algorithm &#39;magic&#39;"),
        ({**new, "name": "y", "fallback": "magic"}, "unknown fallback algorithm"),
    ]:
        refused = client.post(EDIT, data=data, headers=h)
        assert refused.status_code == 422 and message in refused.text, refused.text
    copied = client.post(
        f"{EDIT}/similar/duplicate",
        data={"new_name": "similar-2"},
        headers=h,
        follow_redirects=False,
    )
    assert copied.status_code == 303 and copied.headers["location"] == f"{EDIT}/similar-2"
    twin = service.strategies.get("similar-2")
    assert twin.to_json() == service.strategies.get("similar").to_json()
    assert twin.description.startswith("copy of similar")
    again = client.post(f"{EDIT}/similar/duplicate", data={"new_name": "summer"}, headers=h)
    assert again.status_code == 422 and "already a strategy or test named" in again.text
    assert 'id="row-summer"' in again.text  # the table again, with the error
    ab = {"name": "t1", "a": "summer", "b": "winter"}
    assert client.post(f"{AB}/new", data=ab, headers=h).status_code == 200
    for name, status, reason in [
        ("default", 409, "it is the default strategy"),
        ("similar", 409, "it is used by GET /v1/products/{id}/similar/weighted"),
        ("summer", 409, "it is used by A/B test t1"),
        ("t1", 404, "there is no strategy named"),
        ("nope", 404, "there is no strategy named"),
    ]:
        refused = client.post(f"{EDIT}/{name}/delete", headers=h)
        assert refused.status_code == status and reason in refused.text, refused.text
    assert service.strategies.get("summer") is not None
    deleted = client.post(f"{EDIT}/similar-2/delete", headers=h)
    assert deleted.status_code == 200 and "Deleted similar-2." in deleted.text
    assert service.strategies.get("similar-2") is None and 'id="row-similar-2"' not in deleted.text
    listing = client.get("/admin/recommendations").text
    assert "not deletable: the default strategy" in listing
    assert "not deletable: used by A/B test t1" in listing


def test_saving_the_whole_editor_and_refusing_bad_values(shop_client: Any) -> None:
    app, client = shop_client
    service = app.state.admin.vitrine.recommendations
    h = csrf(client)
    form = {
        "editor": "full",
        "description": "summer picks",
        "algorithm": "als",
        "fallback": "trending",
        "param:factors": "32",
        "param:iterations": "",
        "rule:exclude_seen": "on",
        "rule:include_categories": "shirts, shoes",
        "rule:filters": "category=shirts|shoes\n",
        "rule:boost": "category=shoes 1.5",
        "rule:bury": "category=shirts 2",
        "rule:price_max": "80",
        "rule:max_per_category": "3",
        "rule:diversity": "0.2",
    }
    saved = client.post(f"{EDIT}/default", data=form, headers=h)
    assert saved.status_code == 200 and "Saved." in saved.text
    stored = service.strategies.get("default")
    assert (stored.description, stored.algorithm, stored.params) == (
        "summer picks",
        "als",
        {"factors": 32},
    )
    r = stored.rules
    assert (r.available_only, r.exclude_purchased, r.exclude_seen) == (False, False, True)
    assert r.include_categories == ["shirts", "shoes"] and r.filters == ["category=shirts|shoes"]
    assert r.boost == {"category=shoes": 1.5} and r.bury == {"category=shirts": 2.0}
    assert (r.price_min, r.price_max, r.max_per_category, r.diversity) == (None, 80.0, 3, 0.2)
    page = client.get(f"{EDIT}/default").text
    assert 'value="summer picks"' in page and ">category=shoes 1.5</textarea>" in page
    assert 'name="param:factors"' in page and 'value="32"' in page
    for field, value, message in [
        ("rule:boost", "category=shoes", "needs a filter and a factor"),
        ("rule:bury", "category=shirts 0.5", "factor must be a number &gt;= 1"),
        ("rule:price_min", "90", "price_min is above price_max"),
        ("rule:max_per_category", "two", "max per category must be a whole number"),
        ("rule:diversity", "2", "diversity must be between 0 and 1"),
        ("rule:filters", "colour", "invalid filter &#39;colour&#39;"),
        ("param:factors", "2", "factors must be between 4 and 512"),
        ("fallback", "trending, magic", "unknown algorithm &#39;magic&#39; in the fallback chain"),
    ]:
        data = {**form, field: value, "description": "as typed"}
        bad = client.post(f"{EDIT}/default", data=data, headers=h)
        assert bad.status_code == 422 and message in bad.text, (field, bad.text)
        assert 'id="strategy-form"' in bad.text and 'value="as typed"' in bad.text
    assert service.strategies.get("default").to_json() == stored.to_json()  # nothing saved


def test_live_preview_shows_unsaved_edits_next_to_the_saved_strategy(shop_client: Any) -> None:
    app, client = shop_client
    service = app.state.admin.vitrine.recommendations
    h = csrf(client)
    before = service.strategies.get("similar").to_json()
    edits = {"editor": "full", "algorithm": "similar", "fallback": "trending"}
    edits |= {f"aspect:{a}": "0" for a in ASPECTS} | {"aspect:color": "1"}

    def columns(**data: str) -> list[list[str]]:
        response = client.post(f"{EDIT}/similar/preview", data=data, headers=h)
        assert response.status_code == 200, response.text
        assert "<h3>Unsaved edits</h3>" in response.text and "<h3>Saved</h3>" in response.text
        return [re.findall(r'/admin/catalog/(\w+)"', c) for c in response.text.split("<h3>")[1:]]

    draft, saved = columns(**edits, product_id="sh0")
    assert len(draft) == len(saved) == 12 and draft != saved  # colour alone ranks otherwise
    unchanged = columns(product_id="sh0")  # nothing edited: both columns alike
    assert unchanged[0] == unchanged[1] == saved
    assert len(columns(**edits, customer_id="u1")[0]) == 12
    assert service.strategies.get("similar").to_json() == before  # nothing saved
    assert service.strategy_stats() == []  # nor counted as served
    untrained = client.post(
        f"{EDIT}/similar/preview",
        data={"algorithm": "als", "param:factors": "8", "customer_id": "u1"},
        headers=h,
    )
    assert untrained.status_code == 200 and "is not trained yet" in untrained.text
    for data, status, message in [
        (edits, 422, "Give a customer id or a product id."),
        ({**edits, "aspect:color": "x", "product_id": "sh0"}, 422, "must be a number"),
        ({**edits, "product_id": "nope"}, 422, "&#39;nope&#39; is not known"),
    ]:
        response = client.post(f"{EDIT}/similar/preview", data=data, headers=h)
        assert response.status_code == status and message in response.text, response.text
    missing = client.post(f"{EDIT}/nope/preview", data={"product_id": "sh0"}, headers=h)
    assert missing.status_code == 404


def test_ab_test_controls_pause_resume_split_stop_and_winner(shop_client: Any) -> None:
    app, client = shop_client
    service = app.state.admin.vitrine.recommendations
    h = csrf(client)

    def post(path: str, **data: str) -> Any:
        return client.post(f"{AB}/{path}", data=data, headers=h)

    assert post("new", name="t1", a="similar", b="trending", split_percent="30").status_code == 200
    paused = post("t1/pause")
    assert paused.status_code == 200 and "Paused t1" in paused.text and "Resume t1" in paused.text
    assert service.strategies.get("t1").paused
    assert service.recommend_user("u1", 6, strategy="t1").strategy == "t1"  # the parent's list
    resumed = post("t1/resume")
    assert "Resumed t1." in resumed.text and "Pause t1" in resumed.text
    assert service.recommend_user("u1", 6, strategy="t1").strategy in {"similar", "trending"}
    split = post("t1/split", split_percent="20")
    assert "t1 now sends 20 % of customers to B." in split.text and "20% to B" in split.text
    assert service.strategies.get("t1").variants == pytest.approx({"similar": 0.8, "trending": 0.2})
    for path, data, status, message in [
        ("t1/split", {"split_percent": "100"}, 422, "between 1 % and 99 %"),
        ("t1/split", {"split_percent": "lots"}, 422, "must be a number, not &#39;lots&#39;"),
        ("nope/pause", {}, 404, "there is no A/B test named &#39;nope&#39;"),
        ("similar/split", {"split_percent": "10"}, 404, "there is no A/B test named"),
        ("t1/winner", {"winner": "als"}, 422, "&#39;als&#39; is not an arm of &#39;t1&#39;"),
        ("new", {"name": "", "a": "similar", "b": "als"}, 422, "give the test a name"),
    ]:
        response = post(path, **data)
        assert response.status_code == status and message in response.text, response.text
    won = post("t1/winner", winner="trending")
    assert won.status_code == 200 and "trending won" in won.text and 'id="test-t1"' not in won.text
    t1, trending = service.strategies.get("t1"), service.strategies.get("trending")
    assert (t1.algorithm, t1.rules, t1.variants) == (trending.algorithm, trending.rules, {})
    assert "winner trending" in t1.description
    assert "t1" in [r["name"] for r in ServiceRecommendations(service).strategy_rows()]
    assert post("new", name="t2", a="als", b="trending").status_code == 200
    stopped = post("t2/stop")
    assert stopped.status_code == 200 and "Stopped t2" in stopped.text
    t2 = service.strategies.get("t2")
    assert (t2.algorithm, t2.variants, t2.paused) == ("als", {}, False)
    assert post("t2/pause").status_code == 404  # a strategy now, no longer a test


def test_ab_numbers_have_wilson_intervals_and_a_verdict_only_past_a_minimum_sample(
    shop_client: Any,
) -> None:
    app, client = shop_client
    assert wilson(10, 100) == pytest.approx((0.0552, 0.1744), abs=1e-4)  # published values
    assert wilson(0, 10) == pytest.approx((0.0, 0.2775), abs=1e-4)
    assert newcombe(48, 80, 56, 70) == pytest.approx((0.2, 0.0524, 0.3339), abs=1e-4)
    h = csrf(client)
    ab = {"name": "t1", "a": "similar", "b": "trending"}
    assert client.post(f"{AB}/new", data=ab, headers=h).status_code == 200
    numbers = {"similar": (2000, 100, 20), "trending": (2000, 160, 30)}
    app.state.admin.backends.recommendations.tests.stats = lambda since: [
        {"strategy": n, "served": s, "clicked_lists": c, "converted_lists": p}
        for n, (s, c, p) in numbers.items()
    ]
    page = client.get("/admin/recommendations").text
    for clicks, bought in [(100, 20), (160, 30)]:  # CTR and conversion, with their CIs
        for n in (clicks, bought):
            low, high = wilson(n, 2000)
            assert (
                f'{n / 20:.1f}% <span class="muted small">[{100 * low:.1f}%, {100 * high:.1f}%]'
                in page
            )
    assert ">2,000<" in page and "B is better: CTR +3.0 pts" in page
    numbers["trending"] = (900, 72, 5)  # B short of the minimum sample
    page = client.get("/admin/recommendations").text
    assert "Not enough data yet: 100 more impressions" in page and "is better" not in page
    a, b = Arm("a", 0.5, 900, 90, 1), Arm("b", 0.5, 900, 180, 2)
    assert not verdict(a, b).decided and verdict(a, b, min_impressions=500).better == "B"


def test_an_analyst_reads_and_previews_strategies_but_changes_nothing(app_client: Any) -> None:
    app, client = app_client
    app.state.admin.users.create("ana", PASSWORD, "analyst")
    token = re.search(r'name="csrf_token" value="([^"]+)"', client.get("/admin/login").text)
    login = {"username": "ana", "password": PASSWORD, "csrf_token": token.group(1)}  # type: ignore[union-attr]
    client.post("/admin/login", data=login)
    h = csrf(client)
    editor = client.get(f"{EDIT}/similar")
    assert editor.status_code == 200 and "only an admin can save them" in editor.text
    assert (
        "Save similar" not in editor.text
        and "Pause" not in client.get("/admin/recommendations").text
    )
    preview = client.post(f"{EDIT}/similar/preview", data={"product_id": "a"}, headers=h)
    assert preview.status_code in (200, 422)  # a reading action (models may not be ready)
    assert client.post(f"{EDIT}/similar/preview", data={"product_id": "a"}).status_code == 403
    for path in (EDIT, f"{EDIT}/similar", f"{EDIT}/similar/duplicate", f"{EDIT}/visual/delete"):
        assert client.post(path, data={"name": "x", "new_name": "y"}, headers=h).status_code == 403
    for action in ("new", "t/pause", "t/resume", "t/split", "t/stop", "t/winner"):
        assert client.post(f"{AB}/{action}", headers=h).status_code == 403
    assert app.state.admin.vitrine.recommendations.strategies.get("visual") is not None


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
