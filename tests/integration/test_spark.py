"""Spark jobs in local[2] mode on small slices of the real data: embed, import, analytics, ALS."""

from __future__ import annotations

import csv
import itertools
import json
import shutil
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("pyspark", reason="Spark tests need the spark extra (make test installs it)")
import pyarrow.parquet as pq

from backends import Backend
from vitrine.jobs.import_features import import_features
from vitrine.jobs.sources import list_photos
from vitrine.jobs.spark.als import AlsParams, train_als
from vitrine.jobs.spark.analytics import analytics
from vitrine.jobs.spark.embed import embed
from vitrine.jobs.spark.tables import EventColumns, load_events
from vitrine.runtime import Runtime
from vitrine.vision.decode import DecodeLimits

pytestmark = pytest.mark.integration
PHOTOS = 12


@pytest.fixture(scope="module")
def spark() -> Iterator[Any]:
    from vitrine.jobs.spark import spark_session

    session = spark_session("local[2]", "vitrine-tests", **{"spark.driver.host": "127.0.0.1"})
    yield session
    session.stop()


@pytest.fixture(scope="module")
def styles(data_dir: Path) -> dict[str, dict[str, str]]:
    with (data_dir / "fashion-small" / "styles.csv").open(newline="") as handle:
        rows = itertools.islice(csv.DictReader(handle), 400)
        return {r["id"]: r for r in rows}


@pytest.fixture(scope="module")
def embedded(
    spark: Any,
    data_dir: Path,
    model_dir: Path,
    tmp_path_factory: pytest.TempPathFactory,
    styles: dict[str, dict[str, str]],
) -> Path:
    """A folder of 12 real photos and one broken file, embedded by Spark."""
    photos = tmp_path_factory.mktemp("photos")
    ids = [i for i in styles if (data_dir / "fashion-small" / "images" / f"{i}.jpg").is_file()]
    for pid in ids[:PHOTOS]:
        sub = photos / pid[:2]  # nested folders are found too
        sub.mkdir(exist_ok=True)
        shutil.copy(data_dir / "fashion-small" / "images" / f"{pid}.jpg", sub / f"{pid}.jpg")
    (photos / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    out = tmp_path_factory.mktemp("embed") / "features.parquet"
    result = embed(spark, str(photos), str(out), model_dir=model_dir, partitions=2, chunk=5)
    assert result == {"photos": PHOTOS + 1, "embedded": PHOTOS, "failed": 1, "output": str(out)}
    return out


def test_embed_matches_the_service_pipeline(embedded: Path, model_dir: Path) -> None:
    table = pq.read_table(str(embedded)).to_pylist()
    bad = [r for r in table if r["error"] is not None]
    assert [r["product_id"] for r in bad] == ["broken"] and "broken.jpg" in bad[0]["path"]
    good = sorted((r for r in table if r["error"] is None), key=lambda r: r["product_id"])
    from vitrine.vision.analyzer import ImageAnalyzer
    from vitrine.vision.embedding import Embedder

    analyzer = ImageAnalyzer(Embedder(model_dir, threads=1))
    row = good[0]
    expected = analyzer.analyze(Path(row["path"]).read_bytes(), row["path"])
    vector = np.frombuffer(row["embedding"], "<f4")
    assert abs(np.linalg.norm(vector) - 1) < 1e-4
    assert float(vector @ expected.embedding) > 0.9999
    assert row["model_version"] == expected.model_version
    assert (
        json.loads(row["summary"])["color"]
        == json.loads(json.dumps(expected.prepared.features.summary()))["color"]
    )
    assert set(dict(row["vectors"])) == set(expected.prepared.aspect_vectors())


def test_import_features_then_analytics(
    spark: Any,
    embedded: Path,
    backend: Backend,
    tmp_path: Path,
    model_dir: Path,
    data_dir: Path,
    styles: dict[str, dict[str, str]],
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / "models").symlink_to(model_dir, target_is_directory=True)
    vitrine = Runtime(backend.settings(home))
    try:
        report = import_features(vitrine, embedded)
        assert (report.imported, report.skipped, len(report.rejected)) == (PHOTOS, 0, 1)
        assert import_features(vitrine, embedded).skipped == PHOTOS  # resumable
        ids = sorted(vitrine.store.product_ids())
        assert len(ids) == PHOTOS and len(vitrine.search) == PHOTOS
        product = vitrine.store.get_product(ids[0])
        assert product is not None
        assert vitrine.blobs.get(product["images"][0]["blob_key"])[:2] == b"\xff\xd8"
        hits = vitrine.search.similar(ids[0], k=3)
        assert len(hits) == 3 and ids[0] not in {h.product_id for h in hits}
        # Give the products their catalog attributes, then compute the statistics.
        for pid in ids:
            row = styles[pid]
            vitrine.store.update_product(
                pid, {"attributes": {"masterCategory": row["masterCategory"]}}
            )
        events = tmp_path / "events.csv"
        with events.open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["user", "item", "kind", "when", "strategy"])
            for n in range(40):
                kind = ("view", "view", "cart", "purchase")[n % 4]
                writer.writerow(
                    [
                        f"u{n % 5}",
                        ids[n % PHOTOS],
                        kind,
                        f"2026-11-{1 + n % 3:02d}",
                        "s" + str(n % 2),
                    ]
                )
        columns = EventColumns("user", "item", "kind", "when", "strategy")
        result = analytics(
            spark, vitrine, tmp_path / "stats", events=str(events), event_columns=columns
        )
    finally:
        vitrine.close()
    assert result["skipped"] == ["labels"] or result["skipped"] == []
    stats = tmp_path / "stats"

    def read_csv(name: str) -> list[dict[str, str]]:
        with (stats / f"{name}.csv").open(newline="") as handle:
            return list(csv.DictReader(handle))

    per_category = {
        (r["field"], r["value"]): int(r["products"]) for r in read_csv("products_per_attribute")
    }
    expected = Counter(styles[pid]["masterCategory"] for pid in ids)
    assert per_category == {("masterCategory", k): v for k, v in expected.items()}
    assert sum(int(r["products"]) for r in read_csv("cnn_labels")) == PHOTOS
    per_day = {(r["day"], r["type"]): int(r["events"]) for r in read_csv("events_per_day")}
    assert sum(per_day.values()) == 40 and per_day[("2026-11-01", "view")] == 7
    strategies = {r["strategy"]: r for r in read_csv("conversion_per_strategy")}
    assert strategies["s0"]["views"] == "10" and strategies["s0"]["purchases"] == "0"
    assert strategies["s1"]["purchases"] == "10" and float(strategies["s1"]["purchase_rate"]) == 1.0
    assert (stats / "events_per_day").is_dir()  # Parquet beside the CSV


