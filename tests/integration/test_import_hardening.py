"""API import jobs read only what they were given: confined paths, bounded zips, strict CSVs."""

from __future__ import annotations

import io
import stat
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from vitrine.accounts.keys import KeyService
from vitrine.api.app import create_app
from vitrine.catalog.csv_source import OUTSIDE_FOLDER
from vitrine.config import load_settings

pytestmark = pytest.mark.integration


def photo(shade: int) -> bytes:
    arr = np.full((160, 120, 3), 255, np.uint8)
    arr[30:130, 25:95] = (shade, 40, 255 - shade)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="JPEG", quality=92)
    return buf.getvalue()


@pytest.fixture(scope="module")
def env(
    tmp_path_factory: pytest.TempPathFactory, model_dir: Path
) -> Iterator[tuple[TestClient, dict[str, str], Path]]:
    base = tmp_path_factory.mktemp("imports")
    home, root, outside = base / "home", base / "root", base / "outside"
    for folder in (home, root / "shop", outside):
        folder.mkdir(parents=True)
    (home / "models").symlink_to(model_dir, target_is_directory=True)
    (outside / "secret.jpg").write_bytes(photo(10))
    (outside / "linked.jpg").write_bytes(photo(20))
    for i in range(6):
        (root / "shop" / f"p{i}.jpg").write_bytes(photo(40 * i))
    # A link the operator placed inside the import root is the operator's choice.
    (root / "shop" / "operator-link.jpg").symlink_to(outside / "linked.jpg")
    settings = load_settings(env={}).with_overrides(
        home=home,
        import_root=root,
        api_rate_limit=0,
        import_workers=0,
        import_zip_max_entries=50,
    )
    app = create_app(settings)
    key = KeyService(app.state.runtime.engine).create("imports", "write")[1]
    with TestClient(app) as client:
        yield client, {"X-API-Key": key}, base


def wait(client: TestClient, headers: dict[str, str], job_id: str) -> dict:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        job = client.get(f"/v1/imports/{job_id}", headers=headers).json()
        if job["status"] in {"done", "failed"}:
            return job
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} did not finish: {job}")


def submit(client: TestClient, headers: dict[str, str], **form: str) -> dict:
    r = client.post("/v1/imports", headers=headers, data=form)
    assert r.status_code == 202, r.text
    return wait(client, headers, r.json()["id"])


def test_folder_import_refuses_paths_outside_its_folder(env) -> None:
    client, headers, base = env
    (base / "root" / "shop" / "t.csv").write_text(
        "id,img\n"
        "TRAV1,../../outside/secret.jpg\n"
        f"TRAV2,{base / 'outside' / 'secret.jpg'}\n"
        "TRAV3,sub/../../../outside/secret.jpg\n"
        "MISSING,nothing-here.jpg\n"
        "OK1,p1.jpg\n"
        "LINK,operator-link.jpg\n"
    )
    job = submit(client, headers, csv_path="shop/t.csv", images_dir="shop", image_column="img")
    assert job["status"] == "done", job
    by_id = {r["product_id"]: r["reason"] for r in job["rejects"]}
    assert by_id["TRAV1"] == by_id["TRAV2"] == by_id["TRAV3"] == OUTSIDE_FOLDER
    for tid in ("TRAV1", "TRAV2", "TRAV3", "MISSING"):
        assert client.get(f"/v1/products/{tid}", headers=headers).status_code == 404
    for pid in ("OK1", "LINK"):
        assert client.get(f"/v1/products/{pid}", headers=headers).status_code == 200
    assert str(base) not in str(job)  # no server path in anything the job shows


def test_zip_import_refuses_paths_outside_the_zip(env) -> None:
    client, headers, _ = env
    zbuf = io.BytesIO()
    with zipfile.ZipFile(zbuf, "w") as zf:
        zf.writestr("z1.jpg", photo(100))
    csv_data = b"id,img\nZTRAV,../../outside/secret.jpg\nZABS,/etc/hostname\nZ1,z1.jpg\n"
    r = client.post(
        "/v1/imports",
        headers=headers,
        data={"image_column": "img"},
        files={"csv": ("p.csv", csv_data, "text/csv"), "images": ("i.zip", zbuf.getvalue())},
    )
    assert r.status_code == 202, r.text
    job = wait(client, headers, r.json()["id"])
    assert {r["product_id"]: r["reason"] for r in job["rejects"]} == {
        "ZTRAV": OUTSIDE_FOLDER,
        "ZABS": OUTSIDE_FOLDER,
    }
    assert job["imported"] == 1


