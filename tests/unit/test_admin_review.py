"""The review queue (confirm / correct the least certain model labels) and the product page
(shop labels first, code-like attributes hidden, complementary products as cards), through
FastAPI's test client."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from vitrine.admin.ports import RecommendedItem
from vitrine.admin.product_view import split_attributes
from vitrine.api.app import create_app
from vitrine.catalog.models import Label
from vitrine.catalog.store import FeatureRecord, ImageRecord, ProductRecord
from vitrine.classify.catalog_labels import CatalogLabeller
from vitrine.classify.dataset import read_field_labels
from vitrine.config import load_settings
from vitrine.vision.features import FEATURE_VERSION, VECTOR_DIMS

PASSWORD = "correct horse battery"
EMB = "test-embedding"


def sign_in(client: TestClient, user: str) -> dict[str, str]:
    """Sign ``user`` in; the session's CSRF header."""
    page = client.get("/admin/login")
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)  # type: ignore[union-attr]
    client.post("/admin/login", data={"username": user, "password": PASSWORD, "csrf_token": token})
    page = client.get("/admin/catalog")
    return {"X-CSRF-Token": re.search(r'name="csrf-token" content="([^"]+)"', page.text).group(1)}  # type: ignore[union-attr]


@pytest.fixture()
def app_client(tmp_path: Path) -> Iterator[tuple[Any, TestClient]]:
    settings = load_settings(env={}).with_overrides(
        home=tmp_path / "home", admin_recall_check_minutes=0
    )
    app = create_app(settings, warm=False)
    admin = app.state.admin
    admin.users.create("alice", PASSWORD, "admin")
    admin.users.create("ana", PASSWORD, "analyst")
    with TestClient(app) as client:
        yield app, client


def model_label(pid: str, value: str, confidence: float, review: bool = False) -> dict[str, Any]:
    return {
        "product_id": pid,
        "field": "type",
        "value": value,
        "source": "model",
        "confidence": confidence,
        "model_version": "type-v1",
        "needs_review": review,
    }


@pytest.fixture()
def queued(app_client: tuple[Any, TestClient]) -> tuple[Any, TestClient]:
    """Six products with a model label of ``type``: one a person already confirmed, one
    whose own data says its type; the other four await review."""
    app, client = app_client
    store = app.state.admin.vitrine.store
    store.upsert_products(
        [ProductRecord(pid, f"product {pid}") for pid in "abcde"]
        + [ProductRecord("f", "product f", attributes={"type": "shirt"})]
    )
    store.upsert_labels(
        [
            model_label("a", "shirt", 0.91),
            model_label("b", "shirt", 0.42),
            model_label("c", "dress", 0.63),
            model_label("d", "shirt", 0.95, review=True),  # a rare class: flagged
            model_label("e", "dress", 0.30),
            model_label("f", "dress", 0.10),
            {"product_id": "e", "field": "type", "value": "dress", "source": "human"},
        ]
    )
    return app, client


def card_order(html: str) -> list[str]:
    return re.findall(r'class="review-card[^"]*"[^>]*data-product="([^"]+)"', html)


def test_queue_puts_the_least_certain_labels_first(queued: tuple[Any, TestClient]) -> None:
    _, client = queued
    sign_in(client, "alice")
    page = client.get("/admin/review?field=type")
    assert page.status_code == 200
    # flagged first, then by rising confidence; reviewed (e) and overruled (f) labels are not
    assert card_order(page.text) == ["d", "b", "c", "a"]
    assert re.search(r'data-testid="remaining">4<', page.text)
    assert client.get("/admin/review").text.count('data-product="') == 4  # the default field
    assert card_order(client.get("/admin/review?field=type&size=2").text) == ["d", "b"]
    assert 'aria-current="page">Review</a>' in page.text
    # without a trained model, the alternatives are the field's other known values
    card_b = page.text.split('data-product="b"')[1].split("</li>\n</ol>")[0]
    assert 'name="value" value="dress"' in card_b