def test_train_als_on_real_purchases(spark: Any, data_dir: Path, tmp_path: Path) -> None:
    source = data_dir / "hm" / "transactions.csv"
    sample = tmp_path / "purchases.csv"
    with source.open() as src, sample.open("w") as dst:
        dst.writelines(itertools.islice(src, 4001))
    columns = EventColumns("customer_id", "article_id", None, "t_dat")
    events = load_events(spark, str(sample), columns)
    params = AlsParams(rank=8, iterations=8, reg=0.01, alpha=40, blocks=2)
    result = train_als(spark, events, tmp_path / "als", params)
    with sample.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    users = {r["customer_id"] for r in rows}
    items = {r["article_id"] for r in rows}
    assert (result["users"], result["items"]) == (len(users), len(items))
    from vitrine.recommend.als_factors import read_item_factors

    item_ids, item_f = read_item_factors(tmp_path / "als")
    assert item_f.shape == (len(items), 8)
    assert set(item_ids) == items and sorted(items)[0][0] == "0"  # leading zeros kept
    users_table = pq.read_table(str(tmp_path / "als" / "user_factors")).to_pylist()
    assert {r["id"] for r in users_table} == users
    # Bought items score higher for their buyers than the catalog average.
    u_pos = {r["id"]: n for n, r in enumerate(users_table)}
    i_pos = {a: n for n, a in enumerate(item_ids)}
    scores = np.array([r["features"] for r in users_table], np.float32) @ item_f.T
    bought = np.mean([scores[u_pos[r["customer_id"]], i_pos[r["article_id"]]] for r in rows])
    assert bought > scores.mean() + 3 * scores.std() / np.sqrt(len(rows)) and bought > 0.3


