"""The Python client without a server (httpx.MockTransport): what each kind of call sends
(path segments, repeated filters, form fields, uploads, JSON bodies) and how answers
become values or exceptions."""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from vitrine_client import (
    UNSET,
    AsyncClient,
    Client,
    NotFound,
    RateLimited,
    ServerError,
    Unavailable,
    ValidationFailed,
    VitrineError,
)

PRODUCT = {"id": "a/b", "title": "T", "price": 3.0}
SEARCH = {"results": [{"product_id": "p", "score": 0.5}], "took_ms": 1.0}


def recording(
    answer: Callable[[httpx.Request], httpx.Response],
) -> tuple[list[httpx.Request], httpx.MockTransport]:
    seen: list[httpx.Request] = []

    def handle(request: httpx.Request) -> httpx.Response:
        request.read()
        seen.append(request)
        return answer(request)

    return seen, httpx.MockTransport(handle)


def client_answering(status: int, body: Any, **headers: str) -> tuple[list[httpx.Request], Client]:
    def answer(_: httpx.Request) -> httpx.Response:
        if isinstance(body, bytes):
            return httpx.Response(status, content=body, headers=headers)
        return httpx.Response(status, json=body, headers=headers)

    seen, transport = recording(answer)
    return seen, Client("http://vitrine.test", "vtr_key", transport=transport)


def test_path_query_and_key() -> None:
    seen, client = client_answering(200, SEARCH)
    result = client.similar_products("a/b c", k=3, filter={"color": "Red", "fit": "slim"})
    assert result.results[0].product_id == "p"
    (request,) = seen
    assert (
        request.url.raw_path
        == b"/v1/products/a%2Fb%20c/similar?k=3&filter=color%3DRed&filter=fit%3Dslim"
    )
    assert request.headers["x-api-key"] == "vtr_key"
    with pytest.raises(ValueError, match="product_id must not be empty"):
        client.get_product("")


def test_multipart_form_and_uploads(tmp_path: Path) -> None:
    seen, client = client_answering(201, {"product": PRODUCT, "analysis": []})
    photo = tmp_path / "shirt.png"
    photo.write_bytes(b"\x89PNG fake")
    client.create_product(
        "p1",
        [b"raw", photo, io.BytesIO(b"handle")],
        available=False,
        attributes={"category": "Tops"},
        image_keys=["k1", "k2"],
    )
    body = seen[0].content
    assert seen[0].headers["content-type"].startswith("multipart/form-data")
    for part in (
        b'name="id"\r\n\r\np1',
        b'name="available"\r\n\r\nfalse',
        b'name="attributes"\r\n\r\n{"category": "Tops"}',
        b'name="image_keys"\r\n\r\nk1',
        b'name="image_keys"\r\n\r\nk2',
        b'filename="shirt.png"\r\nContent-Type: image/png\r\n\r\n\x89PNG fake',
    ):
        assert part in body, part
    assert body.count(b'name="images"') == 3
    assert b'name="title"' not in body  # not given: not sent


def test_json_bodies_leave_out_what_is_not_given() -> None:
    seen, client = client_answering(200, PRODUCT)
    client.update_product("p1", title=None, attributes={"old": None})
    assert json.loads(seen[0].content) == {"title": None, "attributes": {"old": None}}
    assert UNSET is not None and not UNSET
    seen, client = client_answering(200, {"accepted": 1, "duplicates": 0})
    when = datetime(2026, 1, 31, 12, tzinfo=UTC)
    client.send_events({"user_id": "u", "product_id": "p", "type": "view", "timestamp": when})
    assert json.loads(seen[0].content) == {
        "events": [
            {"user_id": "u", "product_id": "p", "type": "view", "timestamp": "2026-01-31T12:00:00Z"}
        ]
    }


def test_binary_and_empty_answers() -> None:
    _, client = client_answering(200, b"\xff\xd8jpeg", **{"content-type": "image/jpeg"})
    assert client.try_on(b"me", product_id="g1") == b"\xff\xd8jpeg"
    _, client = client_answering(204, b"")
    assert client.delete_product("p1") is None


def test_problem_documents_become_exceptions() -> None:
    problem = {
        "type": "https://vitrine.dev/problems/invalid-fields",
        "title": "Unprocessable content",
        "status": 422,
        "detail": "query.k: too large",
        "instance": "/v1/trending",
        "errors": [{"field": "query.k", "message": "too large"}],
        "request_id": "r1",
    }
    _, client = client_answering(422, problem)
    with pytest.raises(ValidationFailed) as caught:
        client.trending(k=999)
    error = caught.value
    assert (error.status, error.kind, error.instance) == (422, "invalid-fields", "/v1/trending")
    assert error.errors == problem["errors"] and error.request_id == "r1"
    assert error.extensions == {"errors": problem["errors"], "request_id": "r1"}
    assert str(error) == "422 Unprocessable content: query.k: too large"

    _, client = client_answering(429, {"status": 429, "retry_after": 0.25}, **{"retry-after": "1"})
    with pytest.raises(RateLimited) as limited:
        client.list_products()
    assert limited.value.retry_after == 0.25
    _, client = client_answering(503, {"status": 503, "detail": "training"}, **{"retry-after": "5"})
    with pytest.raises(Unavailable) as unavailable:
        client.recommendation_status()
    assert unavailable.value.retry_after == 5 and isinstance(unavailable.value, ServerError)
    _, client = client_answering(502, b"<html>bad gateway</html>")
    with pytest.raises(ServerError) as gateway:
        client.list_jobs()
    assert gateway.value.status == 502 and "bad gateway" in gateway.value.detail
    _, client = client_answering(418, {"detail": "teapot"})
    with pytest.raises(VitrineError) as other:
        client.list_cnn_versions()
    assert type(other.value) is VitrineError and other.value.status == 418


def test_async_client_sends_the_same_request() -> None:
    seen, transport = recording(lambda _: httpx.Response(200, json=SEARCH))

    async def main() -> None:
        async with AsyncClient("http://vitrine.test", "k", transport=transport) as client:
            result = await client.search_image(
                b"photo", k=2, weights={"embedding": 2, "color": 0.5}
            )
            assert result.took_ms == 1.0
        body = seen[0].content
        assert b'name="weights"\r\n\r\nembedding=2,color=0.5' in body and b'name="image"' in body

        missing = httpx.MockTransport(lambda r: httpx.Response(404, json={"status": 404}))
        async with AsyncClient("http://vitrine.test", "k", transport=missing) as client:
            with pytest.raises(NotFound):
                await client.get_job(1)

    asyncio.run(main())
