"""The recommender over `vitrine spark train-als` output (factors written here as Spark would)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from recommend_synth import shop

from vitrine.recommend.als_factors import (
    AlsFactors,
    AlsFactorsError,
    als_factors_stamp,
    with_als_factors,
)
from vitrine.recommend.data import History
from vitrine.recommend.hybrid import Hybrid


def write_factors(folder: Path, ids: list[str], factors: np.ndarray, **params: float) -> Path:
    """Spark's layout: a Parquet folder of (id, features) parts, and the job's summary."""
    (folder / "item_factors").mkdir(parents=True)
    half = len(ids) // 2
    for n, part in enumerate((slice(0, half), slice(half, None))):
        table = pa.table({"id": ids[part], "features": factors[part].tolist()})
        pq.write_table(table, str(folder / "item_factors" / f"part-{n}.parquet"))
    (folder / "item_factors" / "_SUCCESS").write_text("")
    if params:
        (folder / "als_summary.json").write_text(json.dumps({"params": params}))
    return folder


@pytest.fixture()
def factors(tmp_path: Path) -> tuple[Path, list[str], np.ndarray]:
    """Factors for all but the last 5 catalog items, and for 3 products not in it."""
    data = shop()
    ids = [*data.items[: data.n_catalog - 5], "gone-1", "gone-2", "gone-3"]
    y = np.random.default_rng(3).normal(size=(len(ids), 6)).astype(np.float32)
    return write_factors(tmp_path / "als", ids, y, alpha=20.0, reg=0.05), ids, y


def test_fold_in_solves_the_implicit_als_user_problem(factors: tuple) -> None:
    path, ids, y = factors
    data = shop()
    model = AlsFactors(str(path)).fit(data)
    assert model.coverage == {
        "factors": len(ids),
        "catalog": data.n_catalog,
        "covered": data.n_catalog - 5,
    }
    history = data.histories()[4]
    history = history.appended(int(history.items[0]), data.last_day, 2.0, False)
    vector = model.user_vector(history, data.last_day + 1)
    assert vector is not None
    # The same minimum, written the long way: every trained item with confidence
    # 1 + alpha * strength and preference 1 if bought, reg * (items bought) * |x|^2.
    strength = np.zeros(len(ids))
    for item, weight in zip(history.items, history.weights, strict=True):
        strength[ids.index(data.items[item])] += weight
    c = 1 + 20.0 * strength
    p = (strength > 0).astype(float)
    lam = 0.05 * (strength > 0).sum()
    a = np.vstack([y * np.sqrt(c)[:, None], np.sqrt(lam) * np.eye(6)])
    b = np.concatenate([p * np.sqrt(c), np.zeros(6)])
    expected = np.linalg.lstsq(a.astype(np.float64), b, rcond=None)[0]
    assert np.allclose(vector, expected, rtol=1e-4, atol=1e-5)
    scores = model.scores(history, data.last_day + 1)
    assert np.allclose(scores[: data.n_catalog - 5], y[: data.n_catalog - 5] @ vector, atol=1e-5)
    assert np.isneginf(scores[data.n_catalog - 5 :]).all()  # not covered: no score here
    item = int(np.argmax(scores))
    assert model.explain(history, item, data.last_day + 1)["kind"] == "collaborative"


def test_what_the_factors_do_not_cover(factors: tuple) -> None:
    path, _, _ = factors
    data = shop()
    model = AlsFactors(str(path)).fit(data)
    uncovered = np.arange(data.n_catalog - 5, data.n_catalog, dtype=np.int32)
    history = History(
        uncovered, np.full(5, data.last_day), np.ones(5, np.float32), np.ones(5, bool)
    )
    assert model.user_vector(history, data.last_day) is None
    assert len(model.recommend(history, 10, data.last_day)[0]) == 0
    assert len(model.recommend(History.empty(), 10, data.last_day)[0]) == 0
    model.recommend(data.histories()[0], 10, data.last_day)  # covered items still work


def test_bad_factors_are_named(tmp_path: Path, factors: tuple) -> None:
    data = shop()
    with pytest.raises(AlsFactorsError, match="no factors; set VITRINE_RECOMMEND_ALS_FACTORS"):
        AlsFactors().fit(data)
    with pytest.raises(AlsFactorsError, match="no item_factors"):
        AlsFactors(str(tmp_path / "nothing")).fit(data)
    (tmp_path / "broken" / "item_factors").mkdir(parents=True)
    (tmp_path / "broken" / "item_factors" / "part-0.parquet").write_bytes(b"not parquet")
    with pytest.raises(AlsFactorsError, match="not readable as"):
        AlsFactors(str(tmp_path / "broken")).fit(data)
    _, ids, y = factors
    bare = write_factors(tmp_path / "bare", ids, y)
    with pytest.raises(AlsFactorsError, match="als_summary.json; give alpha"):
        AlsFactors(str(bare)).fit(data)
    assert AlsFactors(str(bare), alpha=20.0, regularization=0.05).fit(data).alpha == 20.0


def test_the_setting_routes_als_and_the_hybrid(factors: tuple) -> None:
    path, _, _ = factors
    assert with_als_factors("als", {"factors": 32}, "") == ("als", {"factors": 32})
    assert with_als_factors("als", {"factors": 32}, "/f") == ("als_factors", {"path": "/f"})
    assert with_als_factors("als_factors", {"path": "/g"}, "/f") == ("als_factors", {"path": "/g"})
    assert with_als_factors("hybrid", {"windows": 2}, "/f") == (
        "hybrid",
        {"als_factors": "/f", "windows": 2},
    )
    assert with_als_factors("popularity", {}, "/f") == ("popularity", {})
    stamp = als_factors_stamp(str(path))
    (path / "als_summary.json").write_text(json.dumps({"params": {"alpha": 1, "reg": 1}}))
    assert stamp and als_factors_stamp(str(path)) != stamp and als_factors_stamp("") == ""

    data = shop()
    hybrid = Hybrid(windows=2, window_step=30, als_factors=str(path)).fit(data)
    assert hybrid.stage1 is not None and isinstance(hybrid.stage1.als, AlsFactors)
    items, _ = hybrid.recommend(data.histories()[1], 5, data.last_day + 1)
    assert len(items) == 5
