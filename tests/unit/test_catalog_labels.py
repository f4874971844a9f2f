"""Training labels the catalog that is already there, through a background job."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from test_classify import EMB_VERSION, _store_synthetic, synthetic

from vitrine.catalog.store import HUMAN, MODEL
from vitrine.classify.predictor import FieldPredictions
from vitrine.classify.service import label_rows
from vitrine.cluster.job_queue import LABEL_CATALOG, TRAIN_CLASSIFIER, JobError, JobRunner
from vitrine.config import load_settings
from vitrine.jobs.background import job_handlers
from vitrine.runtime import Runtime


@pytest.fixture()
def shop(tmp_path: Path) -> Runtime:
    settings = load_settings(env={}).with_overrides(
        home=tmp_path / "home", classify_feature_groups="embedding"
    )
    runtime = Runtime(settings)
    service = runtime.classification_for(EMB_VERSION)
    service.on_activated = runtime.label_catalog  # as the runtime wires the one in service
    runtime.override(classification=service)
    yield runtime
    runtime.close()


def test_training_queues_a_job_that_labels_every_product_left_open(shop: Runtime) -> None:
    blocks, labels = synthetic(per_class=30, seed=7)
    truth = labels["articleType"].values
    open_ids = blocks.ids[::3]  # the shop left a third of the products without a type
    attributes = {p: {} if p in open_ids else {"articleType": v} for p, v in truth.items()}
    _store_synthetic(shop, blocks, attributes)
    shop.classification.feedback(open_ids[0], "articleType", truth[open_ids[0]])

    shop.classification.train(["articleType"], groups=["embedding"], min_support=5)
    queued = shop.jobs.running()
    assert [(j["kind"], j["state"], j["params"]["fields"]) for j in queued] == [
        (LABEL_CATALOG, "queued", ["articleType"])
    ]
    finished = JobRunner(shop.jobs.store, job_handlers(shop)).run_queued()
    job = finished[0]
    assert job["state"] == "done", job["error"]
    assert job["result"]["labelled"] == len(open_ids) - 1  # the person's label stays
    assert job["done"] == job["total"] == len(open_ids) - 1

    rows = shop.store.labels(fields=["articleType"], source=MODEL)
    labelled = {r["product_id"]: r for r in rows}
    assert set(labelled) == set(open_ids[1:])  # never over a shop value or a person's label
    accuracy = sum(labelled[p]["value"] == truth[p] for p in labelled) / len(labelled)
    assert accuracy > 0.8
    assert {r["model_version"] for r in rows} == {"articleType-v1"}
    human = shop.store.labels(fields=["articleType"], source=HUMAN)
    assert [r["product_id"] for r in human] == [open_ids[0]]

    # Labelled by the active version already: nothing to do, unless asked to relabel.
    shop.label_catalog(["articleType"])
    again = JobRunner(shop.jobs.store, job_handlers(shop)).run_queued()[0]
    assert again["result"]["labelled"] == 0
    shop.label_catalog(["articleType"], relabel=True)
    forced = JobRunner(shop.jobs.store, job_handlers(shop)).run_queued()[0]
    assert forced["result"]["labelled"] == len(open_ids) - 1


def test_jobs_queue_dedupe_cancel_and_fail_with_a_message(shop: Runtime) -> None:
    first = shop.label_catalog(["articleType"])
    assert shop.label_catalog(["articleType"])["id"] == first["id"]  # queued once
    assert shop.jobs.cancel(first["id"]) == "cancelled"
    assert shop.jobs.cancel(999) is None
    bad = shop.jobs.submit(TRAIN_CLASSIFIER, {"fields": []})
    runner = JobRunner(shop.jobs.store, job_handlers(shop))
    [failed] = runner.run_queued()
    assert failed["id"] == bad["id"] and failed["state"] == "failed"
    assert failed["error"] == "name at least one field to train"
    with pytest.raises(JobError, match="unknown job kind"):
        shop.jobs.submit("nope", {})


def test_a_job_whose_result_cannot_be_stored_fails_instead_of_running_forever(
    shop: Runtime,
) -> None:
    job = shop.label_catalog(["articleType"])
    handlers = {LABEL_CATALOG: lambda params, progress: {"when": datetime.now(UTC)}}
    [ended] = JobRunner(shop.jobs.store, handlers).run_queued()
    assert ended["id"] == job["id"] and ended["state"] == "failed"
    assert ended["error"].startswith("result not storable")


def test_a_product_of_a_rare_class_is_labelled_with_the_likeliest_named_class() -> None:
    classes = np.array(["(other)", "Jeans", "Tshirts"], dtype=object)
    pred = FieldPredictions(
        "articleType",
        value=np.array([None, "Tshirts"], dtype=object),
        confidence=np.array([0.7, 0.9]),
        needs_review=np.array([True, False]),
        reason=["a rare class", None],
        proba=np.array([[0.7, 0.1, 0.2], [0.05, 0.05, 0.9]]),
        classes=classes,
        version="articleType-v1",
    )
    rows = label_rows({"articleType": pred}, ["a", "b"], {"a": {"articleType"}, "b": set()})
    assert [(r["product_id"], r["value"], r["needs_review"]) for r in rows] == [
        ("a", "Tshirts", True)  # b did not want the field
    ]
    only_other = FieldPredictions(
        "f",
        np.array([None], dtype=object),
        np.array([1.0]),
        np.array([True]),
        [None],
        np.array([[1.0]]),
        np.array(["(other)"], dtype=object),
        None,
    )
    assert only_other.label_value(0) == "(other)"
