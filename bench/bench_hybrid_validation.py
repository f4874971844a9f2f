"""Choosing the hybrid's training set-up on validation months, before any test month.

    .venv/bin/python bench/bench_hybrid_validation.py --home /tmp/hm-home \\
        --anchors 2020-03-01,2020-02-02,2020-01-05,2019-12-08 --configs 16x7,22x14,44x7 \\
        --seeds 0,1,2

For every anchor date the candidates and features of every customer who buys in the 30
days after each cut-off a configuration needs are computed once with the current stage 1
(``candidates.CandidateSources``: fitted on the events before the cut-off) and kept on disk
(``--cache``); each configuration ``WINDOWSxSTEP[xLABEL_DAYS]`` then only trains the
LambdaRank model on its label windows before the anchor and scores the 30 days after it
(MAP@12, lists filled up from the last-4-weeks popularity, as ``evaluate`` does; the
mean over ranker seeds, whose spread is of the size of the differences looked for). The
same customers and candidates for every configuration: only the training set-up differs.
"""

from __future__ import annotations

import argparse
import hashlib
import pickle
import statistics
import sys
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_recommend import open_home
from vitrine.recommend import candidates, hybrid
from vitrine.recommend.data import Dataset, History
from vitrine.recommend.evaluate import average_precision
from vitrine.recommend.events import parse_time
from vitrine.recommend.loading import load_dataset
from vitrine.recommend.popularity import Popularity


def cutoff_rows(data: Dataset, cut: float, cache: Path) -> dict[str, Any]:
    """Candidates and features at ``cut`` of everyone who buys in the next 30 days."""
    path = cache / f"{cut:.0f}.pkl"
    if path.exists():
        return pickle.loads(path.read_bytes())
    past = data.before(cut)
    stage1 = candidates.CandidateSources(past, candidates.DEFAULT_SOURCES, {})
    histories = past.histories()
    # the catalog as of the cut-off, as the hybrid's training windows and the evaluation see it
    on_sale = past.available & (data.launch_days() <= cut)
    bought: dict[int, list[tuple[int, float]]] = {}
    m = data.ev_purchase & (data.ev_day >= cut) & (data.ev_day < cut + 30)
    for u, i, d in zip(
        data.ev_user[m].tolist(), data.ev_item[m].tolist(), data.ev_day[m].tolist(), strict=True
    ):
        bought.setdefault(u, []).append((i, d - cut))
    rows = []
    for user in sorted(bought):
        history = histories[user] if user < len(histories) else History.empty()
        items, f = stage1.candidates(history, cut, on_sale)
        rows.append((user, items, f))
    filler, _ = (
        Popularity(half_life_days=None, window_days=28.0)
        .fit(past)
        .recommend(History.empty(), 200, cut, on_sale)
    )
    out = {"rows": rows, "bought": bought, "filler": filler, "names": stage1.feature_names}
    path.write_bytes(pickle.dumps(out))
    return out


def train(
    cuts: dict[float, dict[str, Any]],
    anchor: float,
    windows: int,
    step: float,
    label_days: float,
    seed: int,
) -> Any:
    import lightgbm as lgb

    x, y, groups = [], [], []
    for w in range(windows):
        start = anchor - w * step - label_days
        if start not in cuts:
            continue
        c = cuts[start]
        for user, items, f in c["rows"]:
            relevant = [i for i, d in c["bought"][user] if d < label_days]
            labels = np.isin(items, relevant).astype(np.int32)
            if labels.any():
                x.append(f)
                y.append(labels)
                groups.append(len(labels))
    names = cuts[anchor]["names"]
    model = lgb.LGBMRanker(**hybrid.Hybrid(seed=seed).ranker_params_for(names))
    model.fit(np.vstack(x), np.concatenate(y), group=groups, feature_name=names)
    return model


def score(c: dict[str, Any], model: Any, k: int = 12) -> float:
    aps = []
    for user, items, f in c["rows"]:
        recs: list[int] = []
        if len(items):
            s = model.booster_.predict(f, num_threads=1)
            recs = [int(i) for i in items[np.lexsort((items, -s))[:k]]]
        taken = set(recs)
        recs += [int(i) for i in c["filler"] if int(i) not in taken][: k - len(recs)]
        aps.append(average_precision(recs, {i for i, _ in c["bought"][user]}, k))
    return float(np.mean(aps))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", type=Path, required=True)
    parser.add_argument("--anchors", default="2020-03-01,2020-02-02,2020-01-05,2019-12-08")
    parser.add_argument("--configs", default="16x7,22x14")
    parser.add_argument("--seeds", default="0", help="ranker seeds (the mean is shown)")
    parser.add_argument("--cache", type=Path, default=Path("/tmp/vitrine-hybrid-validation"))
    args = parser.parse_args()
    vitrine = open_home(args.home)
    service = vitrine.recommendations
    data = load_dataset(
        service.store,
        service.events,
        service.weights,
        category_field=service.settings.recommend_category_field,
    )
    vitrine.close()
    code = hashlib.sha256(Path(candidates.__file__).read_bytes()).hexdigest()[:12]
    cache = args.cache / code  # features of this version of the stage-1 code
    cache.mkdir(parents=True, exist_ok=True)
    anchors = [parse_time(a).timestamp() / 86_400 for a in args.anchors.split(",")]
    configs = []
    for spec in args.configs.split(","):
        windows, step, *label = spec.split("x")
        configs.append((int(windows), float(step), float(label[0]) if label else 28.0))
    needed = set(anchors)
    for anchor in anchors:
        for windows, step, label_days in configs:
            needed.update(anchor - w * step - label_days for w in range(windows))
    cuts = {cut: cutoff_rows(data, cut, cache) for cut in sorted(needed)}
    for windows, step, label_days in configs:
        seeds = [int(x) for x in args.seeds.split(",")]
        maps = [
            statistics.mean(
                score(cuts[a], train(cuts, a, windows, step, label_days, seed)) for seed in seeds
            )
            for a in anchors
        ]
        print(
            f"{windows} windows {step:g} days apart, {label_days:g}-day labels: MAP@12 mean "
            f"{statistics.mean(maps):.4f} ({' '.join(f'{m:.4f}' for m in maps)})",
            flush=True,
        )


if __name__ == "__main__":
    main()
