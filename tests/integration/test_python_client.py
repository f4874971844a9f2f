"""The Python client (clients/python) against a real `vitrine serve` process: products,
an import, search by a photo made here, events and recommendations, and errors raised as
exceptions carrying the problem document's fields; the sync and the async client."""

from __future__ import annotations

import asyncio
import csv
import io
import time
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest
from PIL import Image
from test_api import photo

from serve_process import process_env, serving
from vitrine.accounts.keys import KeyService
from vitrine.catalog.database import make_engine, migrate
from vitrine.config import load_settings
from vitrine_client import (
    AsyncClient,
    Client,
    Conflict,
    Forbidden,
    NotFound,
    Unauthorized,
    ValidationFailed,
)

pytestmark = pytest.mark.integration
T = TypeVar("T")
SCOPES = ("read", "admin")
COLORS = {"red": (210, 20, 30), "blue": (20, 40, 200), "green": (30, 170, 40)}


def wait_for(read: Callable[[], T], done: Callable[[T], bool], seconds: float = 60) -> T:
    deadline = time.monotonic() + seconds
    while True:
        value = read()
        if done(value) or time.monotonic() > deadline:
            return value
        time.sleep(0.3)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, dict[str, str]]]:
    home = tmp_path_factory.mktemp("client") / "home"
    env = process_env(home, {"VITRINE_RECOMMEND_RETRAIN_MINUTES": "0"})
    # The keys are written here, in process (`vitrine keys create` costs seconds each),
    # in the database the server's settings name.
    engine = make_engine(load_settings(env=env).resolved_database_url)
    migrate(engine)
    keys = {scope: KeyService(engine).create(f"client-{scope}", scope)[1] for scope in SCOPES}
    engine.dispose()
    with serving(env, secrets=list(keys.values())) as base:
        yield base, keys


