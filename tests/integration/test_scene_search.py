"""Products in real photos on a small real catalog: the localiser is trained by its job
(command line), then a scene of two catalog products on a background that the
localiser never trained on is searched by the command line and the API, and a snapshot
of one product is searched by photo."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image
from test_cli import small_catalog
from typer.testing import CliRunner

from vitrine.api.app import create_app
from vitrine.cli import app
from vitrine.config import load_settings
from vitrine.vision.scenes import background, compose, cut_out, random_scene

pytestmark = pytest.mark.integration


@pytest.fixture()
def home(tmp_path: Path, model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "home"
    (home / "models").mkdir(parents=True)
    for name in ("efficientnet-lite0-*.onnx",):  # the shared exports, not made again
        for path in model_dir.glob(name):
            (home / "models" / path.name).symlink_to(path)
    monkeypatch.setenv("VITRINE_HOME", str(home))
    monkeypatch.setenv("VITRINE_IMPORT_WORKERS", "0")
    return home


def _jpeg(rgb: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(rgb).save(out, "JPEG", quality=90)
    return out.getvalue()


def test_scene_search_finds_catalog_products_in_a_composed_photo(
    home: Path, data_dir: Path, tmp_path: Path
) -> None:
    runner = CliRunner()
    csv_path, images = small_catalog(data_dir, tmp_path, n=120)
    result = runner.invoke(
        app, ["import-catalog", str(csv_path), "--images", str(images), "--no-progress"]
    )
    assert result.exit_code == 0, result.output

    rng = np.random.default_rng(7)
    photos = sorted(images.glob("*.jpg"))
    cutouts = [
        c
        for p in photos
        if (c := cut_out(np.asarray(Image.open(p).convert("RGB")), p.stem)) is not None
    ]
    scene = random_scene(cutouts, "test", rng, count=2)
    scene_path = tmp_path / "scene.jpg"
    scene_path.write_bytes(_jpeg(scene.image))

    before = runner.invoke(app, ["search-scene", str(scene_path)])
    assert before.exit_code == 2 and "no localiser is trained" in before.stderr

    result = runner.invoke(app, ["localizer", "train", "--products", "100", "--scenes", "160"])
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout)
    assert record["catalog_products"] == 120 and record["cutouts"] >= 60
    evaluation = record["evaluation"]
    assert 0 <= evaluation["product_recall_iou50"] <= 1 and evaluation["test_scenes"] >= 60
    shown = json.loads(runner.invoke(app, ["localizer", "show"]).stdout)
    assert shown["version"] == record["version"]

    result = runner.invoke(app, ["search-scene", str(scene_path), "-k", "10"])
    assert result.exit_code == 0, result.output
    objects = json.loads(result.stdout)["objects"]
    assert objects, "no product found in a photo of two"
    height, width = scene.image.shape[:2]
    for obj in objects:
        x0, y0, x1, y1 = obj["box"]
        assert 0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height
        assert len(obj["results"]) == 10 and obj["category"] is None  # no classifier yet
    found = {r["id"] for obj in objects for r in obj["results"]}
    assert found & set(scene.product_ids), (scene.product_ids, objects)

    with TestClient(create_app(load_settings(), warm=False)) as client:
        key = client.app.state.keys.create("t", "admin")[1]  # type: ignore[attr-defined]
        headers = {"X-API-Key": key}
        status = client.get("/v1/localizer", headers=headers).json()
        assert status["trained"] and status["version"] == record["version"]
        files = {"image": ("scene.jpg", scene_path.read_bytes(), "image/jpeg")}
        r = client.post("/v1/search/scene", files=files, data={"k": "5"}, headers=headers)
        assert r.status_code == 200, r.text
        body = r.json()
        assert [o["box"] for o in body["objects"]] == [o["box"] for o in objects]
        assert all(len(o["results"]) == 5 for o in body["objects"])
        blank = np.full((300, 300, 3), 200, np.uint8)
        files = {"image": ("blank.jpg", _jpeg(blank), "image/jpeg")}
        r = client.post("/v1/search/scene", files=files, headers=headers)
        assert r.status_code == 200 and isinstance(r.json()["objects"], list)

        # A snapshot: one product on a busy background, searched by photo.
        target = cutouts[3]
        rng = np.random.default_rng(3)
        snapshot = compose([target], background("test", rng, 480, 400), rng)
        files = {"image": ("snap.jpg", _jpeg(snapshot.image), "image/jpeg")}
        r = client.post("/v1/search/image", files=files, data={"k": "10"}, headers=headers)
        assert r.status_code == 200, r.text
        assert target.product_id in [h["product_id"] for h in r.json()["results"]]

        r = client.post("/v1/localizer/train", json={"scenes": True}, headers=headers)
        assert r.status_code == 422
        r = client.post("/v1/localizer/train", json={"products": 50, "scenes": 60}, headers=headers)
        assert r.status_code == 202 and r.json()["kind"] == "train_localizer"