def _upload_zip(client: TestClient, headers: dict[str, str], zip_bytes: bytes):
    return client.post(
        "/v1/imports",
        headers=headers,
        files={"csv": ("p.csv", b"id\nX\n", "text/csv"), "images": ("i.zip", zip_bytes)},
    )


def test_zip_links_and_bombs_are_refused_before_extraction(env) -> None:
    client, headers, base = env
    jobs_before = len(list((base / "home" / "imports").glob("*")))
    link = io.BytesIO()
    with zipfile.ZipFile(link, "w") as zf:
        info = zipfile.ZipInfo("X.jpg")
        info.external_attr = (stat.S_IFLNK | 0o777) << 16
        zf.writestr(info, "/etc/passwd")
    r = _upload_zip(client, headers, link.getvalue())
    assert r.status_code == 422 and "link" in r.json()["detail"]

    bomb = io.BytesIO()
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("X.jpg", b"\0" * (8 * 1024 * 1024))
    assert len(bomb.getvalue()) < 100_000
    r = _upload_zip(client, headers, bomb.getvalue())
    assert r.status_code == 413 and "bomb" in r.json()["detail"], r.text
    assert r.headers["content-type"].startswith("application/problem+json")

    many = io.BytesIO()
    with zipfile.ZipFile(many, "w") as zf:
        for i in range(51):
            zf.writestr(f"{i}.jpg", b"x")
    r = _upload_zip(client, headers, many.getvalue())
    assert r.status_code == 413 and "51 entries" in r.json()["detail"]
    assert len(list((base / "home" / "imports").glob("*"))) == jobs_before  # nothing left


def test_a_broken_csv_row_is_reported_and_the_rest_imported(env) -> None:
    client, headers, base = env
    (base / "root" / "shop" / "q.csv").write_bytes(
        b'id,title,img\nQ1,ok,p2.jpg\nQ2,"broken title,p3.jpg\nQ3,ok3,p4.jpg\n'
        b"Q4,caf\xe9,p5.jpg\nQ5," + b"x" * 140_000 + b",p5.jpg\n"
    )
    job = submit(client, headers, csv_path="shop/q.csv", images_dir="shop", image_column="img")
    assert job["status"] == "done", job
    reasons = {r["line"]: r["reason"] for r in job["rejects"]}
    assert reasons[3] == "quote opened on line 3 is never closed"
    assert "0xE9" in reasons[5] and "line 5" in reasons[5]
    assert "128 KiB" in reasons[6]
    for pid, status in (("Q1", 200), ("Q2", 404), ("Q3", 200), ("Q4", 404)):
        assert client.get(f"/v1/products/{pid}", headers=headers).status_code == status


def test_an_encoding_is_named_and_a_failed_job_shows_no_path(env) -> None:
    client, headers, base = env
    shop = base / "root" / "shop"
    (shop / "cp.csv").write_bytes("id,title,img\nCP1,Café crème,p0.jpg\n".encode("cp1252"))
    job = submit(
        client,
        headers,
        csv_path="shop/cp.csv",
        images_dir="shop",
        image_column="img",
        encoding="cp1252",
    )
    assert job["imported"] == 1, job
    assert client.get("/v1/products/CP1", headers=headers).json()["title"] == "Café crème"
    r = client.post(
        "/v1/imports", headers=headers, data={"csv_path": "shop/cp.csv", "encoding": "klingon"}
    )
    assert r.status_code == 422 and "klingon" in r.json()["detail"]
    r = client.post("/v1/imports", headers=headers, data={"csv_path": "../outside/x.csv"})
    assert r.status_code == 422 and str(base) not in r.text
    (shop / "noid.csv").write_text("sku,img\n1,p0.jpg\n")
    job = submit(client, headers, csv_path="shop/noid.csv", images_dir="shop")
    assert job["status"] == "failed" and "id column 'id'" in job["error"]
    assert str(base) not in job["error"]
