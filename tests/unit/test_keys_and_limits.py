"""API keys (hashed at rest, scopes, revocation), rate limiting and CNN micro-batching."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import select

from vitrine.accounts.keys import KeyService
from vitrine.api.auth import RateLimiter
from vitrine.catalog.database import make_engine, migrate
from vitrine.catalog.models import ApiKey
from vitrine.vision.batcher import MicroBatcher


@pytest.fixture()
def keys(tmp_path: Path) -> KeyService:
    engine = make_engine(f"sqlite:///{tmp_path / 'k.db'}")
    migrate(engine)
    return KeyService(engine)


def test_keys_are_hashed_scoped_and_revocable(keys: KeyService) -> None:
    _, key = keys.create("storefront", "write")
    with keys.engine.connect() as conn:
        stored = conn.execute(select(ApiKey.key_hash)).scalar_one()
    assert key not in stored and len(stored) == 64
    verified = keys.verify(key)
    assert verified is not None and verified.name == "storefront"
    assert verified.allows("read") and verified.allows("write") and not verified.allows("admin")
    assert keys.verify(key[:-1] + ("A" if key[-1] != "A" else "B")) is None
    assert keys.verify("not-a-key") is None
    assert keys.revoke("storefront") == 1
    assert keys.verify(key) is None
    assert [k.name for k in keys.list()] == ["storefront"]
    with pytest.raises(ValueError, match="scope must be one of"):
        keys.create("x", "root")


def test_rate_limiter_bucket() -> None:
    limiter = RateLimiter(rate=10, burst=3)
    assert [limiter.allow("k")[0] for _ in range(4)] == [True, True, True, False]
    allowed, retry = limiter.allow("k")
    assert not allowed and 0 < retry <= 0.1
    assert limiter.allow("other")[0]
    time.sleep(0.11)
    assert limiter.allow("k")[0]
    assert all(RateLimiter(rate=0, burst=0).allow("k")[0] for _ in range(100))


def test_micro_batcher_groups_concurrent_requests() -> None:
    calls: list[int] = []

    def complete(items: list) -> list:  # type: ignore[type-arg]
        calls.append(len(items))
        time.sleep(0.01)
        return [f"r{x}" for x in items]

    batcher = MicroBatcher(complete, max_batch=64, max_wait=0.05)  # type: ignore[arg-type]
    results: dict[int, list[str]] = {}

    def submit(i: int) -> None:
        results[i] = batcher.analyze([i, i + 100])  # type: ignore[list-item]

    threads = [threading.Thread(target=submit, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    batcher.close()
    assert all(results[i] == [f"r{i}", f"r{i + 100}"] for i in range(8))
    assert sum(calls) == 16 and len(calls) < 8


def test_micro_batcher_propagates_errors() -> None:
    def complete(items: list) -> list:  # type: ignore[type-arg]
        raise RuntimeError("model failed")

    batcher = MicroBatcher(complete, max_wait=0.001)  # type: ignore[arg-type]
    with pytest.raises(RuntimeError, match="model failed"):
        batcher.analyze([1])  # type: ignore[list-item]
    batcher.close()


def test_storefront_keys_stand_outside_the_ladder(keys: KeyService) -> None:
    info, key = keys.create(
        "shop", "storefront", ["HTTPS://Shop.Example/", "http://localhost:8000"]
    )
    assert info.origins == ("http://localhost:8000", "https://shop.example")
    verified = keys.verify(key)
    assert verified is not None and verified.storefront
    assert not any(verified.allows(scope) for scope in ("read", "write", "admin"))
    assert keys.storefront_origins() == {"http://localhost:8000", "https://shop.example"}
    for bad in ("shop.example", "https://*.shop.example", "https://shop.example/path", "ftp://x"):
        with pytest.raises(ValueError, match="origin"):
            keys.create("bad", "storefront", [bad])
    with pytest.raises(ValueError, match="belong to storefront keys"):
        keys.create("server", "read", ["https://shop.example"])
    with pytest.raises(ValueError, match="rate limit"):
        keys.create("zero", "storefront", rate_limit=0)
    keys.revoke("shop")
    assert keys.storefront_origins() == frozenset()
