"""Bulk import of real catalog slices: both CSV layouts, resumability, rejects, search."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import pytest

from vitrine.catalog.csv_source import ColumnMapping
from vitrine.config import load_settings
from vitrine.jobs.bulk_import import import_catalog
from vitrine.runtime import Runtime

pytestmark = pytest.mark.integration


def make_vitrine(home: Path, model_dir: Path) -> Runtime:
    home.mkdir(parents=True, exist_ok=True)
    (home / "models").symlink_to(model_dir, target_is_directory=True)
    return Runtime(load_settings(env={}).with_overrides(home=home))


def fashion_slice(data_dir: Path, tmp: Path, n: int) -> tuple[Path, Path]:
    """The first n fashion-small rows, their photos copied, one photo truncated, one a zip."""
    src = data_dir / "fashion-small"
    images = tmp / "images"
    images.mkdir()
    with (src / "styles.csv").open(newline="") as handle:
        reader = csv.DictReader(handle)
        rows = [r for r in reader if (src / "images" / f"{r['id']}.jpg").is_file()][:n]
        fields = reader.fieldnames
    for r in rows:
        shutil.copy(src / "images" / f"{r['id']}.jpg", images / f"{r['id']}.jpg")
    broken = images / f"{rows[3]['id']}.jpg"
    broken.write_bytes(broken.read_bytes()[:300])
    (images / f"{rows[7]['id']}.jpg").write_bytes(b"PK\x03\x04" + b"\x00" * 100)
    csv_path = tmp / "styles.csv"
    with csv_path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
        writer.writerow({**rows[0], "id": "missing-photo"})
    return csv_path, images


def test_fashion_import_resumes_and_reports_rejects(
    data_dir: Path, model_dir: Path, tmp_path: Path
) -> None:
    csv_path, images = fashion_slice(data_dir, tmp_path, 80)
    vitrine = make_vitrine(tmp_path / "home", model_dir)
    report = import_catalog(vitrine, csv_path, images, workers=2, progress=False)
    assert report.rows == 81
    assert report.imported == 78
    reasons = {r.product_id: r.reason for r in report.rejected}
    assert len(reasons) == 3
    assert sum("corrupt or truncated" in v for v in reasons.values()) == 1
    assert any("ZIP" in v for v in reasons.values())
    assert "file not found" in reasons["missing-photo"]
    assert report.rejects_file is not None and report.rejects_file.is_file()
    assert len(report.rejects_file.read_text().splitlines()) == 4

    assert vitrine.store.count_products() == 78
    assert len(vitrine.search) == 78
    product = vitrine.store.get_product(next(iter(vitrine.store.product_ids())))
    assert product is not None
    kinds = {f["kind"] for f in product["images"][0]["features"]}
    assert kinds == {"embedding", "summary", "color", "texture", "shape", "pattern", "layout"}
    assert len(vitrine.search.aspects) == 78
    assert product["attributes"]["masterCategory"]
    vitrine.close()

    # A second run imports nothing again, and the saved index is reused.
    again = Runtime(load_settings(env={}).with_overrides(home=tmp_path / "home"))
    assert again.search.load_or_rebuild() == "loaded"
    report2 = import_catalog(again, csv_path, images, workers=0, progress=False)
    assert report2.imported == 0 and report2.skipped == 78 and len(report2.rejected) == 3
    assert len(again.search) == 78
    again.close()


def test_similar_and_filtered_search_on_fashion(
    data_dir: Path, model_dir: Path, tmp_path: Path
) -> None:
    csv_path, images = fashion_slice(data_dir, tmp_path, 80)
    vitrine = make_vitrine(tmp_path / "home", model_dir)
    import_catalog(vitrine, csv_path, images, workers=0, progress=False)
    pid = sorted(vitrine.store.product_ids())[0]
    hits = vitrine.search.similar(pid, k=5)
    assert len(hits) == 5 and pid not in {h.product_id for h in hits}
    # The photo itself finds its own product first.
    analysis = vitrine.analyzer.analyze((images / f"{pid}.jpg").read_bytes())
    assert vitrine.search.search(analysis.embedding, k=1)[0].product_id == pid
    # A selective filter still fills k when enough products match.
    footwear = [
        p
        for p in vitrine.store.product_ids()
        if (vitrine.store.get_product(p) or {})["attributes"].get("masterCategory") == "Footwear"
    ]
    hits = vitrine.search.search(analysis.embedding, k=3, filters=["masterCategory=Footwear"])
    assert len(hits) == min(3, len(footwear))
    assert {h.product_id for h in hits} <= set(footwear)
    vitrine.close()


def test_hm_layout_with_string_ids(data_dir: Path, model_dir: Path, tmp_path: Path) -> None:
    src = data_dir / "hm"
    with (src / "articles.csv").open(newline="") as handle:
        reader = csv.DictReader(handle)
        rows = [r for r, _ in zip(reader, range(30), strict=False)]
        fields = reader.fieldnames
    csv_path = tmp_path / "articles.csv"
    with csv_path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    vitrine = make_vitrine(tmp_path / "home", model_dir)
    mapping = ColumnMapping(id_column="article_id", image_path="{article_id[:3]}/{article_id}.jpg")
    report = import_catalog(vitrine, csv_path, src / "images", mapping, workers=0, progress=False)
    present = [
        r
        for r in rows
        if (src / "images" / r["article_id"][:3] / f"{r['article_id']}.jpg").is_file()
    ]
    assert report.imported == len(present)
    first = present[0]["article_id"]
    assert first.startswith("0")
    product = vitrine.store.get_product(first)
    assert product is not None and product["title"] == present[0]["prod_name"]
    vitrine.close()
