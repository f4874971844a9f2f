"""A product added after the recommendation models were trained is recommended at once.

Real H&M photos and purchases (a small slice), models trained, then a new product whose
photo looks like what a customer bought is added through the API: the customer's
visual-profile and default (hybrid) lists include it without retraining, its look-alikes
and complements are served, and deleting it removes it everywhere.
"""

from __future__ import annotations

import csv
import json
import time
from collections import Counter
from collections.abc import Callable
from datetime import date, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from test_recommend_hm import read_hm, write_slice
from typer.testing import CliRunner

from hm_options import catalog_import_args, events_import_args
from vitrine.accounts.keys import KeyService
from vitrine.api.app import create_app
from vitrine.cli import app as cli
from vitrine.config import load_settings

pytestmark = pytest.mark.integration
NEW = "NEW0000001"


def shop_slice(data_dir: Path, tmp_path: Path) -> tuple[Path, Path, list[str], list[str]]:
    """40 best sellers, 30 new arrivals that sold (first bought in the last 80 days of
    the log: the ranker learns that new products sell), 10 never bought, and every
    purchase of their buyers; returns the catalog, the log, the buyers, the arrivals."""
    fields, articles, rows = read_hm(data_dir)
    sold = Counter(r["article_id"] for r in rows if r["article_id"] in articles)
    first: dict[str, str] = {}
    for r in rows:
        first[r["article_id"]] = min(first.get(r["article_id"], r["t_dat"]), r["t_dat"])
    last_day = max(r["t_dat"] for r in rows)
    cut = (date.fromisoformat(last_day) - timedelta(days=80)).isoformat()
    chosen = [a for a, _ in sold.most_common(40)]
    arrivals = sorted(
        (a for a in sold if first[a] >= cut and a not in chosen), key=lambda a: (-sold[a], a)
    )[:30]
    chosen += arrivals + sorted(a for a in articles if a not in sold)[:10]
    return (*write_slice(tmp_path, fields, articles, rows, chosen, chosen), arrivals)


def _ids(response: object) -> list[str]:
    body = response.json()  # type: ignore[attr-defined]
    assert "items" in body, body
    return [i["product_id"] for i in body["items"]]


def _until(check: Callable[[], bool], seconds: float = 30.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.2)
    return False


def test_new_product_is_recommended_without_retraining(
    tmp_path: Path, model_dir: Path, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / "models").symlink_to(model_dir, target_is_directory=True)
    for name, value in {
        "VITRINE_HOME": str(home),
        "VITRINE_IMPORT_WORKERS": "0",
        "VITRINE_RECOMMEND_RETRAIN_MINUTES": "0",
        "VITRINE_API_RATE_LIMIT": "0",
        "VITRINE_CHANGE_FEED_POLL_MS": "50",
        "VITRINE_RECOMMEND_CATALOG_REFRESH_S": "0",
    }.items():
        monkeypatch.setenv(name, value)
    runner = CliRunner()
    catalog, log, buyers, arrivals = shop_slice(data_dir, tmp_path)
    images = data_dir / "hm" / "images"
    result = runner.invoke(cli, catalog_import_args(catalog, images))
    assert result.exit_code == 0, result.output
    result = runner.invoke(cli, events_import_args(log))
    assert result.exit_code == 0, result.output
    small = '{"algorithm": "hybrid", "params": {"windows": 3, "window_step": 28}}'
    assert runner.invoke(cli, ["strategies", "set", "default", "--config", small]).exit_code == 0
    result = runner.invoke(cli, ["train-recommendations"])
    assert result.exit_code == 0, result.output

    # a customer who bought a new arrival last, and the photo of it
    with catalog.open(newline="") as f:
        articles = {r["article_id"]: r for r in csv.DictReader(f)}
    with log.open(newline="") as f:
        bought = sorted(
            (r for r in csv.DictReader(f) if r["article_id"] in articles), key=lambda r: r["t_dat"]
        )
    latest = {r["customer_id"]: r["article_id"] for r in bought}
    user = next(u for u in buyers if latest.get(u) in arrivals)
    last = latest[user]
    photo = images / last[:3] / f"{last}.jpg"
    source = articles[last]

    app = create_app(load_settings(), warm=False)
    keys = KeyService(app.state.runtime.engine)
    headers = {"X-API-Key": keys.create("t", "write")[1]}
    with TestClient(app) as client:
        assert _until(
            lambda: client.get("/v1/recommendations/status", headers=headers).json()["ready"]
        )
        lists = {
            "visual": f"/v1/users/{user}/recommendations?k=12&strategy=visual",
            "default": f"/v1/users/{user}/recommendations?k=12",
        }
        for url in lists.values():
            assert NEW not in _ids(client.get(url, headers=headers))

        attributes = {k: v for k, v in source.items() if k not in ("article_id", "prod_name")}
        with photo.open("rb") as f:
            r = client.post(
                "/v1/products",
                headers=headers,
                files={"images": f},
                data={
                    "id": NEW,
                    "title": "New look-alike",
                    "price": 0.03,
                    "attributes": json.dumps(attributes),
                },
            )
        assert r.status_code == 201, r.text

        # no retraining: the models are the same, the catalog they answer over is not
        trained_at = client.get("/v1/recommendations/status", headers=headers).json()
        for name, url in lists.items():
            assert _until(lambda url=url: NEW in _ids(client.get(url, headers=headers))), name
        status = client.get("/v1/recommendations/status", headers=headers).json()
        assert status["trained_at"] == trained_at["trained_at"]
        r = client.get(f"/v1/products/{NEW}/similar/weighted?k=5", headers=headers)
        assert r.status_code == 200 and last in _ids(r)[:3]
        r = client.get(f"/v1/products/{NEW}/complementary?k=5", headers=headers)
        assert r.status_code == 200, r.text
        r = client.post(
            "/v1/sessions/recommendations",
            headers=headers,
            json={"product_ids": [last], "k": 5, "strategy": "similar"},
        )
        assert NEW in _ids(r)

        # deleted: never recommended again, unknown as a product
        assert client.delete(f"/v1/products/{NEW}", headers=headers).status_code == 204
        for name, url in lists.items():
            assert _until(lambda url=url: NEW not in _ids(client.get(url, headers=headers)), 5.0), (
                name
            )
        r = client.get(f"/v1/products/{NEW}/similar/weighted", headers=headers)
        assert r.status_code == 404
