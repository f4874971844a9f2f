"""Reading product CSVs: string ids, path templates with slices, row rejections."""

from __future__ import annotations

from pathlib import Path

import pytest

from vitrine.catalog.csv_source import (
    CatalogRow,
    ColumnMapping,
    PathTemplate,
    RejectedRow,
    read_catalog,
)


def test_template_with_slices() -> None:
    t = PathTemplate("{article_id[:3]}/{article_id}.jpg")
    assert t.render({"article_id": "0111565001"}) == "011/0111565001.jpg"
    with pytest.raises(ValueError, match="names no column"):
        PathTemplate("static.jpg")


def test_rows_and_rejections(tmp_path: Path) -> None:
    csv_path = tmp_path / "p.csv"
    csv_path.write_text(
        "article_id,prod_name,price,colour\n"
        "0111565001,Tights,9.5,Black\n"
        ",No id,1,Red\n"
        "0111565001,Duplicate,1,Red\n"
        "0222,Bad price,abc,Red\n"
        "0333,Extra,1,Red,surplus\n"
    )
    mapping = ColumnMapping(id_column="article_id", image_path="{article_id[:3]}/{article_id}.jpg")
    items = list(read_catalog(csv_path, tmp_path, mapping))
    good = [i for i in items if isinstance(i, CatalogRow)]
    bad = [i for i in items if isinstance(i, RejectedRow)]
    assert len(good) == 1
    row = good[0]
    assert row.product.id == "0111565001"
    assert row.product.title == "Tights" and row.product.price == 9.5
    assert row.product.attributes == {"colour": "Black"}
    assert row.image_path == tmp_path / "011" / "0111565001.jpg"
    reasons = [b.reason for b in bad]
    assert any("empty id" in r for r in reasons)
    assert any("duplicate id" in r for r in reasons)
    assert any("not a number" in r for r in reasons)
    assert any("more fields" in r for r in reasons)
    assert [b.line for b in bad] == [3, 4, 5, 6]


def test_missing_id_column_is_named(tmp_path: Path) -> None:
    csv_path = tmp_path / "p.csv"
    csv_path.write_text("sku,title\n1,a\n")
    with pytest.raises(ValueError, match="id column 'id' is not in the header"):
        list(read_catalog(csv_path, tmp_path, ColumnMapping()))
