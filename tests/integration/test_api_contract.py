"""The API contract: schemathesis fuzzes a real `vitrine serve` from its own /openapi.json.

Every check is on (no 5xx, responses match the documented status codes, content types,
headers and schemas, schema-valid requests are accepted and invalid ones rejected, auth is
not ignored). Domain rules a schema cannot state (a photo must be an image, an id must
exist, a filter is ``field=value``) are met with real data by the hooks in
``contract_hooks.py``: a small catalog of real photos, seeded here, and its ids, photos,
blob keys, filters and strategies.
"""

from __future__ import annotations

import base64
import csv
import io
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image

from serve_process import VITRINE, create_key, process_env, serving

pytestmark = pytest.mark.integration

SCHEMATHESIS = Path(sys.executable).with_name("schemathesis")
SEED = 20260
MAX_EXAMPLES = 50  # per operation (fuzzing); the whole test takes about a minute
ARTICLE_TYPES = ("Watches", "Handbags", "Sports Shoes", "Tshirts")


def fashion_rows(data_dir: Path, per_type: int) -> list[dict[str, str]]:
    """The first ``per_type`` products with a photo of each article type."""
    fashion = data_dir / "fashion-small"
    chosen: dict[str, list[dict[str, str]]] = {t: [] for t in ARTICLE_TYPES}
    with (fashion / "styles.csv").open(newline="") as handle:
        for row in csv.DictReader(handle):
            rows = chosen.get(row["articleType"])
            photo = fashion / "images" / f"{row['id']}.jpg"
            if rows is not None and len(rows) < per_type and photo.is_file():
                rows.append(row)
    return [row for rows in chosen.values() for row in rows]


def small_photo(path: Path, size: int = 96, fmt: str = "JPEG") -> bytes:
    """A real photo, downscaled: uploads stay cheap to analyse."""
    with Image.open(path) as image:
        image = image.convert("RGB")
        image.thumbnail((size, size))
        out = io.BytesIO()
        image.save(out, fmt)
        return out.getvalue()