def test_confirm_records_the_models_value_as_a_person_s(queued: tuple[Any, TestClient]) -> None:
    app, client = queued
    h = sign_in(client, "alice")
    form = {"field": "type", "product_id": "b", "action": "confirm", "reviewed": "0"}
    done = client.post("/admin/review/decide", data=form, headers=h)
    assert done.status_code == 200, done.text
    assert "Confirmed type = shirt for “product b”." in done.text
    assert card_order(done.text) == ["d", "c", "a"]
    assert re.search(r'data-testid="reviewed">1<', done.text)
    assert re.search(r'data-testid="remaining">3<', done.text)
    with app.state.admin.vitrine.engine.connect() as conn:
        rows = conn.execute(
            select(Label.value).where(Label.product_id == "b", Label.source == "human")
        ).all()
    assert rows == [("shirt",)]
    again = client.post("/admin/review/decide", data=form, headers=h)
    assert again.status_code == 409 and "not awaiting review any more" in again.text


def test_a_correction_is_a_human_label_that_training_reads(
    queued: tuple[Any, TestClient],
) -> None:
    app, client = queued
    h = sign_in(client, "alice")
    picked = client.post(
        "/admin/review/decide",
        data={"field": "type", "product_id": "c", "value": "shirt", "reviewed": "3"},
        headers=h,
    )
    assert picked.status_code == 200, picked.text
    assert "Corrected type = shirt for “product c” (the model said dress)." in picked.text
    assert re.search(r'data-testid="reviewed">4<', picked.text)
    typed = client.post(
        "/admin/review/decide",
        data={"field": "type", "product_id": "a", "action": "correct", "other": " blouse "},
        headers=h,
    )
    assert typed.status_code == 200 and card_order(typed.text) == ["d", "b"]
    # What the next training of the field learns from: people's values, as corrections.
    store = app.state.admin.vitrine.store
    labels = read_field_labels(store, ["type"])["type"]
    assert labels.values["c"] == "shirt" and labels.values["a"] == "blouse"
    assert {"a", "c"} <= labels.corrected
    classification = app.state.admin.vitrine.classification
    assert classification.corrections_since("type", None) == 3  # with e's earlier one


def test_empty_queues_and_bad_input_get_a_message_not_a_500(
    app_client: tuple[Any, TestClient],
) -> None:
    app, client = app_client
    h = sign_in(client, "alice")
    empty = client.get("/admin/review")
    assert empty.status_code == 200 and "Nothing to review yet" in empty.text
    unknown = client.get("/admin/review?field=nope")
    assert unknown.status_code == 404 and "no model has labelled a field" in unknown.text
    store = app.state.admin.vitrine.store
    store.upsert_products([ProductRecord("a", "A")])
    store.upsert_labels([model_label("a", "shirt", 0.5)])
    assert client.get("/admin/review?size=many").status_code == 422
    assert client.get("/admin/review?field=type&reviewed=-1").status_code == 422
    bad = [
        ({"field": "nope", "product_id": "a", "action": "confirm"}, 404, "no model has"),
        ({"field": "type", "product_id": "a", "action": "guess"}, 422, "unknown action"),
        ({"field": "type", "product_id": "a", "value": " "}, 422, "choose a value"),
        ({"field": "type", "product_id": "a", "value": "(other)"}, 422, "is not a value"),
        ({"field": "type", "product_id": "zz", "value": "shirt"}, 422, "does not exist"),
        ({"field": "type", "product_id": "a", "value": "x", "size": "1e9"}, 422, "size must"),
        ({"field": "type", "product_id": "a", "value": "x" * 300}, 422, "1 to 256"),
        ({"field": "type", "action": "confirm"}, 422, "name the product"),
        ({"product_id": "a", "action": "confirm"}, 404, "no model has labelled a field"),
    ]
    for form, status, message in bad:
        response = client.post("/admin/review/decide", data=form, headers=h)
        assert response.status_code == status, (form, response.text)
        assert message in response.text
    done = client.post(
        "/admin/review/decide",
        data={"field": "type", "product_id": "a", "action": "confirm"},
        headers=h,
    )
    assert done.status_code == 200
    assert "Nothing left to review in" in done.text and card_order(done.text) == []


