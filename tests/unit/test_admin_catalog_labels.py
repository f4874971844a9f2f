"""Labels in the admin catalog: on the grid's cards, and the download (the same CSV as
`vitrine export-labels`, streamed)."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from vitrine.api.app import create_app
from vitrine.catalog.store import ProductRecord
from vitrine.classify.label_export import csv_chunks
from vitrine.config import load_settings

PASSWORD = "correct horse battery"


@pytest.fixture()
def client(tmp_path: Path) -> Iterator[TestClient]:
    settings = load_settings(env={}).with_overrides(
        home=tmp_path / "home", admin_recall_check_minutes=0
    )
    app = create_app(settings, warm=False)
    admin = app.state.admin
    admin.users.create("ana", PASSWORD, "analyst")
    store = admin.vitrine.store
    store.upsert_products(
        [
            ProductRecord(id="p1", title="A shirt", attributes={"colour": "red"}),
            ProductRecord(id="p2", title="A shoe"),
            ProductRecord(id="p3", title="Socks"),
        ]
    )
    store.upsert_labels(
        [
            {"product_id": "p2", "field": "colour", "value": "black", "source": "model",
             "confidence": 0.42, "needs_review": True},
            {"product_id": "p3", "field": "colour", "value": "white", "source": "human"},
        ]
    )  # fmt: skip
    with TestClient(app) as c:
        yield c


def _sign_in(client: TestClient) -> None:
    page = client.get("/admin/login")
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)  # type: ignore[union-attr]
    done = client.post(
        "/admin/login", data={"username": "ana", "password": PASSWORD, "csrf_token": token}
    )
    assert done.status_code == 200 and "/admin/login" not in str(done.url)


def test_the_download_holds_shop_model_and_human_labels(client: TestClient) -> None:
    assert client.get("/admin/catalog/labels.csv", follow_redirects=False).status_code == 303
    _sign_in(client)
    response = client.get("/admin/catalog/labels.csv")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    assert "attachment" in response.headers["content-disposition"]
    rows = {r["product_id"]: r for r in csv.DictReader(io.StringIO(response.text))}
    # the shop's own value counts as set by a person
    assert rows["p1"]["colour"] == "red" and rows["p1"]["colour_source"] == "human"
    assert rows["p2"]["colour"] == "black" and rows["p2"]["colour_source"] == "model"
    assert rows["p2"]["colour_confidence"] == "0.4200"
    assert rows["p2"]["colour_needs_review"] == "yes"
    assert rows["p3"]["colour"] == "white" and rows["p3"]["colour_source"] == "human"
    only = client.get("/admin/catalog/labels.csv", params={"fields": "size"})
    assert next(csv.reader(io.StringIO(only.text))) == [
        "product_id", "size", "size_source", "size_confidence", "size_needs_review"
    ]  # fmt: skip


def test_chunks_join_into_the_file_the_command_writes(client: TestClient, tmp_path: Path) -> None:
    vitrine = client.app.state.admin.vitrine  # type: ignore[attr-defined]
    chunks = list(csv_chunks(vitrine.store, vitrine.classification.registry, rows_per_chunk=2))
    assert len(chunks) == 2  # header + 2 rows, then the last row
    from vitrine.cli import app as cli

    out = tmp_path / "labels.csv"
    env = {"VITRINE_HOME": str(vitrine.settings.home)}
    result = CliRunner().invoke(cli, ["export-labels", str(out)], env=env)
    assert result.exit_code == 0, result.output
    assert out.read_bytes().decode() == "".join(chunks)


def test_catalog_cards_show_model_and_human_labels(client: TestClient) -> None:
    _sign_in(client)
    page = client.get("/admin/catalog")
    assert page.status_code == 200
    p2 = page.text[page.text.index("/admin/catalog/p2") :]
    p2 = p2[: p2.index("</li>")]
    assert 'class="chip model"' in p2 and ">black<" in p2 and "model, 42%" in p2
    p3 = page.text[page.text.index("/admin/catalog/p3") :]
    p3 = p3[: p3.index("</li>")]
    assert 'class="chip human"' in p3 and ">white<" in p3
    labelled = client.get("/admin/catalog", params={"label": "colour=black"})
    assert "/admin/catalog/p2" in labelled.text and "/admin/catalog/p3" not in labelled.text