def seed(base: str, key: str, data_dir: Path, work: Path, env: dict[str, str]) -> dict[str, Any]:
    """A small catalog, customers' events, trained recommendation models and two versions
    of a classification model; returns what the hooks draw real data from."""
    fashion = data_dir / "fashion-small"
    rows = fashion_rows(data_dir, per_type=4)
    photos = work / "photos"
    photos.mkdir(parents=True, exist_ok=True)
    products: list[dict[str, Any]] = []
    with httpx.Client(base_url=base, headers={"X-API-Key": key}, timeout=60) as client:
        for n, row in enumerate(rows):
            data = small_photo(fashion / "images" / f"{row['id']}.jpg", size=160)
            attributes = {
                "articleType": row["articleType"],
                "baseColour": row["baseColour"],
                "gender": row["gender"],
            }
            r = client.post(
                "/v1/products",
                data={
                    "id": row["id"],
                    "title": row["productDisplayName"],
                    "price": str(10 + 5 * n),
                    "attributes": json.dumps(attributes),
                },
                files=[("images", (f"{row['id']}.jpg", data, "image/jpeg"))],
            )
            assert r.status_code == 201, r.text
            products.append(r.json()["product"])
        # Photos for uploads: real ones (JPEG and PNG) of a few sizes.
        uploads = []
        for n, row in enumerate(rows[::3]):
            fmt = "PNG" if n % 2 else "JPEG"
            path = photos / f"{row['id']}.{fmt.lower()}"
            path.write_bytes(small_photo(fashion / "images" / f"{row['id']}.jpg", 48 + 16 * n, fmt))
            uploads.append(str(path))
        # Customers' events, so that the recommendation models train.
        ids = [p["id"] for p in products]
        now = time.time()
        events = []
        for user in range(8):
            for step in range(6):
                product = ids[(user * 3 + step * 5) % len(ids)]
                kind = ("view", "click", "add_to_cart", "purchase")[step % 4]
                stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now - 3600 * (step + 1)))
                events.append(
                    {"user_id": f"u{user}", "product_id": product, "type": kind, "timestamp": stamp}
                )
        r = client.post("/v1/events", json={"events": events})
        assert r.status_code == 200, r.text
        assert client.post("/v1/recommendations/train").status_code == 202
        deadline = time.monotonic() + 240
        while not client.get("/v1/recommendations/status").json().get("ready"):
            assert time.monotonic() < deadline, "the recommendation models did not train"
            time.sleep(1)
        # Webhook subscriptions to a closed local port (deliveries fail at once).
        webhook_ids = [
            client.post(
                "/v1/webhooks",
                json={"url": "http://127.0.0.1:9/hooks", "events": ["import.finished"]},
            ).json()["id"]
            for _ in range(2)
        ]
        strategies = client.get("/v1/strategies").json()
        cnn_in_service = client.get("/v1/cnn").json()["in_service"]
        categories = sorted({p["attributes"]["articleType"] for p in products})
        campaigns = ["contract-ads", "contract-paused"]
        for name in campaigns:
            body = {"name": name, "categories": categories[:3], "active": name != "contract-paused"}
            assert client.post("/v1/ads/campaigns", json=body).status_code == 201
    # Two versions of a classifier (a version to activate, one to roll back to).
    model_ids = []
    for _ in range(2):
        trained = subprocess.run(
            [
                *VITRINE,
                "train",
                "--fields",
                "articleType",
                "--min-support",
                "2",
                "--activate=always",
            ],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        model_ids += [model["id"] for model in json.loads(trained.stdout)]
    # A server-side import: a CSV and its photo folder under the import root.
    imports = work / "imports"
    (imports / "photos").mkdir(parents=True, exist_ok=True)
    with (imports / "catalog.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "title", "price", "photo"])
        for row in rows[:2]:
            name = f"{row['id']}.jpg"
            (imports / "photos" / name).write_bytes(small_photo(fashion / "images" / name, size=64))
            writer.writerow([f"imported-{row['id']}", row["productDisplayName"], "12.5", name])
    return {
        "product_ids": ids[: len(ids) // 2],  # kept: read, changed and replaced
        # Tops that stay in the catalog, to try on the astronaut (a photo with a face).
        "tryon_ids": [
            p["id"]
            for p in products
            if p["id"] in ids[: len(ids) // 2]
            and p["attributes"].get("articleType") in {"Tshirts", "Shirts", "Tops"}
        ],
        "disposable_ids": ids[len(ids) // 2 :],  # what DELETE may remove
        "images": uploads,
        "image_keys": [
            image_key(p["images"][0]["content_hash"], p["images"][0]["format"]) for p in products
        ],
        "product_images": {p["id"]: [i["id"] for i in p["images"]] for p in products},
        "filters": [
            f"articleType={categories[0]}",
            f"articleType={categories[0]}|{categories[-1]}",
            f"articleType!={categories[-1]}",
            "gender=Men",
        ],
        "categories": categories,
        "campaigns": campaigns,
        "model_ids": model_ids,
        "webhook_ids": webhook_ids,
        # Switching to the CNN in service is a real switch job with nothing to do.
        "cnn_versions": [cnn_in_service],
        "label_fields": ["articleType"],
        "strategies": [s["name"] for s in strategies],
        "strategy_configs": [{k: v for k, v in s.items() if k != "name"} for s in strategies],
        "cursors": [
            base64.urlsafe_b64encode(i.encode()).decode().rstrip("=") for i in sorted(ids)[:3]
        ],
        "timestamps": [
            time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now - hours * 3600))
            for hours in (0, 1, 30, 24 * 200)
        ],
        "import_csv": str(imports / "catalog.csv"),
        "import_dir": str(imports / "photos"),
    }


def image_key(content_hash: str, image_format: str) -> str:
    from vitrine.catalog.blobs import image_key as key_of

    return key_of(content_hash, image_format)


def contract_env(home: Path, work: Path) -> dict[str, str]:
    return process_env(
        home,
        {
            # 429 is not what this run measures (the limiter has tests of its own).
            "VITRINE_API_RATE_LIMIT": "100000",
            "VITRINE_API_RATE_BURST": "100000",
            "VITRINE_IMPORT_ROOT": str(work / "imports"),
            "VITRINE_RECOMMEND_RETRAIN_MINUTES": "0",
            # The product feed and public photos on, so that their 200s are checked too.
            "VITRINE_PRODUCT_LINK_PATTERN": "https://shop.example/products/{id}",
            "VITRINE_PUBLIC_IMAGES": "true",
        },
    )


def run_schemathesis(
    base: str, key: str, data_file: Path, report: Path, *extra: str
) -> subprocess.CompletedProcess[str]:
    path = [str(Path(__file__).parent), os.environ.get("PYTHONPATH", "")]
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(p for p in path if p),
        "SCHEMATHESIS_HOOKS": "contract_hooks",
        "VITRINE_CONTRACT_DATA": str(data_file),
        "VITRINE_CONTRACT_KEY": key,
    }
    # The key for both of the document's security schemes (X-API-Key, bearer), so that
    # schemathesis knows them as credentials (and checks that requests without them fail).
    config = data_file.with_name("schemathesis.toml")
    config.write_text(
        "[auth.openapi.APIKeyHeader]\n"
        'api_key = "${VITRINE_CONTRACT_KEY}"\n'
        "[auth.openapi.HTTPBearer]\n"
        'bearer = "${VITRINE_CONTRACT_KEY}"\n'
    )
    command = [
        str(SCHEMATHESIS),
        "--no-color",
        "--config-file",
        str(config),
        "run",
        f"{base}/openapi.json",
        "--checks",
        "all",
        "--max-examples",
        str(MAX_EXAMPLES),
        "--seed",
        str(SEED),
        # One worker: a run replays exactly from its seed (the server has 2 cores anyway).
        "--workers",
        "1",
        "--request-timeout",
        "60",
        "--report",
        "junit",
        "--report-dir",
        str(report),
        *extra,
    ]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=900)


def test_api_contract(tmp_path: Path, data_dir: Path, model_dir: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    env = contract_env(tmp_path / "home", work)
    key = create_key(env, scope="admin")
    with serving(env, secrets=[key]) as base:
        data = seed(base, key, data_dir, work, env)
        data_file = work / "contract-data.json"
        data_file.write_text(json.dumps(data))
        started = time.monotonic()
        result = run_schemathesis(base, key, data_file, tmp_path / "report")
        took = time.monotonic() - started
    output = result.stdout + result.stderr
    print(output[-6000:])
    assert result.returncode == 0, f"schemathesis failed after {took:.0f} s:\n{output[-12000:]}"
