"""Classification on a real catalog slice: import, train, evaluate, label on arrival,
export, and the pattern tag trained on an H&M slice applied to another catalog."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from vitrine.api.views import product_out
from vitrine.cli import app
from vitrine.config import load_settings
from vitrine.jobs.bulk_import import import_catalog
from vitrine.runtime import Runtime

pytestmark = pytest.mark.integration
FIELDS = ["masterCategory", "subCategory", "articleType"]


def fashion_rows(data_dir: Path, tmp: Path, start: int, n: int, name: str) -> tuple[Path, Path]:
    src = data_dir / "fashion-small"
    images = tmp / f"images-{name}"
    images.mkdir()
    with (src / "styles.csv").open(newline="") as handle:
        reader = csv.DictReader(handle)
        rows = [r for r in reader if (src / "images" / f"{r['id']}.jpg").is_file()]
        header = reader.fieldnames
    rows = rows[start : start + n]
    for r in rows:
        shutil.copy(src / "images" / f"{r['id']}.jpg", images / f"{r['id']}.jpg")
    csv_path = tmp / f"{name}.csv"
    with csv_path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=header)
        writer.writeheader()
        writer.writerows(rows)
    return csv_path, images


def test_train_label_export_and_pattern_tag(
    data_dir: Path, model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / "models").symlink_to(model_dir, target_is_directory=True)
    monkeypatch.setenv("VITRINE_HOME", str(home))
    monkeypatch.setenv("VITRINE_IMPORT_WORKERS", "0")
    vitrine = Runtime(load_settings(env={}).with_overrides(home=home))
    train_csv, train_images = fashion_rows(data_dir, tmp_path, 0, 300, "train")
    report = import_catalog(vitrine, train_csv, train_images, workers=0, progress=False)
    assert report.imported == 300
    # Imported before any model: no model labels.
    assert vitrine.store.labels(source="model") == []

    rows = vitrine.classification.train(FIELDS, groups=["embedding"])
    by_field = {r["field"]: r for r in rows}
    assert all(r["active"] for r in rows)
    master = by_field["masterCategory"]["metrics"]
    assert master["all"]["accuracy"] >= 0.85
    article = by_field["articleType"]["metrics"]
    assert article["hierarchy"]["fields"] == FIELDS
    assert article["rare"]["classes"], "300 products leave some article types rare"
    rare_eval = article["rare"]["evaluation_rows"]
    assert (
        sum(c["support"] for c in article["all"]["per_class"].values())
        == article["split"]["evaluation"]
    )
    assert rare_eval <= article["split"]["evaluation"]

    # The pattern tag, trained on an H&M slice with its own photos (not imported).
    runner = CliRunner()
    result = runner.invoke(
        app,
        [
            "train-tag", "pattern",
            "--csv", str(data_dir / "hm" / "articles.csv"),
            "--images", str(data_dir / "hm" / "images"),
            "--column", "graphical_appearance_name",
            "--id-column", "article_id",
            "--image-path", "{article_id[:3]}/{article_id}.jpg",
            "--limit", "160",
            "--groups", "embedding+pattern+texture",
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    tag = json.loads(result.output)[0]
    assert tag["field"] == "tag:pattern" and tag["kind"] == "tag" and tag["active"]
    assert vitrine.store.count_products() == 300  # the H&M photos were not stored

    # Products imported now are labelled on arrival, with the pattern tag too.
    vitrine.classification._checked = 0.0
    new_csv, new_images = fashion_rows(data_dir, tmp_path, 300, 30, "new")
    import_catalog(vitrine, new_csv, new_images, workers=0, progress=False)
    new_ids = {line.split(",", 1)[0] for line in new_csv.read_text().splitlines()[1:]}
    labels = vitrine.store.labels(source="model", product_ids=new_ids)
    assert {r["field"] for r in labels} == {*FIELDS, "tag:pattern"}
    assert all(r["model_version"] and 0 < r["confidence"] <= 1 for r in labels)
    product = vitrine.store.get_product(sorted(new_ids)[0])
    out = product_out(product)
    assert out.tags["pattern"]["source"] == "model"
    assert out.categories["masterCategory"]["source"] == "human"  # the CSV had it
    assert out.categories["masterCategory"]["predicted"]["source"] == "model"
    vitrine.close()

    # Evaluate, feedback and export through the command line.
    result = runner.invoke(app, ["evaluate", "--field", "articleType"])
    assert result.exit_code == 0, result.output
    assert "macro" in result.output and "rare classes" in result.output
    pid = sorted(new_ids)[1]
    assert runner.invoke(app, ["feedback", pid, "articleType", "Kurtas"]).exit_code == 0
    bad = runner.invoke(app, ["feedback", "no-such-id", "articleType", "Kurtas"])
    assert bad.exit_code != 0 and "does not exist" in bad.output
    out_csv = tmp_path / "labels.csv"
    result = runner.invoke(app, ["export-labels", str(out_csv)])
    assert result.exit_code == 0, result.output
    exported = {r["product_id"]: r for r in csv.DictReader(out_csv.open())}
    assert len(exported) == 330
    assert exported[pid]["articleType"] == "Kurtas"
    assert exported[pid]["articleType_source"] == "human"
    listed = json.loads(runner.invoke(app, ["models", "list"]).output)
    assert {m["field"] for m in listed} == {*FIELDS, "tag:pattern"}
