"""The Models & jobs pages through FastAPI's test client, on a small shop whose classifiers
were trained on synthetic photo features (no CNN): versions with held-out metrics, the
detail and compare pages, training / labelling / evaluating as background jobs (run by the
app's own job runner), activation and roll-back, bad input and the read-only role."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from test_classify import EMB_VERSION, _store_synthetic, synthetic

from vitrine.api.app import create_app
from vitrine.classify.finetune.export import base_version
from vitrine.config import load_settings
from vitrine.runtime import Runtime

PASSWORD = "correct horse battery"
FIELDS = ("articleType", "masterCategory")
T0 = datetime.now(UTC) - timedelta(days=20)
FINISHED = ("done", "failed", "cancelled")


def open_shop(home: Path, events: bool = False) -> Any:
    """An app over a shop of ~120 products with stored features, two versions of
    articleType (v2 active) and one of masterCategory; with ``events``, 40 customers'
    purchases and recommendation models trained on them."""
    settings = load_settings(env={}).with_overrides(
        home=home,
        admin_recall_check_minutes=0,
        recommend_retrain_minutes=0,
        classify_feature_groups="embedding",
    )
    app = create_app(settings, warm=False)
    runtime: Runtime = app.state.admin.vitrine
    service = runtime.classification_for(EMB_VERSION)
    service.on_activated = runtime.label_catalog  # as the runtime wires the one in service
    runtime.override(classification=service)
    blocks, labels = synthetic(per_class=16, seed=7)
    attributes = {p: {f: labels[f].values[p] for f in FIELDS} for p in blocks.ids}
    _store_synthetic(runtime, blocks, attributes)
    service.train(list(FIELDS), groups=["embedding"], min_support=5)
    service.train(["articleType"], groups=["embedding"], min_support=5, activate="always")
    if events:
        ids = blocks.ids
        runtime.recommendations.add_events(
            [
                {
                    "user_id": f"u{u}",
                    "product_id": ids[(7 * u + 3 * j) % len(ids)],
                    "type": "purchase",
                    "timestamp": T0 + timedelta(days=u % 15 + j),
                }
                for u in range(40)
                for j in range(3)
            ]
        )
        runtime.recommendations.train()
    admin = app.state.admin
    admin.users.create("alice", PASSWORD, "admin")
    admin.users.create("ana", PASSWORD, "analyst")
    return app


def sign_in(client: TestClient, user: str) -> dict[str, str]:
    """Sign in; returns the CSRF header of the session."""
    page = client.get("/admin/login")
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)  # type: ignore[union-attr]
    form = {"username": user, "password": PASSWORD, "csrf_token": token}
    client.post("/admin/login", data=form, follow_redirects=False)  # not to the overview
    page = client.get("/admin/models")
    return {"X-CSRF-Token": re.search(r'name="csrf-token" content="([^"]+)"', page.text).group(1)}  # type: ignore[union-attr]


@pytest.fixture()
def shop(
    tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[tuple[Runtime, TestClient, dict[str, str]]]:
    app = open_shop(tmp_path / "home", events=bool(getattr(request, "param", False)))
    with TestClient(app) as client:
        yield app.state.admin.vitrine, client, sign_in(client, "alice")


with_events = pytest.mark.parametrize("shop", [True], indirect=True, ids=["events"])


def wait_for(runtime: Runtime, job_id: int, seconds: float = 30) -> dict[str, Any]:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        job = runtime.jobs.get(job_id)
        assert job is not None
        if job["state"] in FINISHED:
            return job
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} did not finish: {runtime.jobs.get(job_id)}")


def versions(runtime: Runtime, field: str = "articleType") -> list[dict[str, Any]]:
    return runtime.classification.registry.list(field)


@with_events
def test_the_page_lists_every_version_with_its_held_out_figures(shop: Any) -> None:
    runtime, client, _ = shop
    page = client.get("/admin/models")
    assert page.status_code == 200
    assert '<a href="/admin/models" aria-current="page">Models &amp; jobs</a>' in page.text
    v1, v2 = versions(runtime)
    for v in (v1, v2):
        assert f'href="/admin/models/{v["id"]}"' in page.text
    accuracy = v2["metrics"]["all"]["accuracy"]
    assert f"active {v2['version']}</span>" in page.text
    assert f"accuracy {100 * accuracy:.1f}%" in page.text
    assert "masterCategory-v1" in page.text
    # The training form offers the shop's fields; the jobs panel and recommendations show.
    assert 'name="fields" value="articleType" checked' in page.text
    assert 'id="jobs"' in page.text and 'hx-post="/admin/models/train"' in page.text
    assert "40 customers" in page.text and "Retrain recommendations" in page.text
    split = re.search(r'name="split" type="date" value="([\d-]+)"', page.text).group(1)  # type: ignore[union-attr]
    last_event = (T0 + timedelta(days=16)).date()  # a week before the last event
    assert datetime.fromisoformat(split).date() == last_event - timedelta(days=7)
    # The overview lists the active classifiers among its active models.
    overview = client.get("/admin").text
    assert f'<a class="mono" href="/admin/models/{v2["id"]}">articleType-v2</a>' in overview
    assert "masterCategory-v1" in overview and f"accuracy {100 * accuracy:.1f}%" in overview


def test_a_version_shows_per_class_scores_confusions_and_calibration(shop: Any) -> None:
    runtime, client, _ = shop
    v1, v2 = versions(runtime)
    page = client.get(f"/admin/models/{v2['id']}")
    assert page.status_code == 200
    assert "articleType-v2" in page.text and 'aria-current="page"' in page.text
    per_class = v2["metrics"]["all"]["per_class"]
    for label in per_class:
        assert f'<th scope="row">{label}' in page.text
    assert 'data-testid="heatmap"' in page.text and "background: rgba(" in page.text
    assert 'id="chart-reliability"' in page.text and "Observed accuracy" in page.text
    assert "Roll back to the previous version" in page.text  # v1 was active before
    assert f'hx-post="/admin/models/{v1["id"]}/activate"' not in page.text  # only on v1's page
    older = client.get(f"/admin/models/{v1['id']}")
    assert f'hx-post="/admin/models/{v1["id"]}/activate"' in older.text


def test_two_versions_side_by_side(shop: Any) -> None:
    runtime, client, _ = shop
    v1, v2 = versions(runtime)
    page = client.get(f"/admin/models/compare?a={v1['id']}&b={v2['id']}")
    assert page.status_code == 200
    assert 'Compare <span class="mono">articleType-v1</span>' in page.text
    assert "F1 per class" in page.text and "Shirts" in page.text
    other = versions(runtime, "masterCategory")[0]
    mixed = client.get(f"/admin/models/compare?a={v1['id']}&b={other['id']}")
    assert mixed.status_code == 422 and "different fields" in mixed.text
    assert client.get(f"/admin/models/compare?a={v1['id']}").status_code == 422
    assert client.get("/admin/models/compare?a=1&b=999").status_code == 404
    assert client.get("/admin/models/compare?a=x&b=1").status_code == 404


def test_training_from_the_form_runs_as_a_job(shop: Any) -> None:
    runtime, client, h = shop
    form = {"fields": ["masterCategory"], "activate": "always", "groups": "embedding"}
    response = client.post("/admin/models/train", data=form, headers=h)
    assert response.status_code == 202, response.text
    assert "Training masterCategory is queued" in response.text
    assert response.headers["HX-Trigger"] == "jobs-changed"
    job_id = int(re.search(r"Job #(\d+)", response.text).group(1))  # type: ignore[union-attr]
    job = wait_for(runtime, job_id)
    assert job["state"] == "done", job["error"]
    assert job["params"] == {
        "fields": ["masterCategory"],
        "activate": "always",
        "groups": "embedding",
    }
    assert job["created_by"] == "admin alice"
    new = versions(runtime, "masterCategory")[-1]
    assert new["version"] == "masterCategory-v2" and new["active"]
    labelling = runtime.jobs.latest(1, ("label_catalog",))[0]  # queued by the activation
    wait_for(runtime, labelling["id"])
    panel = client.get("/admin/models/jobs").text
    assert "masterCategory-v2 (accuracy" in panel and "every 2s" not in panel

    bad = {
        "nothing chosen": ({"fields": []}, "at least one field"),
        "unknown field": ({"fields": ["colour"]}, "No product has a value for colour"),
        "bad policy": ({"fields": ["articleType"], "activate": "maybe"}, "Activation must be"),
        "bad groups": ({"fields": ["articleType"], "groups": "sound"}, "Unknown feature groups"),
        "bad support": ({"fields": ["articleType"], "min_support": "many"}, "whole number"),
        "zero support": ({"fields": ["articleType"], "min_support": "0"}, "1 to 100,000"),
    }
    for case, (data, message) in bad.items():
        refused = client.post("/admin/models/train", data=data, headers=h)
        assert refused.status_code == 422 and message in refused.text, case


def test_relabelling_the_catalog_queues_a_job(shop: Any) -> None:
    runtime, client, h = shop
    response = client.post("/admin/models/label-catalog", headers=h)
    assert response.status_code == 202 and "labelled again" in response.text
    job_id = int(re.search(r"Job #(\d+)", response.text).group(1))  # type: ignore[union-attr]
    job = wait_for(runtime, job_id)
    assert job["kind"] == "label_catalog" and job["params"] == {"fields": None, "relabel": True}
    assert job["state"] == "done", job["error"]
    assert job["created_by"] == "admin alice"


def test_activate_and_roll_back(shop: Any) -> None:
    runtime, client, h = shop
    v1, v2 = versions(runtime)
    done = client.post(f"/admin/models/{v1['id']}/activate", headers=h)
    assert done.status_code == 202 and "articleType-v1 is now active" in done.text
    assert "models-changed" in done.headers["HX-Trigger"]
    assert [v["active"] for v in versions(runtime)] == [True, False]
    jobs = runtime.jobs.latest(5, ("label_catalog",))
    assert jobs and jobs[0]["params"]["fields"] == ["articleType"]
    # v1 is the oldest: nothing to roll back to.
    refused = client.post("/admin/models/rollback", data={"field": "articleType"}, headers=h)
    assert refused.status_code == 422 and "no earlier active version" in refused.text
    client.post(f"/admin/models/{v2['id']}/activate", headers=h)
    back = client.post("/admin/models/rollback", data={"field": "articleType"}, headers=h)
    assert back.status_code == 202 and "articleType-v1 is active again" in back.text
    assert [v["active"] for v in versions(runtime)] == [True, False]
    unknown = client.post("/admin/models/rollback", data={"field": "nope"}, headers=h)
    assert unknown.status_code == 422 and "no active model" in unknown.text


def test_bad_ids_and_input_are_4xx_with_a_message(shop: Any) -> None:
    _, client, h = shop
    for path in ("/admin/models/abc", "/admin/models/999999", "/admin/models/²", "/admin/models/0"):
        page = client.get(path)
        assert page.status_code == 404 and "There is no model version" in page.text, path
    huge = client.get("/admin/models/" + "9" * 30)
    assert huge.status_code == 404
    assert client.post("/admin/models/999/activate", headers=h).status_code == 404
    assert client.post("/admin/models/x/activate", headers=h).status_code == 404
    cancel = client.post("/admin/models/jobs/424242/cancel", headers=h)
    assert cancel.status_code == 404 and "There is no job 424242" in cancel.text
    assert cancel.headers["HX-Retarget"] == "#job-notice"
    # Without recommendation models yet, the page says so.
    assert "No recommendation model is loaded yet" in client.get("/admin/models").text


@with_events
def test_recommendations_retrain_and_evaluate_as_jobs(shop: Any) -> None:
    runtime, client, h = shop
    for form, message in (
        ({"split": "soon"}, "is not a date"),
        ({"split": "2001-01-01"}, "The events run from"),
        ({"split": T0.date().isoformat(), "k": "ten"}, "whole number"),
        ({"split": T0.date().isoformat(), "k": "0"}, "1 to 100"),
        ({"split": (T0 + timedelta(days=10)).date().isoformat(), "test_days": "-1"}, "Test days"),
    ):
        refused = client.post("/admin/models/recommendations/evaluate", data=form, headers=h)
        assert refused.status_code == 422 and message in refused.text, form
    split = (T0 + timedelta(days=12)).date().isoformat()
    response = client.post(
        "/admin/models/recommendations/evaluate", data={"split": split, "k": "6"}, headers=h
    )
    assert response.status_code == 202, response.text
    job = wait_for(runtime, int(re.search(r"Job #(\d+)", response.text).group(1)))  # type: ignore[union-attr]
    assert job["state"] == "done", job["error"]
    page = client.get("/admin/models").text
    assert f"split {split} · k = 6" in page and "map@6" in page
    assert '<span class="badge">baseline</span>' in page and "popularity_4w" in page
    retrain = client.post("/admin/models/recommendations/train", headers=h)
    assert retrain.status_code == 202 and "Retraining" in retrain.text
    job = wait_for(runtime, int(re.search(r"Job #(\d+)", retrain.text).group(1)))  # type: ignore[union-attr]
    assert job["state"] == "done", job["error"]
    assert "algorithms on 120 events" in client.get("/admin/models/jobs").text


def test_the_jobs_panel_polls_only_while_a_job_waits_or_runs(shop: Any) -> None:
    runtime, client, h = shop
    for job in runtime.jobs.latest(20):
        wait_for(runtime, job["id"])  # the labelling queued by the training above
    idle = client.get("/admin/models/jobs")
    assert "every 2s" not in idle.text and "HX-Trigger" not in idle.headers
    # A kind no runner here handles stays queued until it is cancelled.
    job_id = runtime.jobs.store.insert("not_run_here", {}, "a test")
    waiting = client.get("/admin/models/jobs").text
    assert 'hx-trigger="jobs-changed from:body, every 2s"' in waiting
    assert f'hx-post="/admin/models/jobs/{job_id}/cancel"' in waiting
    cancelled = client.post(f"/admin/models/jobs/{job_id}/cancel", headers=h)
    assert cancelled.status_code == 200 and "every 2s" not in cancelled.text
    assert runtime.jobs.get(job_id)["state"] == "cancelled"  # type: ignore[index]
    last = client.get("/admin/models/jobs?polling=1")
    assert last.headers["HX-Trigger"] == "models-changed"  # the page refreshes its lists


def test_the_analyst_role_reads_but_cannot_change(tmp_path: Path) -> None:
    app = open_shop(tmp_path / "home")
    runtime = app.state.admin.vitrine
    with TestClient(app) as client:
        h = sign_in(client, "ana")
        v1 = versions(runtime)[0]
        page = client.get("/admin/models")
        assert page.status_code == 200 and "an admin trains" in page.text
        assert 'hx-post="/admin/models/train"' not in page.text
        assert client.get(f"/admin/models/{v1['id']}").status_code == 200
        for path, data in (
            ("/admin/models/train", {"fields": ["articleType"]}),
            ("/admin/models/label-catalog", {}),
            (f"/admin/models/{v1['id']}/activate", {}),
            ("/admin/models/rollback", {"field": "articleType"}),
            ("/admin/models/recommendations/train", {}),
            ("/admin/models/recommendations/evaluate", {"split": T0.date().isoformat()}),
            ("/admin/models/jobs/1/cancel", {}),
        ):
            denied = client.post(path, data=data, headers=h)
            assert denied.status_code == 403 and "read-only" in denied.text, path
        assert [v["active"] for v in versions(runtime)] == [False, True]
        # Without the session's CSRF token even an admin's change is refused.
        assert client.post("/admin/models/label-catalog").status_code == 403


def test_a_new_shop_says_what_to_do_first(tmp_path: Path) -> None:
    settings = load_settings(env={}).with_overrides(
        home=tmp_path / "home", admin_recall_check_minutes=0, recommend_retrain_minutes=0
    )
    app = create_app(settings, warm=False)
    app.state.admin.users.create("alice", PASSWORD, "admin")
    with TestClient(app) as client:
        h = sign_in(client, "alice")
        page = client.get("/admin/models")
        assert page.status_code == 200
        assert "No classifier yet" in page.text and "No background job yet" in page.text
        assert "nothing to learn from" not in page.text
        assert "No product has an attribute or a label to learn from yet" in page.text
        assert "No offline evaluation yet" in page.text
        relabel = client.post("/admin/models/label-catalog", headers=h)
        assert relabel.status_code == 422 and "train one first" in relabel.text
        assert client.get("/admin/models/1").status_code == 404


def test_the_cnn_panel_lists_versions_and_runs_fine_tuning_and_switch_as_jobs(shop: Any) -> None:
    runtime, client, h = shop
    base = base_version()
    page = client.get("/admin/models").text
    assert "Photo recognition (CNN)" in page and base in page
    assert "No fine-tuned version yet" in page
    # A fine-tuned version on disk whose network cannot load: its switch fails, and
    # nothing changes in service.
    version = f"{base}-ft0123456789ab"
    models = runtime.settings.model_dir
    models.mkdir(parents=True, exist_ok=True)
    (models / f"{version}.onnx").write_bytes(b"not a network")
    record = {"version": version, "base_version": base, "created_at": "2026-12-01T10:00:00Z",
              "method": "whole network", "input_size": 112, "products": 96,
              "fields": {"articleType": ["a", "b"]},
              "metrics": {"evaluation_accuracy": {"articleType": 0.875}}}  # fmt: skip
    (models / f"{version}.json").write_text(json.dumps(record))
    page = client.get("/admin/models").text
    assert version in page and "articleType 87.5%" in page and "Put in service" in page

    for form, message in (
        ({}, "Choose at least one field"),
        ({"fields": ["zzz"]}, "No product has a value for zzz"),
        ({"fields": ["articleType"], "epochs": "0"}, "Epochs are 1 to 50"),
        ({"fields": ["articleType"], "input_size": "100"}, "input size is one of"),
    ):
        bad = client.post("/admin/models/cnn/finetune", data=form, headers=h)
        assert bad.status_code == 422 and message in bad.text, form
    unknown = client.post("/admin/models/cnn/switch", data={"version": "nope"}, headers=h)
    assert unknown.status_code == 422 and "no CNN version &#39;nope&#39;" in unknown.text

    queued = client.post(
        "/admin/models/cnn/finetune", data={"fields": ["articleType"], "epochs": "1"}, headers=h
    )
    assert queued.status_code == 202 and "Fine-tuning the CNN on articleType" in queued.text
    job = runtime.jobs.latest(1, ("finetune_cnn",))[0]
    assert job["params"] == {"fields": ["articleType"], "epochs": 1, "input_size": 128,
                             "device": "auto"}  # fmt: skip
    finished = wait_for(runtime, job["id"], 60)  # these products have no readable photo
    assert finished["state"] == "failed" and "articleType" in finished["error"]

    switched = client.post("/admin/models/cnn/switch", data={"version": version}, headers=h)
    assert switched.status_code == 202 and f"Putting {version} in service" in switched.text
    job = runtime.jobs.latest(1, ("switch_cnn",))[0]
    assert wait_for(runtime, job["id"], 60)["state"] == "failed"
    assert runtime.cnn_version == base
    assert "Switch the CNN" in client.get("/admin/models/jobs").text
