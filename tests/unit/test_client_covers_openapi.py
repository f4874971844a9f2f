"""The Python client (clients/python) keeps in step with the OpenAPI document: one method
per /v1 operation, no method for an operation that is gone, each method takes the
operation's parameters and body fields by their names, and its response model has the
fields of the documented response (nested models too)."""

from __future__ import annotations

import inspect
import types
import typing
from pathlib import Path
from typing import Any, is_typeddict

import pytest
from pydantic import BaseModel

from vitrine.api.app import create_app
from vitrine.config import load_settings
from vitrine_client import OPERATIONS, AsyncClient, Client
from vitrine_client.operation import Operation

METHODS = {"get", "put", "post", "patch", "delete"}


@pytest.fixture(scope="module")
def doc(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    home: Path = tmp_path_factory.mktemp("home")
    settings = load_settings(env={}).with_overrides(home=home, recommend_retrain_minutes=0)
    return create_app(settings, warm=False).openapi()


def v1_operations(doc: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {
        (method.upper(), path): operation
        for path, item in doc["paths"].items()
        if path.startswith("/v1/")
        for method, operation in item.items()
        if method in METHODS
    }


def test_every_operation_has_a_client_method(doc: dict[str, Any]) -> None:
    covered = set(OPERATIONS.values())
    missing = [f"{m} {p}" for m, p in sorted(v1_operations(doc)) if (m, p) not in covered]
    assert not missing, "operations without a method in clients/python: " + ", ".join(missing)


def test_every_client_method_has_an_operation(doc: dict[str, Any]) -> None:
    operations = v1_operations(doc)
    stale = [f"{name} ({m} {p})" for name, (m, p) in OPERATIONS.items() if (m, p) not in operations]
    assert not stale, "client methods whose operation is gone: " + ", ".join(stale)


def test_both_clients_have_every_method() -> None:
    for name in OPERATIONS:
        for client in (Client, AsyncClient):
            assert isinstance(inspect.getattr_static(client, name), Operation), (client, name)


def _schema(doc: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    ref = schema.get("$ref")
    return doc["components"]["schemas"][ref.rpartition("/")[2]] if ref else schema


def _fields(doc: dict[str, Any], operation: dict[str, Any]) -> tuple[set[str], set[str]]:
    """The operation's parameter and body field names: those every method must take
    (parameters, fields of an object body), and those it may take (also the fields of
    each form of a body that is one of several)."""
    required = {p["name"] for p in operation.get("parameters", [])}
    possible = set(required)
    for content in operation.get("requestBody", {}).get("content", {}).values():
        schema = _schema(doc, content["schema"])
        variants = schema.get("anyOf") or schema.get("oneOf")
        if variants is None:
            required |= set(schema.get("properties", {}))
        for variant in variants or [schema]:
            possible |= set(_schema(doc, variant).get("properties", {}))
    return required, possible | required


def test_methods_take_the_operations_fields(doc: dict[str, Any]) -> None:
    operations = v1_operations(doc)
    problems = []
    for name, key in OPERATIONS.items():
        if key not in operations:
            continue  # reported by test_every_client_method_has_an_operation
        build = inspect.getattr_static(Client, name).build
        hints = typing.get_type_hints(build)
        params = set(inspect.signature(build).parameters)
        # A body passed as a TypedDict (a strategy's config) stands for its keys.
        dicts = {p for p in params if is_typeddict(hints.get(p))}
        keys = {k for p in dicts for k in hints[p].__annotations__}
        required, possible = _fields(doc, operations[key])
        if lacking := sorted(required - params - keys):
            problems.append(f"{name} lacks {lacking}")
        if unknown := sorted(params - dicts - possible):
            problems.append(f"{name} takes {unknown}, which {key[0]} {key[1]} does not")
    assert not problems, "; ".join(problems)


def _response(doc: dict[str, Any], operation: dict[str, Any]) -> dict[str, Any] | None:
    for status in ("200", "201", "202"):
        content = operation["responses"].get(status, {}).get("content", {})
        if "application/json" in content:
            return _schema(doc, content["application/json"]["schema"])
    return None


def _differences(doc: dict[str, Any], kind: Any, schema: dict[str, Any], where: str) -> list[str]:
    """Where the client's type ``kind`` and the documented ``schema`` name other fields."""
    schema = _schema(doc, schema)
    if isinstance(kind, types.UnionType):  # X | None: the schema's non-null variant
        kind = next(a for a in typing.get_args(kind) if a is not type(None))
        variants = [v for v in schema.get("anyOf", [schema]) if v.get("type") != "null"]
        schema = _schema(doc, variants[0])
    if typing.get_origin(kind) is list:
        return _differences(doc, typing.get_args(kind)[0], schema.get("items", {}), where)
    if not (isinstance(kind, type) and issubclass(kind, BaseModel)):
        return []
    props = schema.get("properties", {})
    fields = kind.model_fields
    found = []
    if set(fields) != set(props):
        only_client, only_service = (
            sorted(set(fields) - set(props)),
            sorted(set(props) - set(fields)),
        )
        found.append(
            f"{where} ({kind.__name__}): client only {only_client}, service only {only_service}"
        )
    for name, info in fields.items():
        if name in props:
            found += _differences(doc, info.annotation, props[name], f"{where}.{name}")
    return found


def test_response_models_have_the_documented_fields(doc: dict[str, Any]) -> None:
    operations = v1_operations(doc)
    problems = []
    for name, key in OPERATIONS.items():
        schema = _response(doc, operations[key]) if key in operations else None
        if schema is None:
            continue  # no JSON answer (bytes, 204), or the operation is gone (reported above)
        returned = typing.get_type_hints(inspect.getattr_static(Client, name).build)["return"]
        (kind,) = typing.get_args(returned)  # Call[X] -> X
        problems += _differences(doc, kind, schema, name)
    assert not problems, "; ".join(problems)
