"""``vitrine train --finetune`` on a small real catalog: a new embedding version is exported,
the catalog is re-embedded and indexed with it beside the old one, heads are trained on
it (inactive), and configuring that version serves search from the new index."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_cli import small_catalog
from typer.testing import CliRunner

from vitrine.cli import app
from vitrine.vision.onnx_export import export_onnx

pytestmark = pytest.mark.integration


@pytest.fixture()
def home(tmp_path: Path, model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "home"
    models = home / "models"
    models.mkdir(parents=True)
    base = export_onnx(model_dir)
    (models / base.name).symlink_to(base)  # new models land here, not in the shared cache
    monkeypatch.setenv("VITRINE_HOME", str(home))
    monkeypatch.setenv("VITRINE_IMPORT_WORKERS", "0")
    return home


def test_train_finetune_reembeds_indexes_and_switches_by_configuration(
    home: Path, data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    runner = CliRunner()
    csv_path, images = small_catalog(data_dir, tmp_path, n=48)
    result = runner.invoke(
        app, ["import-catalog", str(csv_path), "--images", str(images), "--no-progress"]
    )
    assert result.exit_code == 0, result.output
    bad = runner.invoke(app, ["train", "--finetune", "--fields", "gender", "--budget-minutes", "0"])
    assert bad.exit_code == 2 and "budget" in bad.stderr

    args = ["train", "--finetune", "--fields", "masterCategory,gender", "--min-support", "3"]
    args += ["--budget-minutes", "0.25", "--trainable-blocks", "1"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    version = out["model"]["version"]
    assert "-ft" in version and out["reembedded"] == 48 and out["indexed"] == 48
    assert (home / "models" / f"{version}.onnx").is_file()
    record = json.loads((home / "models" / f"{version}.json").read_text())
    assert set(record["fields"]) == {"masterCategory", "gender"} and record["products"] == 48
    assert (home / "index" / f"{version}.faiss").is_file()
    assert [h["active"] for h in out["heads"]] == [False, False]
    assert {h["embedding_version"] for h in out["heads"]} == {version}

    # Switched by configuration: search serves the new version's index.
    monkeypatch.setenv("VITRINE_EMBEDDING_MODEL", version)
    photo = sorted(images.glob("*.jpg"))[0]
    result = runner.invoke(app, ["similar", photo.stem, "-k", "3"])
    assert result.exit_code == 0, result.output
    assert len(json.loads(result.stdout)["results"]) == 3
    result = runner.invoke(app, ["search", str(photo), "-k", "1"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["results"][0]["product_id"] == photo.stem
