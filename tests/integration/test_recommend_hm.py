"""Recommendations on a small slice of the real H&M data, through the command line."""

from __future__ import annotations

import csv
import json
from collections import Counter
from pathlib import Path

import pytest
from typer.testing import CliRunner

from hm_options import catalog_import_args, events_import_args
from vitrine.cli import app

pytestmark = pytest.mark.integration


@pytest.fixture()
def env(tmp_path: Path, model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "home"
    home.mkdir()
    (home / "models").symlink_to(model_dir, target_is_directory=True)
    monkeypatch.setenv("VITRINE_HOME", str(home))
    monkeypatch.setenv("VITRINE_IMPORT_WORKERS", "0")
    return home


def read_hm(data_dir: Path) -> tuple[list[str], dict[str, dict[str, str]], list[dict[str, str]]]:
    """The H&M articles' columns, the articles by id, the purchases."""
    hm = data_dir / "hm"
    if not (hm / "transactions.csv").is_file():
        pytest.skip("H&M data not found")
    with (hm / "articles.csv").open(newline="") as f:
        reader = csv.DictReader(f)
        fields = list(reader.fieldnames or ())
        articles = {r["article_id"]: r for r in reader}
    with (hm / "transactions.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    return fields, articles, rows


def hm_slice(data_dir: Path, tmp_path: Path) -> tuple[Path, Path, list[str]]:
    """The 40 most bought catalog articles and 20 never bought, their buyers' purchases."""
    fields, articles, rows = read_hm(data_dir)
    sold = Counter(r["article_id"] for r in rows if r["article_id"] in articles)
    chosen = [a for a, _ in sold.most_common(40)]
    chosen += sorted(a for a in articles if a not in sold)[:20]
    return write_slice(tmp_path, fields, articles, rows, chosen, chosen[:40])


def write_slice(
    tmp_path: Path,
    fields: list[str],
    articles: dict[str, dict[str, str]],
    rows: list[dict[str, str]],
    chosen: list[str],
    buyers_of: list[str],
) -> tuple[Path, Path, list[str]]:
    """The ``chosen`` articles, and every purchase of the customers who bought one of
    ``buyers_of``, as two CSV files."""
    catalog = tmp_path / "articles.csv"
    with catalog.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(articles[a] for a in chosen)
    wanted = set(buyers_of)
    buyers = {r["customer_id"] for r in rows if r["article_id"] in wanted}
    log = tmp_path / "transactions.csv"
    with log.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(r for r in rows if r["customer_id"] in buyers)
    return catalog, log, sorted(buyers)


def test_hm_import_events_recommend_and_evaluate(env: Path, data_dir: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    catalog, log, buyers = hm_slice(data_dir, tmp_path)
    result = runner.invoke(app, catalog_import_args(catalog, data_dir / "hm" / "images"))
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["imported"] == 60

    result = runner.invoke(app, events_import_args(log))
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["rejected"] == 0 and report["added"] == report["rows"] > 100
    again = json.loads(runner.invoke(app, events_import_args(log)).stdout)
    assert again["added"] == 0 and again["duplicates"] == report["rows"]  # idempotent

    small = '{"algorithm": "hybrid", "params": {"windows": 3, "window_step": 28}}'
    for name in ("default", "hybrid"):
        result = runner.invoke(app, ["strategies", "set", name, "--config", small])
        assert result.exit_code == 0, result.output
    bad = runner.invoke(app, ["strategies", "set", "x", "--config", '{"algorithm": "magic"}'])
    assert bad.exit_code != 0 and "unknown algorithm" in bad.output

    user = buyers[0]
    result = runner.invoke(app, ["recommend", "--user", user, "-k", "12"])
    assert result.exit_code == 0, result.output
    recs = json.loads(result.stdout)
    ids = [i["product_id"] for i in recs["items"]]
    assert len(ids) == 12 and len(set(ids)) == 12
    with catalog.open(newline="") as f:
        in_catalog = {r["article_id"] for r in csv.DictReader(f)}
    assert set(ids) <= in_catalog  # only catalog products are recommended
    assert all(i["explanation"]["text"] for i in recs["items"])

    users = tmp_path / "users.txt"
    users.write_text("customer_id\n" + "\n".join([*buyers[:30], "someone-new"]) + "\n")
    out = tmp_path / "recs.csv"
    result = runner.invoke(app, ["recommend", "--users", str(users), "-k", "12", "--out", str(out)])
    assert result.exit_code == 0, result.output
    with out.open(newline="") as f:
        table = list(csv.DictReader(f))
    assert [r["customer_id"] for r in table] == [*buyers[:30], "someone-new"]
    assert all(len(r["prediction"].split()) == 12 for r in table)
    assert table[0]["prediction"].split() == ids  # batch and single agree

    # the spelling; `evaluate-recommendations` is the same command
    assert runner.invoke(app, ["evaluate-recommendations", "--help"]).exit_code == 0
    bad = runner.invoke(app, ["evaluate"])
    assert bad.exit_code != 0 and "--field" in bad.output and "recommendations" in bad.output
    result = runner.invoke(
        app,
        [
            "evaluate",
            "recommendations",
            "--split-date",
            "2020-03-01",
            "--algorithms",
            "als,visual_profile,rebuy",
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    run = json.loads(result.stdout)
    names_run = [r["algorithm"] for r in run["results"]]
    assert names_run == ["popularity_4w", "rebuy", "als", "visual_profile"]
    assert run["params"]["test_users"] > 0
    for r in run["results"]:
        assert 0 <= r["map@12"] <= 1 and 0 <= r["coverage"] <= 1

    bad = runner.invoke(app, ["import-events", str(log), "--user", "nope", "--type", "purchase"])
    assert bad.exit_code != 0 and "no column 'nope'" in bad.output
    bad = runner.invoke(app, ["recommend", "--user", user, "--strategy", "nope"])
    assert bad.exit_code != 0 and "unknown strategy" in bad.output
