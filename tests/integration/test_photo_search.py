"""Search by photo on a real catalog slice: the shopper's photo must bring its product first."""

from __future__ import annotations

import csv
import itertools
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sqlalchemy import delete, select

from vitrine.catalog.models import Feature, Image
from vitrine.catalog.store import EMBEDDING_KIND
from vitrine.config import load_settings
from vitrine.jobs.backfill import backfill_layouts
from vitrine.jobs.bulk_import import import_catalog
from vitrine.runtime import Runtime
from vitrine.vision.layout import LAYOUT_KIND

pytestmark = pytest.mark.integration

QUERIES_PER_FOLDER = 12
CATALOG_SIZE = 240


def open_vitrine(home: Path, model_dir: Path, **overrides: Any) -> Runtime:
    if not (home / "models").exists():
        home.mkdir(parents=True, exist_ok=True)
        (home / "models").symlink_to(model_dir, target_is_directory=True)
    settings = load_settings(env={}).with_overrides(home=home, import_workers=2, **overrides)
    return Runtime(settings)


@pytest.fixture(scope="module")
def catalog(
    data_dir: Path, model_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Runtime, list[tuple[str, Path]]]]:
    """Query photos of a few products, and a catalog of them plus products of the same
    article types (the look-alikes a global embedding confuses them with)."""
    queries: list[tuple[str, Path]] = []
    for folder in ("224x224", "225x300"):
        paths = sorted((data_dir / "fashion-queries" / folder).glob("*.jpg"))
        step = max(1, len(paths) // QUERIES_PER_FOLDER)
        queries += [(p.stem, p) for p in paths[::step][:QUERIES_PER_FOLDER]]
    wanted = {pid for pid, _ in queries}
    with (data_dir / "fashion-small" / "styles.csv").open(newline="") as handle:
        reader = csv.DictReader(handle)
        fields = list(reader.fieldnames or [])
        rows = list(reader)
    kinds = {r["articleType"] for r in rows if r["id"] in wanted}
    chosen = [r for r in rows if r["id"] in wanted]
    chosen += [r for r in rows if r["articleType"] in kinds and r["id"] not in wanted][
        : CATALOG_SIZE - len(chosen)
    ]
    tmp = tmp_path_factory.mktemp("photo-search")
    csv_path = tmp / "styles.csv"
    with csv_path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        writer.writerows(chosen)
    vitrine = open_vitrine(tmp / "home", model_dir)
    report = import_catalog(
        vitrine, csv_path, data_dir / "fashion-small" / "images", workers=2, progress=False
    )
    assert report.imported >= len(chosen) - 2
    known = vitrine.store.product_ids()
    yield vitrine, [(pid, path) for pid, path in queries if pid in known]
    vitrine.close()


def test_photo_of_a_product_finds_it_first(
    catalog: tuple[Runtime, list[tuple[str, Path]]],
) -> None:
    vitrine, queries = catalog
    assert len(queries) >= 20
    hit1 = plain_hit1 = 0
    for pid, path in queries:
        query, hits = vitrine.photo_search(path.read_bytes(), str(path), k=10)
        assert hits and all(a.score >= b.score for a, b in itertools.pairwise(hits))
        hit1 += hits[0].product_id == pid
        plain = vitrine.search.search(query.embeddings[0], 1)
        plain_hit1 += plain[0].product_id == pid
    # The plain embedding ranks a look-alike first for a good share of these photos.
    assert hit1 / len(queries) >= 0.9, (hit1, plain_hit1, len(queries))
    assert hit1 >= plain_hit1


def test_ivf_aspect_scans_find_the_same_products_and_are_saved(
    catalog: tuple[Runtime, list[tuple[str, Path]]], model_dir: Path
) -> None:
    """A catalog above ``scan_ann_min_products`` scans its aspects through IVF indexes:
    the products found stay the same, and a restart reads the saved indexes."""
    vitrine, queries = catalog
    home = vitrine.settings.home
    vitrine.search.save()
    large = open_vitrine(home, model_dir, scan_ann_min_products=100, scan_ann_nprobe=4)
    try:
        assert large.search.scans.approximate
        for pid, path in queries[:8]:
            _, exact = vitrine.photo_search(path.read_bytes(), k=5)
            _, approximate = large.photo_search(path.read_bytes(), k=5)
            assert approximate[0].product_id == exact[0].product_id == pid
        large.search.save()
        assert (home / "index" / "aspect-scans" / "scan-0.faiss").is_file()
    finally:
        large.close()
    again = open_vitrine(home, model_dir, scan_ann_min_products=100, scan_ann_nprobe=4)
    try:
        assert again.search.scans.approximate and not again.search.scans.dirty
        pid, path = queries[1]
        assert again.store.delete_product(pid)
        again.search.remove([pid])
        _, hits = again.photo_search(path.read_bytes(), k=5)
        assert pid not in {h.product_id for h in hits}
        assert again.search.scans.dirty
    finally:
        again.close()


def test_photo_search_honours_filters_and_weights(
    catalog: tuple[Runtime, list[tuple[str, Path]]],
) -> None:
    vitrine, queries = catalog
    pid, path = queries[0]
    article = vitrine.search.describe(pid)[1]["articleType"]
    _, hits = vitrine.photo_search(path.read_bytes(), k=5, filters=[f"articleType!={article}"])
    assert hits and pid not in {h.product_id for h in hits}
    assert all(vitrine.search.describe(h.product_id)[1]["articleType"] != article for h in hits)
    _, only_embedding = vitrine.photo_search(path.read_bytes(), k=5, weights={"embedding": 1.0})
    query, _ = vitrine.photo_search(path.read_bytes(), k=1)
    plain = vitrine.search.search(query.embeddings[0], 5)
    assert [h.product_id for h in only_embedding] == [h.product_id for h in plain]


def test_layouts_of_older_imports_are_backfilled(
    catalog: tuple[Runtime, list[tuple[str, Path]]], model_dir: Path
) -> None:
    vitrine, _ = catalog
    with vitrine.engine.begin() as conn:
        image_ids = list(conn.scalars(select(Image.id).where(Image.is_primary).limit(30)))
        conn.execute(
            delete(Feature).where(Feature.kind == LAYOUT_KIND, Feature.image_id.in_(image_ids))
        )
    home = vitrine.settings.home
    vitrine.search.save()
    older = open_vitrine(home, model_dir)
    try:
        missing = [
            pid
            for pid in older.search.aspects.ids()
            if LAYOUT_KIND not in older.search.aspects.get(pid)
        ]
        assert len(missing) == 30
        report = backfill_layouts(older)
        assert report.computed == 30 and not report.failed
        assert all(LAYOUT_KIND in older.search.aspects.get(pid) for pid in missing)
        assert older.store.images_missing_feature(LAYOUT_KIND, "layout-1") == []
        # The same layout as the import computed for these photos.
        pid = missing[0]
        stored = vitrine.search.aspects.get(pid)[LAYOUT_KIND]
        assert np.allclose(older.search.aspects.get(pid)[LAYOUT_KIND], stored, atol=1e-5)
    finally:
        older.close()


def test_reload_follows_changes_made_elsewhere(
    catalog: tuple[Runtime, list[tuple[str, Path]]], model_dir: Path
) -> None:
    vitrine, _ = catalog
    other = open_vitrine(vitrine.settings.home, model_dir)
    try:
        changed = sorted(vitrine.store.product_ids())[-2]
        assert vitrine.store.update_product(changed, {"title": "Renamed elsewhere"})
        before = len(other.search.vectors)
        other.search.reload([changed])
        assert other.search.describe(changed)[0] == "Renamed elsewhere"
        assert len(other.search.vectors) == before and changed in other.search.aspects
        victim = sorted(vitrine.store.product_ids())[-1]
        assert victim in other.search.aspects and victim in other.search.vectors
        vitrine.store.delete_product(victim)
        other.search.reload([victim])
        assert victim not in other.search.aspects
        assert victim not in other.search.vectors
        assert other.search.describe(victim) == (None, {})
    finally:
        other.close()


def test_reload_cannot_undo_a_delete_made_while_it_reads(
    catalog: tuple[Runtime, list[tuple[str, Path]]], model_dir: Path
) -> None:
    """A reload that read a product just before a request deleted it must not put the
    product back into the index after the request removed it."""
    vitrine, _ = catalog
    other = open_vitrine(vitrine.settings.home, model_dir)
    try:
        victim = sorted(other.store.product_ids())[-1]
        assert victim in other.search.vectors
        store = other.search.store
        read_before_delete = store.primary_vectors(
            EMBEDDING_KIND,
            other.search.model_version,
            product_ids=[victim],
        )
        deleter = threading.Thread(
            target=lambda: (store.delete_product(victim), other.search.remove([victim]))
        )

        fresh_read = store.primary_vectors

        def stale_read(kind: str, *args: Any, **kwargs: Any) -> tuple[list[str], np.ndarray]:
            if kind != EMBEDDING_KIND:
                return fresh_read(kind, *args, **kwargs)
            deleter.start()
            deleter.join(timeout=1.0)  # without serialisation the remove finishes here
            return read_before_delete

        store.primary_vectors = stale_read  # type: ignore[method-assign]
        try:
            other.search.reload([victim])
        finally:
            del store.primary_vectors
        deleter.join(timeout=10)
        assert not deleter.is_alive()
        assert victim not in other.search.vectors
        assert victim not in other.search.aspects
    finally:
        other.close()