def test_list_photos_on_s3(backend: Backend, tmp_path: Path) -> None:
    if backend.name == "embedded":
        assert list_photos(str(tmp_path)) == []
        with pytest.raises(ValueError, match="no such folder"):
            list_photos(str(tmp_path / "none"))
        return
    from vitrine.catalog.s3 import S3Options
    from vitrine.jobs.sources import PhotoReader

    settings = backend.settings(tmp_path)
    options = S3Options.from_settings(settings)
    from vitrine.catalog.blob_stores import open_blob_store

    blobs = open_blob_store(settings.resolved_blob_url, options)
    for key in ("in/a.jpg", "in/b/c.PNG", "in/notes.txt"):
        blobs.put(key, b"x" * 10)
    location = settings.resolved_blob_url.replace("s3://", "s3a://") + "/in"
    found = list_photos(location, options)
    assert [f.rsplit("/", 2)[-2:] for f in found] == [["in", "a.jpg"], ["b", "c.PNG"]]
    reader = PhotoReader(DecodeLimits(max_bytes=5), options)
    with pytest.raises(ValueError, match="larger than the limit"):
        reader.read(found[0])


@pytest.fixture(scope="module")
def hm_als(spark: Any, data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`train-als` on the first 5,000 real H&M purchases (rank 8)."""
    source = data_dir / "hm" / "transactions.csv"
    if not source.is_file():
        pytest.skip("H&M data not found")
    work = tmp_path_factory.mktemp("hm-als")
    with source.open() as src, (work / "purchases.csv").open("w") as dst:
        dst.writelines(itertools.islice(src, 5001))
    columns = EventColumns("customer_id", "article_id", None, "t_dat")
    events = load_events(spark, str(work / "purchases.csv"), columns)
    params = AlsParams(
        rank=8,
        iterations=10,
        reg=0.05,
        alpha=20,
        blocks=2,
        checkpoint_dir=str(work / "checkpoints"),
    )
    train_als(spark, events, work / "als", params)
    return work


def test_als_factors_serve_recommendations(
    hm_als: Path, data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The Spark factors behind the recommender: MLlib's own ranking for known customers
    (recommendForUserSubset is the top of user_factors . item_factors), live events folded
    in, and the fallback chain for what the factors do not cover."""
    from vitrine.catalog.database import make_engine, migrate
    from vitrine.catalog.store import CatalogStore, ProductRecord
    from vitrine.config import load_settings
    from vitrine.recommend.als_factors import AlsFactors, read_item_factors
    from vitrine.recommend.event_store import EventColumns as LogColumns
    from vitrine.recommend.service import RecommendationService
    from vitrine.recommend.strategies import Strategy

    with (hm_als / "purchases.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    bought = sorted({r["article_id"] for r in rows})
    with (data_dir / "hm" / "articles.csv").open(newline="") as handle:
        titles = {r["article_id"]: r["prod_name"] for r in csv.DictReader(handle)}
    new = sorted(set(titles) - set(bought))[:5]  # in the catalog, never bought
    engine = make_engine(f"sqlite:///{tmp_path / 'vitrine.db'}")  # HOME's default database
    migrate(engine)
    store = CatalogStore(engine)
    for pid in bought + new:
        store.save_product(ProductRecord(pid, titles.get(pid)), [], replace_images=True)
    settings = load_settings(env={}).with_overrides(
        home=tmp_path, recommend_retrain_minutes=0, recommend_als_factors=str(hm_als / "als")
    )
    service = RecommendationService(settings, engine, store)
    report = service.import_events(
        hm_als / "purchases.csv", LogColumns("customer_id", "article_id", "t_dat", None, "purchase")
    )
    assert (report.added, report.rejected) == (5000, [])
    service.strategies.put(Strategy("als", "als", fallback=["popularity"]))
    service.strategies.put(Strategy("hybrid", "hybrid", params={"windows": 2, "window_step": 14}))
    models = service.train()

    als = models.algorithms["als"]
    assert isinstance(als, AlsFactors)
    assert als.coverage == {
        "factors": len(bought),
        "catalog": len(bought) + 5,
        "covered": len(bought),
    }
    hybrid = models.algorithms["hybrid"]
    assert hybrid.stage1 is not None and isinstance(hybrid.stage1.als, AlsFactors)

    # MLlib's user factors and its ranking, from the Parquet the job wrote.
    item_ids, item_f = read_item_factors(hm_als / "als")
    users = pq.read_table(str(hm_als / "als" / "user_factors")).to_pylist()
    user_f = {r["id"]: np.asarray(r["features"], np.float32) for r in users}
    counts = Counter(r["customer_id"] for r in rows)
    sample = [u for u, _ in counts.most_common(40)]
    for user in sample:
        history = service.history(user)
        now = service.computer.now(models, history)
        folded = als.user_vector(history, now)
        mllib = user_f[user]
        assert folded is not None and np.allclose(folded, mllib, rtol=1e-4, atol=1e-5)
        # The same ranking up to ties (items bought by the same customers only have
        # identical factors): the MLlib scores of our list are MLlib's top 10 scores.
        by_id = dict(zip(item_ids, (item_f @ mllib).tolist(), strict=True))
        top = np.sort(item_f @ mllib)[::-1][:10]
        items, _ = als.recommend(history, 10, now)
        got = [models.data.items[i] for i in items]
        assert np.allclose([by_id[p] for p in got], top, rtol=1e-5)
        served = service.recommend_user(user, k=10, strategy="als")
        assert not served.fallback and {i.source for i in served.items} == {"als"}
        assert np.allclose([by_id[i.product_id] for i in served.items], top, rtol=1e-5)
    # What customers bought ranks high in their own lists (percentile 0 = top).
    positions = []
    for user in sample:
        scores = als.scores(service.history(user), models.reference_day)
        for pid in {r["article_id"] for r in rows if r["customer_id"] == user}:
            s = scores[models.data.item_index[pid]]
            positions.append(float(np.mean(scores[np.isfinite(scores)] > s)))
    assert np.mean(positions) < 0.05

    # A live event changes the next answer without retraining (folded in).
    user = sample[-1]
    before = [i.product_id for i in service.recommend_user(user, k=10, strategy="als").items]
    extra = next(p for p in bought if p not in before)
    score_before = als.scores(service.history(user), models.reference_day)
    service.add_events([{"user_id": user, "product_id": extra, "type": "purchase"}])
    history = service.history(user)
    score_after = als.scores(history, service.computer.now(models, history))
    j = models.data.item_index[extra]
    assert score_after[j] > score_before[j]
    after = service.recommend_user(user, k=10, strategy="als").items
    assert [i.product_id for i in after] != before

    # Not covered: new products score nothing here; a new customer gets the fallback.
    assert not np.isfinite(score_after[[models.data.item_index[p] for p in new]]).any()
    newcomer = service.recommend_user("someone-new", k=5, strategy="als")
    assert newcomer.fallback and {i.source for i in newcomer.items} == {"popularity"}
    only_new = service.recommend_session(new[:2], k=5, strategy="als")
    assert len(only_new.items) == 5 and {i.source for i in only_new.items} == {"popularity"}
    mixed = service.recommend_user(user, k=5, strategy="hybrid")
    assert len(mixed.items) == 5

    # The command line: one training run with the factors, and a folder that is not one.
    from typer.testing import CliRunner

    from vitrine.cli import app

    monkeypatch.setenv("VITRINE_HOME", str(tmp_path))
    runner = CliRunner()
    result = runner.invoke(app, ["train-recommendations", "--als-factors", str(hm_als / "als")])
    assert result.exit_code == 0, result.output
    assert "als" in json.loads(result.stdout)["trained"]
    result = runner.invoke(app, ["train-recommendations", "--als-factors", str(tmp_path)])
    assert result.exit_code == 2 and "no item_factors folder" in result.output
