"""Webhooks: signatures, the backoff schedule, retries until delivered or failed, deliveries
that survive a restart, and one event per batch of a bulk labelling job."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from sqlalchemy import Engine

from vitrine.catalog.database import make_engine, migrate
from vitrine.catalog.models import utcnow
from vitrine.catalog.store import FeatureRecord, ImageRecord, ProductRecord
from vitrine.classify import catalog_labels
from vitrine.cluster.job_queue import LABEL_CATALOG, Progress
from vitrine.config import load_settings
from vitrine.jobs.background import job_handlers
from vitrine.runtime import Runtime
from vitrine.vision.features import FEATURE_VERSION, VECTOR_DIMS
from vitrine.webhooks.events import (
    IMPORT_FINISHED,
    MODEL_ACTIVATED,
    PRODUCT_CORRECTED,
    PRODUCT_LABELLED,
)
from vitrine.webhooks.service import (
    DeliveryOptions,
    SubscriptionPaused,
    WebhookError,
    WebhookService,
)
from vitrine.webhooks.signing import HEADER, SignatureError, sign, verify
from vitrine.webhooks.store import WebhookStore
from vitrine.webhooks.targets import TargetError, check_public, check_url

URL = "https://receiver.example/hooks"


class Receiver:
    """An httpx transport that answers the queued statuses (then 200) and keeps requests."""

    def __init__(self, *statuses: int) -> None:
        self.statuses = list(statuses)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return httpx.Response(self.statuses.pop(0) if self.statuses else 200)

    @property
    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self)


@pytest.fixture()
def engine(tmp_path: Path) -> Engine:
    engine = make_engine(f"sqlite:///{tmp_path / 'vitrine.db'}")
    migrate(engine)
    return engine


def service(engine: Engine, receiver: Receiver, **options: Any) -> WebhookService:
    return WebhookService(
        WebhookStore(engine), DeliveryOptions(**options), transport=receiver.transport
    )


# -- signatures -----------------------------------------------------------------------


def test_a_signature_verifies_and_refuses_a_changed_body_a_wrong_secret_and_a_replay() -> None:
    body = b'{"id":"e1","type":"ping","data":{}}'
    header = sign("whsec_abc", body, timestamp=1_700_000_000)
    assert header.startswith("t=1700000000,v1=")
    assert verify("whsec_abc", body, header, now=1_700_000_100) == 1_700_000_000
    for secret, sent, now in (
        ("whsec_abc", body + b" ", 1_700_000_100),  # a changed body
        ("whsec_other", body, 1_700_000_100),  # another secret
        ("whsec_abc", body, 1_700_000_000 + 301),  # replayed after the tolerance
    ):
        with pytest.raises(SignatureError):
            verify(secret, sent, header, now=now)
    with pytest.raises(SignatureError):
        verify("whsec_abc", body, "v1=deadbeef", now=1_700_000_100)  # no timestamp


def test_the_backoff_grows_by_three_capped_at_six_hours_over_about_a_day() -> None:
    options = DeliveryOptions()
    waits = [options.retry_delay(n) for n in range(1, options.max_attempts)]
    assert waits[:6] == [60, 180, 540, 1620, 4860, 14580]
    assert waits[6:] == [6 * 3600] * 3
    assert 23 * 3600 < sum(waits) < 25 * 3600  # the tenth attempt comes a day after the first


# -- addresses --------------------------------------------------------------------------


def test_only_http_urls_with_a_host_and_no_credentials() -> None:
    assert check_url(" https://shop.example/h ") == "https://shop.example/h"
    for bad in ("ftp://shop.example/h", "file:///etc/passwd", "https://", "http://u:p@x.example/",
                "http://x.example:99999/", "https://shop.example/a b"):  # fmt: skip
        with pytest.raises(TargetError):
            check_url(bad)
    with pytest.raises(TargetError):
        check_public("http://127.0.0.1:8080/h")
    with pytest.raises(TargetError):
        check_public("http://169.254.169.254/latest/meta-data")


def test_private_addresses_are_refused_only_when_the_shop_blocks_them(engine: Engine) -> None:
    allowing, blocking = (
        service(engine, Receiver()),
        service(engine, Receiver(), block_private=True),
    )
    assert allowing.subscribe("http://127.0.0.1:9/h", [PRODUCT_LABELLED])["id"]
    with pytest.raises(WebhookError, match="private"):
        blocking.subscribe("http://127.0.0.1:9/h", [PRODUCT_LABELLED])
    with pytest.raises(WebhookError, match="one or more"):
        allowing.subscribe(URL, ["product.deleted"])


# -- publishing and delivering ----------------------------------------------------------


def test_an_event_goes_signed_to_each_active_subscription_to_it_once(engine: Engine) -> None:
    receiver = Receiver()
    svc = service(engine, receiver)
    made = svc.subscribe(URL, [PRODUCT_CORRECTED, IMPORT_FINISHED], "erp")
    secret = made["secret"]
    assert secret.startswith("whsec_") and "secret" not in svc.subscription(made["id"])
    other = svc.subscribe(URL + "/other", [MODEL_ACTIVATED])
    paused = svc.subscribe(URL + "/paused", [PRODUCT_CORRECTED], active=False)
    data = {"product_id": "p1", "field": "type", "value": "Shoes", "source": "human"}
    assert svc.publish(PRODUCT_CORRECTED, data) == 1
    assert svc.publish(IMPORT_FINISHED, {"job_id": "j"}, "import-j") == 1
    assert svc.publish(IMPORT_FINISHED, {"job_id": "j"}, "import-j") == 0  # the same event
    assert svc.deliver_due() == 2
    assert len(receiver.requests) == 2
    request = receiver.requests[0]
    body = request.content
    verify(secret, body, request.headers[HEADER])
    document = json.loads(body)
    assert document["type"] == PRODUCT_CORRECTED and document["data"] == data
    assert request.headers["Vitrine-Event"] == PRODUCT_CORRECTED
    assert request.headers["Vitrine-Event-Id"] == document["id"]
    states = {d["event"]: d["state"] for d in svc.deliveries(made["id"])}
    assert states == {PRODUCT_CORRECTED: "delivered", IMPORT_FINISHED: "delivered"}
    assert svc.deliveries(other["id"]) == [] and svc.deliveries(paused["id"]) == []
    assert svc.subscription(made["id"])["deliveries"] == {"pending": 0, "delivered": 2, "failed": 0}


def test_a_failing_receiver_is_retried_with_backoff_until_it_answers(engine: Engine) -> None:
    receiver = Receiver(500, 503)
    svc = service(engine, receiver)
    sub = svc.subscribe(URL, [PRODUCT_LABELLED])
    svc.publish(PRODUCT_LABELLED, {"product_ids": ["a"]})
    start = utcnow()
    assert svc.deliver_due(start) == 1
    (row,) = svc.deliveries(sub["id"])
    assert (row["state"], row["attempts"], row["last_status"]) == ("pending", 1, 500)
    assert timedelta(seconds=55) < row["next_attempt_at"] - start < timedelta(seconds=65)
    assert svc.deliver_due(start + timedelta(seconds=30)) == 0  # not due yet
    assert svc.deliver_due(start + timedelta(seconds=61)) == 1
    (row,) = svc.deliveries(sub["id"])
    assert (row["attempts"], row["last_status"]) == (2, 503)
    assert row["next_attempt_at"] - start > timedelta(seconds=180)  # three minutes more
    assert svc.deliver_due(start + timedelta(seconds=300)) == 1
    (row,) = svc.deliveries(sub["id"])
    assert (row["state"], row["attempts"], row["last_status"]) == ("delivered", 3, 200)
    assert row["next_attempt_at"] is None and row["delivered_at"] is not None
    bodies = {r.content for r in receiver.requests}
    assert len(bodies) == 1  # every attempt posts the same event


def test_after_the_last_attempt_a_delivery_fails_and_can_be_sent_again(engine: Engine) -> None:
    receiver = Receiver(500, 500, 500)
    svc = service(engine, receiver, max_attempts=3, retry_base_s=1)
    sub = svc.subscribe(URL, [PRODUCT_LABELLED])
    svc.publish(PRODUCT_LABELLED, {"product_ids": ["a"]})
    now = utcnow()
    for n in range(3):
        assert svc.deliver_due(now + timedelta(seconds=10 * n)) == 1
    (row,) = svc.deliveries(sub["id"])
    assert (row["state"], row["attempts"], row["next_attempt_at"]) == ("failed", 3, None)
    assert svc.deliver_due(now + timedelta(days=2)) == 0
    again = svc.redeliver(row["id"])
    assert (again["state"], again["attempts"]) == ("pending", 0)
    assert svc.deliver_due(utcnow() + timedelta(seconds=1)) == 1
    assert svc.delivery(row["id"])["state"] == "delivered"
    svc.edit(sub["id"], {"active": False})
    with pytest.raises(SubscriptionPaused):
        svc.redeliver(row["id"])
    with pytest.raises(SubscriptionPaused):
        svc.ping(sub["id"])


def test_a_paused_subscription_keeps_its_deliveries_until_it_is_resumed(engine: Engine) -> None:
    receiver = Receiver()
    svc = service(engine, receiver)
    sub = svc.subscribe(URL, [PRODUCT_LABELLED])
    svc.publish(PRODUCT_LABELLED, {"product_ids": ["a"]})
    svc.edit(sub["id"], {"active": False})
    assert svc.publish(PRODUCT_LABELLED, {"product_ids": ["b"]}) == 0  # no new events
    assert svc.deliver_due() == 0 and receiver.requests == []
    svc.edit(sub["id"], {"active": True})
    assert svc.deliver_due() == 1


def test_nothing_is_lost_when_the_process_dies(tmp_path: Path, engine: Engine) -> None:
    """A delivery queued, then one claimed mid-attempt, by a process that dies: a new
    service over the same database (a new engine: a restarted process) sends both."""
    dead = service(engine, Receiver())
    sub = dead.subscribe(URL, [PRODUCT_LABELLED, IMPORT_FINISHED])
    dead.publish(PRODUCT_LABELLED, {"product_ids": ["a"]})
    dead.publish(IMPORT_FINISHED, {"job_id": "j"})
    now = utcnow()
    claimed = dead.store.due(now, 1)[0]
    lease = now + timedelta(seconds=70)
    assert dead.store.claim(claimed, lease)  # ... and the process dies before its answer
    engine.dispose()

    receiver = Receiver()
    restarted = service(make_engine(f"sqlite:///{tmp_path / 'vitrine.db'}"), receiver)
    assert restarted.deliver_due(now + timedelta(seconds=1)) == 1  # the unclaimed one
    assert restarted.deliver_due(now + timedelta(seconds=71)) == 1  # the claim ran out
    assert {d["state"] for d in restarted.deliveries(sub["id"])} == {"delivered"}
    assert sorted(json.loads(r.content)["type"] for r in receiver.requests) == sorted(
        [PRODUCT_LABELLED, IMPORT_FINISHED]
    )


def test_an_unreachable_receiver_is_an_error_not_a_crash(engine: Engine) -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    svc = WebhookService(WebhookStore(engine), transport=httpx.MockTransport(refuse))
    sub = svc.subscribe(URL, [PRODUCT_LABELLED])
    svc.ping(sub["id"])
    assert svc.deliver_due() == 1
    (row,) = svc.deliveries(sub["id"])
    assert row["state"] == "pending" and row["last_status"] is None
    assert "ConnectError" in row["last_error"]


# -- publishing points ------------------------------------------------------------------


def _shop(runtime: Runtime, n_labelled: int = 30, n_open: int = 25) -> None:
    """Products with embeddings in three clusters; the first ones carry their type."""
    rng = np.random.default_rng(3)
    centres = rng.normal(size=(3, 16)) * 4
    names = ("Shoes", "Bags", "Shirts")
    records, images = [], []
    for i in range(n_labelled + n_open):
        k = i % 3
        pid = f"p{i:02d}"
        attributes = {"type": names[k]} if i < n_labelled else {}
        records.append(ProductRecord(pid, f"item {i}", attributes=attributes))
        vector = (centres[k] + rng.normal(size=16)).astype(np.float32)
        features = [FeatureRecord("embedding", "emb-test", vector)]
        features += [  # the hand-crafted descriptors, as an import stores them
            FeatureRecord(kind, FEATURE_VERSION, rng.normal(size=dim).astype(np.float32))
            for kind, dim in VECTOR_DIMS.items()
        ]
        images.append(ImageRecord(pid, f"h{i}", f"k{i}", "JPEG", 60, 80, 100, features=features))
    runtime.store.upsert_products(records)
    runtime.store.add_images(images)


def test_labelling_the_catalog_sends_one_event_per_batch_and_a_correction_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    runtime = Runtime(load_settings(env={}).with_overrides(home=tmp_path / "home"))
    receiver = Receiver()
    runtime.webhooks = WebhookService(WebhookStore(runtime.engine), transport=receiver.transport)
    sub = runtime.webhooks.subscribe(URL, [PRODUCT_LABELLED, PRODUCT_CORRECTED, MODEL_ACTIVATED])
    _shop(runtime)
    classification = runtime.classification_for("emb-test")
    runtime.override(classification=classification)
    trained = classification.train(["type"], groups=["embedding"], min_support=3, text=False)
    assert trained[0]["active"]
    monkeypatch.setattr(catalog_labels, "CHUNK", 10)  # 25 open products: 3 batches
    result = job_handlers(runtime)[LABEL_CATALOG]({}, Progress(None, 7))
    assert result["labelled"] == 25
    classification.feedback("p40", "type", "Bags")
    runtime.webhooks.deliver_due()
    events = [json.loads(r.content) for r in receiver.requests]
    kinds = [e["type"] for e in events]
    assert kinds.count(MODEL_ACTIVATED) == 1 and kinds.count(PRODUCT_CORRECTED) == 1
    batches = [e["data"] for e in events if e["type"] == PRODUCT_LABELLED]
    assert [b["count"] for b in batches] == [10, 10, 5]  # one event per batch written
    assert {b["job_id"] for b in batches} == {7}
    ids = [pid for b in batches for pid in b["product_ids"]]
    assert sorted(ids) == [f"p{i}" for i in range(30, 55)]
    first = batches[0]["labels"][batches[0]["product_ids"][0]]["type"]
    assert first["value"] in {"Shoes", "Bags", "Shirts"} and first["model_version"]
    activated = next(e["data"] for e in events if e["type"] == MODEL_ACTIVATED)
    assert activated == {"kind": "classifier", "models": [
        {"id": trained[0]["id"], "field": "type", "version": trained[0]["version"]}]}  # fmt: skip
    corrected = next(e["data"] for e in events if e["type"] == PRODUCT_CORRECTED)
    assert corrected == {"product_id": "p40", "field": "type", "value": "Bags", "source": "human"}
    assert len(runtime.webhooks.deliveries(sub["id"])) == len(events)
    runtime.close()
