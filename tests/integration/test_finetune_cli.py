"""``vitrine train --finetune`` and ``vitrine model switch`` on a small real catalog: the
whole network is fine-tuned and exported as a new embedding version, the catalog is
re-embedded and indexed with it beside the old one, heads are trained on it (inactive);
one command then puts the version, its index and its heads in service, and another
switches back."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from test_cli import small_catalog
from typer.testing import CliRunner

from vitrine.api.app import create_app
from vitrine.cli import app
from vitrine.config import load_settings
from vitrine.runtime import Runtime
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


def test_train_finetune_reembeds_indexes_and_switches_in_one_command(
    home: Path, data_dir: Path, tmp_path: Path
) -> None:
    runner = CliRunner()
    csv_path, images = small_catalog(data_dir, tmp_path, n=48)
    result = runner.invoke(
        app, ["import-catalog", str(csv_path), "--images", str(images), "--no-progress"]
    )
    assert result.exit_code == 0, result.output
    fields = "masterCategory,gender"
    result = runner.invoke(app, ["train", "--fields", fields, "--min-support", "3"])
    assert result.exit_code == 0, result.output  # heads on the pretrained CNN
    base = json.loads(runner.invoke(app, ["model", "versions"]).stdout)["in_service"]
    bad = runner.invoke(app, ["train", "--finetune", "--fields", "gender", "--budget-minutes", "0"])
    assert bad.exit_code == 2 and "budget" in bad.stderr
    bad = runner.invoke(app, ["train", "--finetune", "--fields", "gender", "--input-size", "300"])
    assert bad.exit_code == 2 and "input_size" in bad.stderr

    args = ["train", "--finetune", "--fields", fields, "--min-support", "3", "--epochs", "1"]
    result = runner.invoke(app, [*args, "--device", "auto"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    version = out["version"]
    assert "-ft" in version and out["reembedded"] == 48 and out["indexed"] == 48
    assert out["method"] == "whole network" and out["input_size"] == 128
    assert out["to_switch"] == f"vitrine model switch {version}"
    record = json.loads((home / "models" / f"{version}.json").read_text())
    assert set(record["fields"]) == {"masterCategory", "gender"} and record["products"] == 48
    assert (home / "index" / f"{version}.faiss").is_file()
    assert [h["active"] for h in out["heads"]] == [False, False]
    assert {h["embedding_version"] for h in out["heads"]} == {version}
    listed = json.loads(runner.invoke(app, ["model", "versions"]).stdout)
    assert listed["in_service"] == base
    assert [v["version"] for v in listed["versions"]] == [version]

    switch_live_in_a_running_server(home, version, base, sorted(images.glob("*.jpg"))[1])

    unknown = runner.invoke(app, ["model", "switch", "no-such-version"])
    assert unknown.exit_code == 2 and "no-such-version" in unknown.stderr
    result = runner.invoke(app, ["model", "switch", version])  # in service already
    assert result.exit_code == 0, result.output
    job = json.loads(result.stdout)
    assert job["state"] == "done" and job["result"]["changed"] is False
    listed = json.loads(runner.invoke(app, ["model", "versions"]).stdout)
    assert listed["in_service"] == version and listed["versions"][0]["in_service"]

    # Search serves the new version's index; the heads on it are active.
    photo = sorted(images.glob("*.jpg"))[0]
    result = runner.invoke(app, ["similar", photo.stem, "-k", "3"])
    assert result.exit_code == 0, result.output
    assert len(json.loads(result.stdout)["results"]) == 3
    result = runner.invoke(app, ["search", str(photo), "-k", "1"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["results"][0]["product_id"] == photo.stem
    models = json.loads(runner.invoke(app, ["models", "list"]).stdout)
    active = [m for m in models if m["active"]]
    assert {m["embedding_version"] for m in active} == {version}

    # And back, by the same command.
    result = runner.invoke(app, ["model", "switch", base])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["result"]["previous"] == version


def switch_live_in_a_running_server(home: Path, version: str, base: str, photo: Path) -> None:
    """POST /v1/cnn/switch: the server's own CNN and index swap in place (no restart), and
    a second process following the service settings swaps too."""
    settings = load_settings(env={}).with_overrides(home=home)
    other = Runtime(settings)  # another worker of the same shop, already serving
    assert other.search.model_version == base and other.embedder.model_version == base
    with TestClient(create_app(settings, warm=False)) as client:
        runtime = client.app.state.runtime
        admin = {"X-API-Key": runtime.keys.create("test-admin", "admin")[1]}
        embedder, search = runtime.embedder, runtime.search
        assert search.model_version == base
        listed = client.get("/v1/cnn", headers=admin).json()
        assert listed["in_service"] == base and not listed["versions"][0]["in_service"]
        missing = client.post("/v1/cnn/switch", json={"version": "x-ft1"}, headers=admin)
        assert missing.status_code == 404 and "x-ft1" in missing.json()["detail"]
        read = {"X-API-Key": runtime.keys.create("test-read", "read")[1]}
        forbidden = client.post("/v1/cnn/switch", json={"version": version}, headers=read)
        assert forbidden.status_code == 403
        job = client.post("/v1/cnn/switch", json={"version": version}, headers=admin)
        assert job.status_code == 202, job.text
        job_id = job.json()["id"]
        deadline = time.monotonic() + 120
        while (row := client.get(f"/v1/jobs/{job_id}", headers=admin).json())["state"] in (
            "queued",
            "running",
        ):
            assert time.monotonic() < deadline, row
            time.sleep(0.2)
        assert row["state"] == "done", row
        assert row["result"]["index"] == "loaded"  # built beside by the fine-tuning job
        # The same objects serve the new version: nothing was restarted or rebuilt.
        assert runtime.embedder is embedder and embedder.model_version == version
        assert runtime.search is search and search.model_version == version
        assert client.get("/v1/cnn", headers=admin).json()["in_service"] == version
        with photo.open("rb") as handle:
            found = client.post(
                "/v1/search/image", files={"image": ("q.jpg", handle, "image/jpeg")}, headers=read
            )
        assert found.status_code == 200 and found.json()["results"][0]["product_id"] == photo.stem
    other.follow_service_settings()  # what its change follower does every few seconds
    assert other.embedder.model_version == version and other.search.model_version == version
    other.close()