def test_sync_client(server: tuple[str, dict[str, str]], tmp_path: Path) -> None:
    base, keys = server
    blue = tmp_path / "blue.jpg"
    blue.write_bytes(photo(COLORS["blue"]))
    with Client(base, keys["admin"], timeout=60) as client:
        # Uploads as bytes, as a path and as a file object.
        created = client.create_product(
            "red-1",
            photo(COLORS["red"]),
            title="Red top",
            price=19.5,
            attributes={"category": "Tops"},
        )
        assert created.product.id == "red-1" and created.product.colors[0].name == "Red"
        assert created.analysis[0].embedding["dim"] == 1280
        client.create_product("blue-1", blue, title="Blue top", attributes={"category": "Tops"})
        with (tmp_path / "blue.jpg").open("rb") as handle:
            client.replace_product("blue-1", handle, title="Blue shirt")
        product = client.get_product("blue-1")
        assert product.title == "Blue shirt" and product.attributes == {}
        client.create_product("green-1", photo(COLORS["green"], stripes=True), title="Green")

        changed = client.update_product("red-1", price=None, attributes={"season": "summer"})
        assert changed.price is None
        assert changed.attributes == {"category": "Tops", "season": "summer"}
        first = client.list_products(limit=2)
        assert [p.id for p in first.items] == ["blue-1", "green-1"] and first.next_cursor
        rest = client.list_products(limit=2, cursor=first.next_cursor)
        assert [p.id for p in rest.items] == ["red-1"] and rest.next_cursor is None
        assert [p.id for p in client.list_products(filter={"season": "summer"}).items] == ["red-1"]
        image = client.get_product_image("red-1", changed.images[0].id)
        assert image[:2] == b"\xff\xd8"  # a JPEG

        found = client.search_image(photo((200, 30, 35)), k=2)
        assert found.results[0].product_id == "red-1"
        similar = client.similar_products("red-1", k=2)
        assert "red-1" not in [hit.product_id for hit in similar.results]

        # A small import: a CSV and a zip of its photos.
        rows = io.StringIO()
        writer = csv.writer(rows)
        writer.writerow(["id", "title"])
        archive = io.BytesIO()
        with zipfile.ZipFile(archive, "w") as zf:
            for n, color in enumerate(COLORS.values()):
                writer.writerow([f"imp-{n}", f"Imported {n}"])
                zf.writestr(f"imp-{n}.jpg", photo(color, stripes=True))
        job = client.create_import(
            rows.getvalue().encode(), archive.getvalue(), image_path="{id}.jpg"
        )
        job = wait_for(lambda: client.get_import(job.id), lambda j: j.status in {"done", "failed"})
        assert job.status == "done" and job.imported == 3, job
        assert job.id in [j.id for j in client.list_imports()]

        # Events, then recommendations from models trained on them.
        events = [
            {"user_id": f"u{u}", "product_id": pid, "type": "purchase", "event_id": f"e{u}{pid}"}
            for u in range(6)
            for pid in ("red-1", "blue-1", "imp-0")[: 1 + u % 3]
        ]
        accepted = client.send_events(events)
        assert (accepted.accepted, accepted.duplicates) == (len(events), 0)
        assert client.send_events(events[0]).duplicates == 1
        training = client.train_recommendations()
        done = wait_for(
            lambda: client.get_job(training.job.id), lambda j: j.state in {"done", "failed"}, 90
        )
        assert done.state == "done", done
        status = client.recommendation_status()
        assert status.ready and status.events == len(events)
        recommended = client.recommend_user("u0", k=3)
        assert recommended.user_id == "u0" and recommended.items
        assert client.trending(k=2).items[0].product_id == "red-1"

        # Errors carry the problem document's fields.
        with pytest.raises(NotFound) as missing:
            client.get_product("no-such")
        error = missing.value
        assert (error.status, error.title, error.kind) == (404, "Not found", "unknown-product")
        assert error.type == "https://vitrine.dev/problems/unknown-product"
        assert error.instance == "/v1/products/no-such" and "no-such" in error.detail
        with pytest.raises(ValidationFailed) as invalid:
            client.similar_products("red-1", k=0)
        assert invalid.value.status == 422
        assert [e["field"] for e in invalid.value.errors] == ["query.k"]
        with pytest.raises(Conflict) as exists:
            client.create_product("red-1", photo(COLORS["red"]))
        assert exists.value.kind == "product-exists"

        assert client.delete_product("green-1") is None
        with pytest.raises(NotFound):
            client.get_product("green-1")

        # Visual search ads: a campaign, its ads for a shared photo, a purchase counted.
        campaign = client.create_campaign(
            "tops", category_field="category", categories=["Tops"], max_per_object=2
        )
        assert campaign.active and campaign.categories == ["Tops"]
        assert client.edit_campaign("tops", max_price=None).max_price is None
        match = client.match_ads(photo((200, 30, 35)), campaign="tops", source="post-1")
        ads = [ad for obj in match.objects for ad in obj.ads]
        assert ads and {ad.product_id for ad in ads} <= {"red-1"}  # blue-1 is a shirt now
        ad = ads[0]
        client.send_events({"user_id": "u9", "product_id": "red-1", "type": "purchase",
                            "ad_id": ad.ad_id, "price": 19.5})  # fmt: skip
        funnel = client.ad_analytics(campaign="tops").campaigns[0]
        assert (funnel.impressions, funnel.purchases) == (len(ads), 1)
        with pytest.raises(Conflict) as feed:
            client.product_feed(format="csv")  # no link pattern configured
        assert "PRODUCT_LINK_PATTERN" in feed.value.detail
        client.delete_campaign("tops")
        assert client.list_campaigns() == []


def test_keys_and_scopes(server: tuple[str, dict[str, str]]) -> None:
    base, keys = server
    with Client(base) as anonymous, pytest.raises(Unauthorized) as no_key:
        anonymous.list_products()
    assert no_key.value.status == 401 and no_key.value.kind == "missing-api-key"
    with Client(base, "vtr_not_a_key") as wrong, pytest.raises(Unauthorized) as bad:
        wrong.list_products()
    assert bad.value.kind == "invalid-api-key"
    with Client(base, keys["read"]) as reader:
        assert reader.list_strategies()
        with pytest.raises(Forbidden) as scope:
            reader.delete_product("anything")
    assert "needs 'write'" in scope.value.detail


def test_async_client(server: tuple[str, dict[str, str]], tmp_path: Path) -> None:
    base, keys = server
    query = tmp_path / "query.png"
    Image.open(io.BytesIO(photo((40, 160, 50)))).save(query)

    async def main() -> None:
        async with AsyncClient(base, keys["admin"], timeout=60) as client:
            created, strategies = await asyncio.gather(
                client.create_product("async-1", photo((230, 200, 20)), title="Yellow"),
                client.list_strategies(),
            )
            assert created.product.id == "async-1" and strategies[0].name
            found = await client.search_image(query, k=1, weights={"embedding": 2, "color": 1})
            assert len(found.results) == 1
            assert (await client.get_product("async-1")).title == "Yellow"
            with pytest.raises(NotFound) as missing:
                await client.get_job(10**9)
            assert missing.value.kind == "unknown-job"
            with pytest.raises(ValidationFailed) as invalid:
                await client.search_image(product_id="async-1", k=500)
            assert invalid.value.errors[0]["field"] == "body.k"

    asyncio.run(main())
