"""Strict CSV reading: a broken record is reported with its line and loses nothing else."""

from __future__ import annotations

from pathlib import Path

import pytest

from vitrine.catalog.csv_records import (
    BrokenRecord,
    CsvFormatError,
    Record,
    check_encoding,
    read_records,
)
from vitrine.catalog.csv_source import (
    OUTSIDE_FOLDER,
    CatalogRow,
    ColumnMapping,
    RejectedRow,
    RowError,
    confined,
    read_catalog,
)


def records(tmp_path: Path, data: bytes, encoding: str | None = None) -> list:
    path = tmp_path / "p.csv"
    path.write_bytes(data)
    return list(read_records(path, encoding))


def test_an_unclosed_quote_is_reported_and_the_next_rows_are_read(tmp_path: Path) -> None:
    got = records(tmp_path, b'id,title,img\nQ1,ok,a.jpg\nQ2,"broken title,b.jpg\nQ3,ok3,c.jpg\n')
    assert got[:2] == [Record(1, ["id", "title", "img"]), Record(2, ["Q1", "ok", "a.jpg"])]
    assert got[2] == BrokenRecord(3, "quote opened on line 3 is never closed")
    assert got[3] == Record(4, ["Q3", "ok3", "c.jpg"])


def test_an_unclosed_quote_closed_by_a_later_row_is_still_caught(tmp_path: Path) -> None:
    data = b'id,title,img\nQ2,"broken,b.jpg\nQ3,x,c.jpg\nQ4,"fine",d.jpg\nQ5,"two\nlines",e\n'
    got = records(tmp_path, data)
    assert isinstance(got[1], BrokenRecord) and got[1].line == 2
    assert "quote opened on line 2 is never closed" in got[1].reason
    assert [r.fields[0] for r in got if isinstance(r, Record)] == ["id", "Q3", "Q4", "Q5"]
    assert got[-1] == Record(5, ["Q5", "two\nlines", "e"])  # a real multi-line field stays


def test_an_overlong_field_rejects_its_row_only(tmp_path: Path) -> None:
    got = records(tmp_path, b"id,title\n1," + b"x" * 200_000 + b"\n2,ok\n")
    assert got[1] == BrokenRecord(2, "line 2: a field is longer than 128 KiB")
    assert got[2] == Record(3, ["2", "ok"])


def test_an_undecodable_byte_rejects_its_row_with_a_hint(tmp_path: Path) -> None:
    got = records(tmp_path, b"id,title\n1,caf\xe9\n2,ok\n")
    assert isinstance(got[1], BrokenRecord) and got[1].line == 2
    assert "0xE9" in got[1].reason and "encoding" in got[1].reason
    assert got[2] == Record(3, ["2", "ok"])


@pytest.mark.parametrize(
    ("data", "encoding"),
    [
        ("id,title\n1,café\n".encode("cp1252"), "cp1252"),
        ("\ufeffid,title\n1,café\n".encode(), None),
        ("id,title\n1,café\n".encode("utf-16"), None),
        ("id,title\r\n1,café\r\n".encode(), None),
    ],
)
def test_encodings(tmp_path: Path, data: bytes, encoding: str | None) -> None:
    assert records(tmp_path, data, encoding) == [
        Record(1, ["id", "title"]),
        Record(2, ["1", "café"]),
    ]


def test_unknown_encoding_is_named() -> None:
    assert check_encoding("CP1252") == "cp1252"
    with pytest.raises(CsvFormatError, match="unknown encoding 'klingon'"):
        check_encoding("klingon")


def test_blank_lines_and_text_after_a_quote(tmp_path: Path) -> None:
    got = records(tmp_path, b'id,title\n1,"a"b\n\n2,5" screen\n')
    assert got[1].line == 2 and "after a closing quote" in got[1].reason
    assert got[2] == Record(4, ["2", '5" screen'])


@pytest.mark.parametrize(
    "path", ["../x.jpg", "a/../../x.jpg", "/etc/passwd", "\\\\host\\x.jpg", "C:/x.jpg", "a\\..\\x"]
)
def test_paths_outside_the_folder_are_refused(path: str) -> None:
    with pytest.raises(RowError, match=OUTSIDE_FOLDER):
        confined(path)


def test_paths_inside_the_folder_pass() -> None:
    assert confined("sub/a.jpg") == "sub/a.jpg"
    assert confined("a..b.jpg") == "a..b.jpg"


def test_confined_catalog_rejects_escaping_rows_and_names_no_path(tmp_path: Path) -> None:
    csv_path = tmp_path / "p.csv"
    csv_path.write_text("id,img,price\nA,../../s.jpg,1\nB,/etc/x.jpg,2\nC,ok.jpg,nan\nD,ok.jpg,3\n")
    items = list(read_catalog(csv_path, tmp_path, ColumnMapping(image_column="img"), confine=True))
    rejected = [i for i in items if isinstance(i, RejectedRow)]
    assert [(r.line, r.reason) for r in rejected[:2]] == [(2, OUTSIDE_FOLDER), (3, OUTSIDE_FOLDER)]
    assert rejected[2].line == 4 and "finite" in rejected[2].reason
    assert [i.product.id for i in items if isinstance(i, CatalogRow)] == ["D"]
    # The command line reads what its operator names.
    free = list(read_catalog(csv_path, tmp_path, ColumnMapping(image_column="img")))
    assert str(next(i for i in free if isinstance(i, CatalogRow)).image_path).endswith("s.jpg")
