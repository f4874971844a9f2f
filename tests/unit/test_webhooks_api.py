"""/v1/webhooks and the admin's Webhooks page through FastAPI's test client: subscriptions
(admin keys only), a ping the leader's delivery loop sends to a local receiver, the
delivery log, redelivery, and the page's create / pause / resume / ping / delete."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from receiver import receiving
from vitrine.api.app import create_app
from vitrine.config import load_settings
from vitrine.webhooks.signing import HEADER, verify

PASSWORD = "correct horse battery"


@pytest.fixture()
def app_client(tmp_path: Path) -> Iterator[tuple[Any, TestClient, dict[str, dict[str, str]]]]:
    settings = load_settings(env={}).with_overrides(
        home=tmp_path / "home", admin_recall_check_minutes=0, webhook_poll_s=0.2
    )
    app = create_app(settings, warm=False)
    keys = {s: {"X-API-Key": app.state.keys.create(f"k-{s}", s)[1]} for s in ("write", "admin")}
    admin = app.state.admin
    admin.users.create("alice", PASSWORD, "admin")
    admin.users.create("ana", PASSWORD, "analyst")
    with TestClient(app) as client:
        yield app, client, keys


def _until(check: Callable[[], Any], seconds: float = 15) -> Any:
    deadline = time.monotonic() + seconds
    while not (value := check()):
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)
    return value


def test_subscriptions_need_an_admin_key_and_never_show_the_secret_again(app_client: Any) -> None:
    _app, client, keys = app_client
    body = {"url": "https://erp.example/hooks", "events": ["product.labelled"]}
    assert client.post("/v1/webhooks", json=body, headers=keys["write"]).status_code == 403
    assert client.get("/v1/webhooks").status_code == 401
    made = client.post("/v1/webhooks", json=body, headers=keys["admin"])
    assert made.status_code == 201, made.text
    sub = made.json()
    assert sub["secret"].startswith("whsec_") and sub["active"] is True
    assert sub["deliveries"] == {"pending": 0, "delivered": 0, "failed": 0}
    listed = client.get("/v1/webhooks", headers=keys["admin"]).json()
    assert [s["id"] for s in listed] == [sub["id"]] and "secret" not in listed[0]
    assert sub["secret"] not in client.get(f"/v1/webhooks/{sub['id']}", headers=keys["admin"]).text
    for bad in ({"url": "ftp://erp.example/h", "events": ["product.labelled"]},
                {"url": "https://erp.example/h", "events": ["product.deleted"]},
                {"url": "https://erp.example/h", "events": []}):  # fmt: skip
        r = client.post("/v1/webhooks", json=bad, headers=keys["admin"])
        assert r.status_code == 422 and r.headers["content-type"] == "application/problem+json"
    changed = client.patch(
        f"/v1/webhooks/{sub['id']}",
        json={"active": False, "events": ["import.finished", "model.activated"]},
        headers=keys["admin"],
    )
    assert changed.status_code == 200
    assert changed.json()["events"] == ["import.finished", "model.activated"]
    assert client.patch(f"/v1/webhooks/{sub['id']}", json={"url": None},
                        headers=keys["admin"]).status_code == 422  # fmt: skip
    ping = client.post(f"/v1/webhooks/{sub['id']}/ping", headers=keys["admin"])
    assert ping.status_code == 409 and ping.json()["type"].endswith("/webhook-paused")
    assert client.delete(f"/v1/webhooks/{sub['id']}", headers=keys["admin"]).status_code == 204
    assert client.get(f"/v1/webhooks/{sub['id']}", headers=keys["admin"]).status_code == 404
    assert client.post("/v1/webhooks/deliveries/99/redeliver",
                       headers=keys["admin"]).status_code == 404  # fmt: skip


def test_a_ping_is_delivered_signed_by_the_leader_and_can_be_sent_again(app_client: Any) -> None:
    _app, client, keys = app_client
    with receiving(500) as receiver:
        body = {"url": receiver.url, "events": ["import.finished"], "description": "test"}
        sub = client.post("/v1/webhooks", json=body, headers=keys["admin"]).json()
        ping = client.post(f"/v1/webhooks/{sub['id']}/ping", headers=keys["admin"])
        assert ping.status_code == 202 and ping.json()["state"] == "pending"
        log = f"/v1/webhooks/{sub['id']}/deliveries"

        def attempted() -> Any:
            rows = client.get(log, headers=keys["admin"]).json()
            return rows if rows[0]["attempts"] else None

        (row,) = _until(attempted)  # the receiver answered 500: retried in a minute
        assert (row["state"], row["last_status"]) == ("pending", 500)
        assert row["next_attempt_at"] is not None
        again = client.post(f"/v1/webhooks/deliveries/{row['id']}/redeliver", headers=keys["admin"])
        assert again.status_code == 202
        _until(lambda: client.get(log, headers=keys["admin"]).json()[0]["state"] == "delivered")
        headers, sent = receiver.requests[-1]
        verify(sub["secret"], sent, headers[HEADER])
        assert json.loads(sent)["data"]["subscription_id"] == sub["id"]
        delivered = client.get(log, params={"state": "delivered"}, headers=keys["admin"]).json()
        assert [d["id"] for d in delivered] == [row["id"]]
        assert delivered[0]["attempts"] == 1  # redelivery starts a fresh set of attempts


def _csrf(client: TestClient, user: str) -> dict[str, str]:
    page = client.get("/admin/login")
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)  # type: ignore[union-attr]
    client.post("/admin/login", data={"username": user, "password": PASSWORD, "csrf_token": token})
    page = client.get("/admin/webhooks")
    return {"X-CSRF-Token": re.search(r'name="csrf-token" content="([^"]+)"', page.text).group(1)}  # type: ignore[union-attr]


def test_the_webhooks_page_creates_pauses_pings_and_deletes(app_client: Any) -> None:
    app, client, _keys = app_client
    h = _csrf(client, "alice")
    page = client.get("/admin/webhooks")
    assert 'href="/admin/webhooks" aria-current="page"' in page.text
    assert "No webhooks yet." in page.text
    bad = client.post("/admin/webhooks", data={"url": "https://x.example/h"}, headers=h)
    assert bad.status_code == 422 and "one or more" in bad.text
    with receiving() as receiver:
        made = client.post(
            "/admin/webhooks",
            data={"url": receiver.url, "events": ["product.corrected", "import.finished"]},
            headers=h,
        )
        assert made.status_code == 200
        (secret,) = re.findall(r"whsec_[\w-]+", made.text)
        assert secret not in client.get("/admin/webhooks").text  # shown once only
        (sub,) = app.state.runtime.webhooks.subscriptions()
        assert sub["events"] == ["product.corrected", "import.finished"]
        paused = client.post(f"/admin/webhooks/{sub['id']}/active", data={"active": "no"},
                             headers=h)  # fmt: skip
        assert f'id="webhook-{sub["id"]}" data-active="no"' in paused.text
        assert client.post(f"/admin/webhooks/{sub['id']}/ping", headers=h).status_code == 409
        client.post(f"/admin/webhooks/{sub['id']}/active", data={"active": "yes"}, headers=h)
        assert "Ping queued" in client.post(f"/admin/webhooks/{sub['id']}/ping", headers=h).text
        _until(lambda: 'data-state="delivered"' in client.get("/admin/webhooks/log").text)
        verify(secret, receiver.requests[0][1], receiver.requests[0][0][HEADER])
    gone = client.post(f"/admin/webhooks/{sub['id']}/delete", headers=h)
    assert "Deleted webhook" in gone.text and "No webhooks yet." in gone.text


def test_an_analyst_sees_the_webhooks_but_changes_nothing(app_client: Any) -> None:
    app, client, _keys = app_client
    sub = app.state.runtime.webhooks.subscribe("https://erp.example/h", ["import.finished"])
    h = _csrf(client, "ana")
    page = client.get("/admin/webhooks")
    assert (
        "erp.example" in page.text and "read-only" in page.text and "Add webhook" not in page.text
    )
    assert client.post(f"/admin/webhooks/{sub['id']}/delete", headers=h).status_code == 403
    assert app.state.runtime.webhooks.subscriptions()
