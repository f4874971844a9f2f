"""The command line on a small real catalog: import, analyze, search, similar, keys."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from vitrine.cli import app

pytestmark = pytest.mark.integration


@pytest.fixture()
def env(tmp_path: Path, model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "home"
    home.mkdir()
    (home / "models").symlink_to(model_dir, target_is_directory=True)
    monkeypatch.setenv("VITRINE_HOME", str(home))
    monkeypatch.setenv("VITRINE_IMPORT_WORKERS", "0")
    return home


def small_catalog(data_dir: Path, tmp_path: Path, n: int = 40) -> tuple[Path, Path]:
    src = data_dir / "fashion-small"
    lines = (src / "styles.csv").read_text().splitlines()
    images = tmp_path / "images"
    images.mkdir()
    kept = [lines[0]]
    for line in lines[1:]:
        pid = line.split(",", 1)[0]
        if (src / "images" / f"{pid}.jpg").is_file():
            shutil.copy(src / "images" / f"{pid}.jpg", images / f"{pid}.jpg")
            kept.append(line)
        if len(kept) > n:
            break
    csv_path = tmp_path / "styles.csv"
    csv_path.write_text("\n".join(kept) + "\n")
    return csv_path, images


def test_import_analyze_search_similar(env: Path, data_dir: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    csv_path, images = small_catalog(data_dir, tmp_path)
    result = runner.invoke(
        app, ["import-catalog", str(csv_path), "--images", str(images), "--no-progress"]
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["imported"] == 40 and summary["rejected"] == 0

    photo = sorted(images.glob("*.jpg"))[0]
    result = runner.invoke(app, ["analyze", str(photo)])
    assert result.exit_code == 0, result.output
    analysis = json.loads(result.stdout)
    assert analysis["colors"]["colors"][0]["name"]
    assert len(analysis["colors"]["colors"][0]["lab"]) == 3
    assert analysis["labels"] and 0 <= analysis["labels"][0]["confidence"] <= 1
    assert analysis["embedding"]["dim"] == 1280
    assert {"texture", "shape", "pattern"} <= set(analysis)

    result = runner.invoke(app, ["search", str(photo), "-k", "3"])
    assert result.exit_code == 0, result.output
    hits = json.loads(result.stdout)["results"]
    assert hits[0]["product_id"] == photo.stem and len(hits) == 3

    result = runner.invoke(app, ["search", str(photo), "-k", "3", "--filter", "gender=Nobody"])
    assert result.exit_code == 0 and json.loads(result.stdout)["results"] == []

    result = runner.invoke(app, ["similar", photo.stem, "-k", "2"])
    assert result.exit_code == 0, result.output
    assert photo.stem not in [h["product_id"] for h in json.loads(result.stdout)["results"]]

    result = runner.invoke(app, ["similar", "no-such-product"])
    assert result.exit_code == 2 and "not in the catalog" in result.stderr


def test_bad_image_and_keys(env: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"PK\x03\x04 not really")
    result = runner.invoke(app, ["analyze", str(bad)])
    assert result.exit_code == 2 and "not an image" in result.stderr

    result = runner.invoke(app, ["keys", "create", "--name", "shop", "--scope", "write"])
    assert result.exit_code == 0
    key = result.stdout.strip()
    assert key.startswith("vtr_")
    listing = runner.invoke(app, ["keys", "list"])
    assert key not in listing.stdout and '"scope": "write"' in listing.stdout
    assert runner.invoke(app, ["keys", "revoke", "shop"]).exit_code == 0
    assert runner.invoke(app, ["keys", "revoke", "shop"]).exit_code == 2