def test_a_viewer_sees_the_queue_but_cannot_decide(queued: tuple[Any, TestClient]) -> None:
    app, client = queued
    h = sign_in(client, "ana")
    page = client.get("/admin/review?field=type")
    assert page.status_code == 200 and len(card_order(page.text)) == 4
    assert 'data-review="confirm"' not in page.text and "an admin confirms" in page.text
    form = {"field": "type", "product_id": "b", "action": "confirm"}
    assert client.post("/admin/review/decide", data=form).status_code == 403  # no CSRF
    denied = client.post("/admin/review/decide", data=form, headers=h)
    assert denied.status_code == 403 and "read-only" in denied.text
    assert app.state.admin.vitrine.store.labels(source="human", product_ids=["b"]) == []
    client.cookies.clear()
    assert client.get("/admin/review", follow_redirects=False).status_code == 303


def test_a_trained_model_orders_by_uncertainty_and_learns_the_corrections(
    app_client: tuple[Any, TestClient],
) -> None:
    """A real model of ``type`` (three clusters of embeddings): products between two
    clusters come first, with the model's next guesses and their probabilities; a
    picked alternative is used by the next training run."""
    app, client = app_client
    admin = app.state.admin
    runtime = admin.vitrine
    store = runtime.store
    rng = np.random.default_rng(7)
    centres = rng.normal(size=(3, 16)) * 3
    names = ["boots", "dress", "shirt"]
    records, images = [], []
    for i in range(72):
        k = i % 3
        if i < 60:
            vector, attributes = centres[k] + rng.normal(size=16), {"type": names[k]}
        elif i < 66:  # clearly one class, unlabelled
            vector, attributes = centres[k] + rng.normal(scale=0.3, size=16), {}
        else:  # halfway between two classes, unlabelled
            vector, attributes = (centres[0] + centres[1]) / 2 + rng.normal(scale=0.2, size=16), {}
        pid = f"p{i:02d}"
        records.append(ProductRecord(pid, f"item {i}", attributes=attributes))
        features = [FeatureRecord("embedding", EMB, vector.astype(np.float32))]
        features += [  # the hand-crafted descriptors, as an import would store them
            FeatureRecord(kind, FEATURE_VERSION, rng.normal(size=dim).astype(np.float32))
            for kind, dim in VECTOR_DIMS.items()
        ]
        images.append(ImageRecord(pid, f"h{i}", f"k{i}", "JPEG", 60, 80, 100, features=features))
    store.upsert_products(records)
    store.add_images(images)
    service = runtime.classification_for(EMB)
    first = service.train(["type"], groups=["embedding"], min_support=3, text=False)[0]
    assert first["active"]
    CatalogLabeller(store, service.predictor, lambda: EMB).label()
    admin.review.classification = service  # the admin's models read these embeddings

    h = sign_in(client, "alice")
    page = client.get("/admin/review?field=type&size=12")
    order = card_order(page.text)
    assert sorted(order) == [f"p{i}" for i in range(60, 72)]
    assert set(order[:6]) == {f"p{i}" for i in range(66, 72)}  # the uncertain ones first
    top = order[0]
    card = page.text.split(f'data-product="{top}"')[1].split("</li>\n")[0]
    assert "ahead of the runner-up" in card and "next guess" in card
    alternative = re.search(r'name="value" value="([^"]+)" data-review="1"', card).group(1)  # type: ignore[union-attr]
    assert re.search(r"<kbd>1</kbd> \w+ <span class=\"muted\">(&lt;|&gt;)?\d+%</span>", card)
    picked = client.post(
        "/admin/review/decide",
        data={"field": "type", "product_id": top, "value": alternative},
        headers=h,
    )
    assert picked.status_code == 200 and top not in card_order(picked.text)
    assert service.corrections_since("type", first["created_at"]) == 1
    second = service.train(["type"], groups=["embedding"], min_support=3, text=False)[0]
    assert second["corrections_used"] == 1  # the person's value is a training example


