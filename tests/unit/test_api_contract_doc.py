"""The API's contract without a server: rate-limit headers, unexpected errors as problem
documents, the OpenAPI document (security, error responses, UTC datetimes, the events body).

The app runs without its lifespan (no training, no CNN); tests/integration/
test_api_contract.py fuzzes a real server against the same document.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from vitrine.accounts.keys import KeyService
from vitrine.api.app import create_app
from vitrine.api.auth import RateLimiter
from vitrine.api.schemas import ProductOut
from vitrine.catalog.store import ProductRecord
from vitrine.config import load_settings

PROBLEM = "application/problem+json"
PROBLEM_REF = {"$ref": "#/components/schemas/Problem"}


def make_app(home: Path, **overrides: Any) -> tuple[FastAPI, str]:
    settings = load_settings(env={}).with_overrides(
        home=home, recommend_retrain_minutes=0, **{"api_rate_limit": 0, **overrides}
    )
    app = create_app(settings, warm=False)
    app.state.runtime.store.upsert_products([ProductRecord(id="p1", title="A shirt")])
    _, key = KeyService(app.state.runtime.engine).create("tests", "admin")
    return app, key


@pytest.fixture(scope="module")
def app_key(tmp_path_factory: pytest.TempPathFactory) -> tuple[FastAPI, str]:
    return make_app(tmp_path_factory.mktemp("home"))


@pytest.fixture(scope="module")
def doc(app_key: tuple[FastAPI, str]) -> dict[str, Any]:
    app, _ = app_key
    r = TestClient(app).get("/openapi.json")
    assert r.status_code == 200
    return r.json()


def operations(doc: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in doc["paths"].items():
        for method, operation in item.items():
            yield path, method, operation


# -- 429 -----------------------------------------------------------------------------------


def test_rate_limit_headers_round_up_to_whole_seconds() -> None:
    limiter = RateLimiter(rate=100, burst=400)
    assert limiter.limited_headers(0.004) == {
        "Retry-After": "1",
        "RateLimit-Policy": '"default";q=400;w=4',
        "RateLimit": '"default";r=0;t=1',
    }
    assert limiter.limited_headers(1.01)["Retry-After"] == "2"
    assert RateLimiter(rate=0.5, burst=1).limited_headers(2.0)["RateLimit"] == '"default";r=0;t=2'
    assert RateLimiter(rate=0.5, burst=1).policy() == '"default";q=1;w=2'


def test_429_carries_retry_after_and_ratelimit_headers(tmp_path: Path) -> None:
    app, key = make_app(tmp_path / "home", api_rate_limit=1, api_rate_burst=2)
    client = TestClient(app)
    statuses = [client.get("/v1/products", headers={"X-API-Key": key}) for _ in range(3)]
    assert [r.status_code for r in statuses] == [200, 200, 429]
    r = statuses[-1]
    assert r.headers["content-type"] == PROBLEM
    retry = int(r.headers["Retry-After"])
    assert retry >= 1 and retry >= r.json()["retry_after"] > 0
    assert r.headers["RateLimit-Policy"] == '"default";q=2;w=2'
    assert r.headers["RateLimit"] == f'"default";r=0;t={retry}'
    assert r.json()["request_id"] == r.headers["X-Request-ID"]


# -- 500 -----------------------------------------------------------------------------------


def test_an_unexpected_error_is_a_problem_document_with_the_request_id(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    app, key = make_app(tmp_path / "home")
    secret = "/srv/secret/path is broken"

    def broken(product_id: str) -> None:
        raise RuntimeError(secret)

    monkeypatch.setattr(app.state.runtime.store, "get_product", broken)
    client = TestClient(app, raise_server_exceptions=False)
    with caplog.at_level(logging.ERROR, logger="vitrine.api"):
        r = client.get("/v1/products/p1", headers={"X-API-Key": key, "X-Request-ID": "req-42"})
    assert r.status_code == 500
    assert r.headers["content-type"] == PROBLEM
    body = r.json()
    assert body["status"] == 500 and body["request_id"] == "req-42"
    assert body["type"].endswith("/internal-error") and body["instance"] == "/v1/products/p1"
    assert r.headers["X-Request-ID"] == "req-42"
    assert secret not in r.text and "RuntimeError" not in r.text and "Traceback" not in r.text
    logged = [rec for rec in caplog.records if rec.name == "vitrine.api"]
    assert logged and logged[0].exc_info is not None  # the traceback is in the log
    assert getattr(logged[0], "request_id", None) == "req-42"


# -- 405 -----------------------------------------------------------------------------------


def test_405_allows_the_methods_of_the_path_itself(app_key: tuple[FastAPI, str]) -> None:
    app, key = app_key
    client = TestClient(app)
    r = client.get("/v1/models/rollback", headers={"X-API-Key": key})  # not /v1/models/{id}
    assert r.status_code == 405 and r.headers["Allow"] == "POST"
    assert r.headers["content-type"] == PROBLEM
    r = client.patch("/v1/strategies/default", headers={"X-API-Key": key})
    assert r.status_code == 405
    assert set(r.headers["Allow"].split(", ")) == {"GET", "PUT", "DELETE"}


# -- the OpenAPI document ------------------------------------------------------------------


def test_security_schemes_and_every_protected_operation_declares_them(
    doc: dict[str, Any],
) -> None:
    schemes = doc["components"]["securitySchemes"]
    assert schemes["APIKeyHeader"] == {
        "type": "apiKey",
        "in": "header",
        "name": "X-API-Key",
        "description": schemes["APIKeyHeader"]["description"],
    }
    assert schemes["HTTPBearer"]["type"] == "http" and schemes["HTTPBearer"]["scheme"] == "bearer"
    v1 = [(p, m, op) for p, m, op in operations(doc) if p.startswith("/v1/")]
    assert len(v1) > 30
    for path, method, operation in v1:
        assert operation["security"] == [{"APIKeyHeader": []}, {"HTTPBearer": []}], (path, method)
        for status in ("401", "403", "429"):
            content = operation["responses"][status]["content"]
            assert content == {PROBLEM: {"schema": PROBLEM_REF}}, (path, method, status)
        assert set(operation["responses"]["429"]["headers"]) == {
            "Retry-After",
            "RateLimit",
            "RateLimit-Policy",
        }
    for path in ("/healthz", "/readyz", "/metrics"):
        assert "security" not in doc["paths"][path]["get"]


def test_error_responses_are_problems(doc: dict[str, Any]) -> None:
    schemas = doc["components"]["schemas"]
    assert "HTTPValidationError" not in schemas and "ValidationError" not in schemas
    assert set(schemas["Problem"]["required"]) == {"type", "title", "status", "detail"}
    assert "request_id" in schemas["Problem"]["properties"]
    for path, method, operation in operations(doc):
        responses = operation["responses"]
        for status, response in responses.items():
            if int(status) >= 400 and path != "/readyz":
                assert response["content"] == {PROBLEM: {"schema": PROBLEM_REF}}, (path, status)
        if operation.get("parameters") or operation.get("requestBody"):
            assert "422" in responses, (path, method)
        if operation.get("requestBody"):
            assert {"400", "413"} <= set(responses), (path, method)
        if "{" in path:
            assert "404" in responses, (path, method)
    paths = doc["paths"]
    for path, method in [
        ("/v1/products", "post"),
        ("/v1/products/{product_id}", "put"),
        ("/v1/analyze", "post"),
        ("/v1/search/image", "post"),
    ]:
        operation = paths[path][method]
        assert {"413", "415"} <= set(operation["responses"]), path
        encoding = operation["requestBody"]["content"]["multipart/form-data"]["encoding"]
        assert "image/jpeg" in next(iter(encoding.values()))["contentType"]
    assert "409" in paths["/v1/products"]["post"]["responses"]
    assert "409" in paths["/v1/strategies/{name}"]["delete"]["responses"]
    assert "503" in paths["/v1/users/{user_id}/recommendations"]["get"]["responses"]


def test_raw_responses_declare_their_model_and_media_type(doc: dict[str, Any]) -> None:
    paths = doc["paths"]

    def ok(path: str, method: str = "get") -> dict[str, Any]:
        responses = paths[path][method]["responses"]
        return responses.get("200") or responses["201"]

    json_ref = {"schema": {"$ref": "#/components/schemas/SearchResults"}}
    assert ok("/v1/products/{product_id}/similar")["content"] == {"application/json": json_ref}
    assert ok("/v1/search/image", "post")["content"] == {"application/json": json_ref}
    recommendations = ok("/v1/users/{user_id}/recommendations")["content"]
    assert recommendations["application/json"]["schema"]["$ref"].endswith("/Recommendations")
    assert set(ok("/metrics")["content"]) == {"text/plain"}
    photo = ok("/v1/products/{product_id}/images/{image_id}")["content"]
    assert "image/jpeg" in photo and "application/json" not in photo


def test_optional_parameters_and_form_fields_are_not_null(doc: dict[str, Any]) -> None:
    for path, method, operation in operations(doc):
        for parameter in operation.get("parameters", []):
            assert {"type": "null"} not in parameter["schema"].get("anyOf", []), (path, method)
    form = doc["components"]["schemas"]["Body_search_image_v1_search_image_post"]
    assert form["properties"]["product_id"]["type"] == "string"


def test_datetimes_are_utc_with_z(app_key: tuple[FastAPI, str], doc: dict[str, Any]) -> None:
    naive = ProductOut(id="x", created_at=datetime(2026, 1, 2, 3, 4, 5))
    assert naive.model_dump(mode="json")["created_at"] == "2026-01-02T03:04:05Z"
    aware = ProductOut(id="x", created_at=datetime.fromisoformat("2026-01-02T05:04:05+02:00"))
    assert aware.created_at == datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    app, key = app_key
    r = TestClient(app).get("/v1/products/p1", headers={"X-API-Key": key})
    assert r.status_code == 200 and r.json()["created_at"].endswith("Z")
    created = doc["components"]["schemas"]["ProductOut"]["properties"]["created_at"]
    assert {"type": "string", "format": "date-time"} in created["anyOf"]


def test_stats_times_must_be_rfc3339(app_key: tuple[FastAPI, str]) -> None:
    app, key = app_key
    client = TestClient(app)
    for bad in ("0.5", "2026-01-02", "2026-01-02T03:04:05"):
        r = client.get(
            "/v1/recommendations/stats", params={"since": bad}, headers={"X-API-Key": key}
        )
        assert r.status_code == 422, (bad, r.text)
        assert r.json()["errors"][0]["field"] == "query.since"


# -- the events body -----------------------------------------------------------------------


def test_events_body_is_one_schema_of_three_forms(doc: dict[str, Any]) -> None:
    body = doc["paths"]["/v1/events"]["post"]["requestBody"]["content"]["application/json"]
    assert body["schema"] == {"$ref": "#/components/schemas/EventsBody"}
    forms = doc["components"]["schemas"]["EventsBody"]["oneOf"]
    assert forms[0] == {"$ref": "#/components/schemas/EventIn"}
    assert forms[1]["type"] == "array"
    assert forms[2] == {"$ref": "#/components/schemas/EventBatch"}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"user_id": "u1", "type": "view"}, "body.event.product_id"),
        ([{"user_id": "u1", "type": "view"}], "body.list.0.product_id"),
        ({"events": [{"user_id": "u1", "type": "view"}]}, "body.batch.events.0.product_id"),
        ({"events": []}, "body.batch.events"),
        (5, "body"),
    ],
)
def test_an_invalid_events_body_names_the_real_cause(
    app_key: tuple[FastAPI, str], body: Any, field: str
) -> None:
    app, key = app_key
    r = TestClient(app).post("/v1/events", json=body, headers={"X-API-Key": key})
    assert r.status_code == 422, r.text
    assert [e["field"] for e in r.json()["errors"]] == [field]