# -- the product page -------------------------------------------------------------------


class Complements:
    """A recommendation service that only knows what goes with what."""

    def complementary(self, product_id: str, k: int) -> list[RecommendedItem]:
        return [RecommendedItem("b", 0.9, "bought together 3 times")]


def test_product_page_shows_shop_labels_first_hides_codes_and_shows_cards(
    app_client: tuple[Any, TestClient],
) -> None:
    app, client = app_client
    admin = app.state.admin
    store = admin.vitrine.store
    attributes = {
        "articleType": "Shirts",
        "season": "Summer",
        "style_code": "ST-1234",
        "supplier_no": "A-77",
        "ean": "4006381333931",
        "year": "2012",
        "gender": "Men",
    }
    store.upsert_products(
        [
            ProductRecord("a", "Blue shirt", attributes=attributes),
            ProductRecord("b", "Brown belt", attributes={"year": "2011", "gender": "Men"}),
        ]
    )
    store.add_images([ImageRecord("b", "hb", "kb", "JPEG", 60, 80, 100)])
    store.upsert_labels(
        [
            {**model_label("a", "shirt", 0.55, review=True), "field": "usage"},
            {**model_label("a", "Tshirts", 0.8), "field": "articleType"},
        ]
    )
    sign_in(client, "alice")
    admin.backends.recommendations = Complements()
    page = client.get("/admin/catalog/a").text
    assert page.index('id="labels"') < page.index("What the generic ImageNet model sees")
    assert '<details class="more imagenet"' in page  # folded away
    labels = page.split('data-testid="shop-labels"')[1].split("</table>")[0]
    # the shop's value wins over the model's, which is shown beside it
    assert re.search(r"Shirts</strong>.*the model says Tshirts", labels)
    assert 'badge model">model</span>' in labels and "55%" in labels and "to review" in labels
    shown = page.split('data-testid="attributes"')[1].split("</dl>")[0]
    assert "season" in shown and "gender" in shown and "articleType" in shown
    for code in ("style_code", "supplier_no", "ean", "year"):
        assert f"<dt>{code}</dt>" not in shown
    everything = page.split('data-testid="all-attributes"')[1].split("</details>")[0]
    assert "<dt>style_code</dt>" in everything and "4 not shown above" in everything
    complementary = page.split('data-testid="complementary"')[1].split("</ul>")[0]
    assert 'class="card"' in complementary and "Brown belt" in complementary
    assert re.search(r'<img src="/admin/images/\d+\?size=320"', complementary)
    assert "bought together 3 times" in complementary

    admin.product_pages.columns = ["gender", "style_code", "missing"]
    chosen = client.get("/admin/catalog/a").text.split('data-testid="attributes"')[1]
    chosen = chosen.split("</dl>")[0]
    names = re.findall(r"<dt>([^<]+)</dt>", chosen)
    assert names == ["Price", "In stock", "gender", "style_code", "Added"]  # in that order


def test_the_column_rule_and_setting(tmp_path: Path) -> None:
    attributes = {"colour": "red", "size": "40", "order_id": "x", "is_new": True}
    auto = split_attributes(attributes, [], {"size": True, "colour": False})
    assert auto.shown == [("colour", "red"), ("is_new", True)] and auto.hidden == 2
    assert split_attributes({"lot": "0042"}, [], {}).shown == []  # digits, unseen column
    mixed = split_attributes({"size": "40"}, [], {"size": False})  # "40", "M", "L", ...
    assert mixed.shown == [("size", "40")]
    assert split_attributes(attributes, ["size", "colour"], {}).shown == [
        ("size", "40"),
        ("colour", "red"),
    ]
    settings = load_settings(env={"VITRINE_ADMIN_PRODUCT_COLUMNS": "gender, usage,"})
    assert settings.admin_product_columns == ("gender", "usage")
    toml = tmp_path / "vitrine.toml"
    toml.write_text('admin_product_columns = ["season", "gender"]\n')
    from_file = load_settings(env={}, config_file=toml)
    assert from_file.admin_product_columns == ("season", "gender")
