"""A training run: one head per field, hierarchy, rare classes, calibration, thresholds,
held-out metrics; then registration and activation only when not worse than before.

``train_heads`` is the pure part (features and labels in, trained ``FieldModel``s and
their metrics out); ``train_and_register`` adds the database and the model registry.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.special import softmax
from sklearn.metrics import f1_score

from vitrine.catalog.store import CatalogStore
from vitrine.classify.dataset import FieldExamples, FieldLabels, assemble, read_field_labels
from vitrine.classify.features import FEATURE_GROUPS, TEXT_GROUP, FeatureBlocks, load_features
from vitrine.classify.fusion import FusedHead, Head
from vitrine.classify.heads import ALGORITHM, LinearHead
from vitrine.classify.hierarchy import Hierarchy, learn_hierarchies
from vitrine.classify.metrics import choose_threshold, evaluate, reliability, selective
from vitrine.classify.predictor import OTHER, FieldModel, Predictor
from vitrine.classify.registry import ModelRegistry, UnknownModelError
from vitrine.classify.split import stratified_split
from vitrine.classify.text import MIN_TEXT_SHARE, TEXT_ALGORITHM, TextHead, has_text
from vitrine.vision.features import FEATURE_VERSION

log = logging.getLogger(__name__)

# Feature-group sets tried per field when none is given (chosen on calibration rows).
CANDIDATE_GROUPS: tuple[tuple[str, ...], ...] = (
    ("embedding",),
    ("embedding", "color"),
    FEATURE_GROUPS,
)
SIDES = ("train", "calibration", "evaluation")


class TrainingError(ValueError):
    """A field that cannot be trained; the message says why."""


@dataclass
class TrainConfig:
    """How the classifiers of a training run are built and judged."""

    min_support: int = 10
    rare_policy: str = "other"  # "other": merge rare classes; "drop": leave them unpredicted
    holdout: float = 0.2
    review_precision: float = 0.9
    correction_weight: float = 3.0
    activation_tolerance: float = 0.0
    groups: Sequence[str] | None = None  # None: choose per field among CANDIDATE_GROUPS
    text: bool = True  # also try the products' title and description (fused, when it helps)
    C: float = 0.05
    text_C: float = 10.0
    selection_rows: int = 6000  # training rows used to compare group sets (speed)
    seed: str = "vitrine"


@dataclass
class TrainedField:
    """One field's trained head with its held-out metrics."""

    model: FieldModel
    metrics: dict[str, Any]
    train_size: int
    validation_size: int
    corrections_used: int
    evaluation_ids: list[str] = field(default_factory=list)


def _split_sides(
    datasets: Mapping[str, FieldExamples], hierarchies: Sequence[Hierarchy], config: TrainConfig
) -> dict[str, dict[str, str]]:
    """product id -> side, per field; fields of a hierarchy share one split, stratified by
    their finest field."""
    sides: dict[str, dict[str, str]] = {}
    grouped = {f: h for h in hierarchies for f in h.fields}
    done: set[str] = set()
    for f in datasets:
        if f in done:
            continue
        members = grouped[f].fields if f in grouped else [f]
        strata: dict[str, str] = {}
        for member in members:  # coarse to fine: the finest value wins
            d = datasets[member]
            strata.update(zip(d.features.ids, (str(v) for v in d.y), strict=True))
        ids = sorted(strata)
        split = stratified_split(ids, [strata[i] for i in ids], config.holdout, config.seed)
        side = {}
        for name, rows in zip(
            SIDES, (split.train, split.calibration, split.evaluation), strict=True
        ):
            side.update({ids[i]: name for i in rows})
        for member in members:
            sides[member] = side
            done.add(member)
    return sides


def held_out_sides(
    labels: Mapping[str, FieldLabels], product_ids: Sequence[str], config: TrainConfig
) -> dict[str, dict[str, str]]:
    """field -> product id -> "train", "calibration" or "evaluation": the split that
    :func:`train_heads` makes for these labelled products (fine-tuning holds out the same)."""
    present = set(product_ids)
    values = {f: {p: v for p, v in fl.values.items() if p in present} for f, fl in labels.items()}
    hierarchies = learn_hierarchies(values) if len(values) > 1 else []
    datasets = {f: assemble(FeatureBlocks(sorted(product_ids), {}), fl) for f, fl in labels.items()}
    return _split_sides(datasets, hierarchies, config)


def _rows(data: FieldExamples, side: Mapping[str, str], name: str) -> np.ndarray:
    return np.array([i for i, pid in enumerate(data.features.ids) if side[pid] == name], np.int64)


def _macro_f1(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    return float(f1_score(y_true, y_pred, average="macro", zero_division=0))


def _choose_groups(
    data: FieldExamples, train: np.ndarray, calib: np.ndarray, y: np.ndarray, config: TrainConfig
) -> tuple[tuple[str, ...], dict[str, float]]:
    """The candidate group set with the best calibration macro-F1 (fewer groups on ties)."""
    if config.groups is not None:
        return tuple(g for g in config.groups if g != TEXT_GROUP), {}
    rng = np.random.default_rng(0)
    sub = (
        train
        if len(train) <= config.selection_rows
        else rng.choice(train, config.selection_rows, replace=False)
    )
    scores: dict[str, float] = {}
    best: tuple[str, ...] = CANDIDATE_GROUPS[0]
    if len(np.unique(y[sub])) < 2 or len(calib) == 0:
        return best, scores
    available = set(data.features.blocks)
    candidates = [g for g in CANDIDATE_GROUPS if set(g) <= available]
    if len(candidates) == 1:
        return candidates[0], {}
    for groups in candidates:
        head = LinearHead(groups, C=config.C).fit(data.features.take(sub), y[sub], data.weight[sub])
        score = _macro_f1(y[calib], head.predict(data.features.take(calib)))
        scores["+".join(groups)] = round(score, 4)
        if score > scores.get("+".join(best), -1.0) + 1e-3:
            best = groups
    return best, scores


def _with_text(
    image: LinearHead,
    data: FieldExamples,
    train: np.ndarray,
    calib: np.ndarray,
    y: np.ndarray,
    config: TrainConfig,
    scores: dict[str, float],
) -> Head:
    """The photo head fused with a head on the products' text, when most training
    products have text and the fusion is better on calibration rows (or text is pinned)."""
    pinned = config.groups is not None and TEXT_GROUP in config.groups
    if not (config.text or pinned):
        return image
    texted = has_text(data.features.take(train))
    if texted.mean() < MIN_TEXT_SHARE or len(np.unique(y[train][texted])) < 2:
        return image
    rows = train[texted]
    texts = [str(t) for t in data.features.blocks[TEXT_GROUP][rows]]
    text = TextHead(C=config.text_C).fit(texts, y[rows], data.weight[rows])
    if list(text.classes_) != list(image.classes_):  # a class only in text-less rows
        return image
    fused = FusedHead(image, text)
    held_out = data.features.take(calib)
    image_score = _macro_f1(y[calib], image.predict(held_out))
    fused.calibrate(held_out, y[calib])
    fused_score = _macro_f1(y[calib], fused.predict(held_out))
    scores["+".join(image.groups)] = round(image_score, 4)
    scores["+".join(fused.groups)] = round(fused_score, 4)
    # fused.calibrate refit the photo head's temperature on the same rows: it holds either way
    return fused if pinned or fused_score > image_score + 1e-3 else image


def train_heads(
    features: FeatureBlocks,
    labels: Mapping[str, FieldLabels],
    config: TrainConfig | None = None,
) -> dict[str, TrainedField]:
    """Train every field of ``labels`` on ``features``; see the module docstring."""
    config = config or TrainConfig()
    present = set(features.ids)
    values = {f: {p: v for p, v in fl.values.items() if p in present} for f, fl in labels.items()}
    hierarchies = learn_hierarchies(values) if len(values) > 1 else []
    datasets = {f: assemble(features, fl, config.correction_weight) for f, fl in labels.items()}
    for f, data in datasets.items():
        if len(data) == 0:
            raise TrainingError(f"field {f!r}: no product with photo features has a value")
    sides = _split_sides(datasets, hierarchies, config)
    by_field = {f: h for h in hierarchies for f in h.fields}

    models: dict[str, FieldModel] = {}
    info: dict[str, dict[str, Any]] = {}
    for f, data in datasets.items():
        t0 = time.perf_counter()
        train, calib = _rows(data, sides[f], "train"), _rows(data, sides[f], "calibration")
        support = Counter(data.y[train])
        # Rare: too few training examples, or none at all (seen only in held-out rows).
        rare_values = {v for v in set(data.y) if support.get(v, 0) < config.min_support}
        y = np.array([OTHER if v in rare_values else v for v in data.y], dtype=object)
        if config.rare_policy == "drop":
            train = train[y[train] != OTHER]
        elif config.rare_policy != "other":
            raise TrainingError(f"unknown rare-class policy {config.rare_policy!r}")
        if len(np.unique(y[train])) < 2:
            raise TrainingError(
                f"field {f!r}: fewer than 2 classes with {config.min_support} or more "
                f"training examples ({len(train)} training rows)"
            )
        groups, scores = _choose_groups(data, train, calib, y, config)
        head: Head = LinearHead(groups, C=config.C).fit(
            data.features.take(train), y[train], data.weight[train]
        )
        if len(calib):
            head.calibrate(data.features.take(calib), y[calib])
            head = _with_text(head, data, train, calib, y, config, scores)
        models[f] = FieldModel(
            f,
            head,
            rare=sorted(rare_values),
            min_support=config.min_support,
            hierarchy=by_field.get(f),
        )
        info[f] = {
            "train": train,
            "calib": calib,
            "groups": scores,
            "seconds": time.perf_counter() - t0,
            "support": support,
        }
        log.info("trained %s on %d rows in %.1f s", f, len(train), info[f]["seconds"])

    # Thresholds on calibration rows, metrics on evaluation rows: both as served (jointly).
    predictor = Predictor(list(models.values()))
    out: dict[str, TrainedField] = {}
    for f, data in datasets.items():
        model = models[f]
        calib = info[f]["calib"]
        evaluation = _rows(data, sides[f], "evaluation")
        if len(calib):
            pred = predictor.predict(data.features.take(calib))
            p = pred[f]
            correct = np.array([v is not None for v in p.value]) & (p.value == data.y[calib])
            model.threshold = choose_threshold(p.confidence, correct, config.review_precision)
        metrics = _field_metrics(predictor, model, data, evaluation, info[f], config)
        out[f] = TrainedField(
            model,
            metrics,
            train_size=len(info[f]["train"]),
            validation_size=len(calib) + len(evaluation),
            corrections_used=int(data.corrected[info[f]["train"]].sum()),
            evaluation_ids=[data.features.ids[i] for i in evaluation],
        )
    return out


def _field_metrics(
    predictor: Predictor,
    model: FieldModel,
    data: FieldExamples,
    evaluation: np.ndarray,
    info: dict[str, Any],
    config: TrainConfig,
) -> dict[str, Any]:
    f = model.field
    y_true = data.y[evaluation]
    features = data.features.take(evaluation)
    metrics: dict[str, Any] = {
        "field": f,
        "split": {
            "train": len(info["train"]),
            "calibration": len(info["calib"]),
            "evaluation": len(evaluation),
            "holdout": config.holdout,
        },
        "feature_selection": {
            "chosen": list(model.head.groups),
            "calibration_macro_f1": info["groups"],
        },
        "temperature": round(model.head.temperature, 4),
        **(
            {
                "fusion_weights": {
                    "photo": round(float(model.head.weights[0]), 4),
                    "text": round(float(model.head.weights[1]), 4),
                }
            }
            if isinstance(model.head, FusedHead)
            else {}
        ),
        "train_seconds": round(info["seconds"], 1),
        "rare": {
            "policy": config.rare_policy,
            "min_support": config.min_support,
            "classes": {c: int(info["support"].get(c, 0)) for c in model.rare},
            "evaluation_rows": int(np.isin(y_true, model.rare).sum()),
        },
    }
    if len(evaluation) == 0:
        metrics["note"] = "no evaluation rows (too few labelled products)"
        return metrics
    pred = predictor.predict(features)[f]
    served = np.array([OTHER if v is None else v for v in pred.value], dtype=object)
    top_proba = pred.proba
    frequent = ~np.isin(y_true, model.rare)
    metrics["all"] = evaluate(
        y_true,
        served,
        pred.confidence,
        proba=top_proba,
        classes=list(pred.classes),
        rare=model.rare,
    )
    if model.rare:
        metrics["frequent_classes"] = evaluate(
            y_true[frequent],
            served[frequent],
            pred.confidence[frequent],
            proba=top_proba[frequent],
            classes=list(pred.classes),
        )
        metrics["frequent_classes"].pop("confusion")
        metrics["frequent_classes"].pop("per_class")
    correct = served == y_true
    metrics["review"] = {
        "target_precision": config.review_precision,
        **selective(np.where(pred.value == None, -1.0, pred.confidence), correct, model.threshold),  # noqa: E711
    }
    independent = model.head.predict(features)
    metrics["independent_accuracy"] = round(float((independent == y_true).mean()), 4)
    if model.hierarchy is not None:
        metrics["hierarchy"] = {
            "fields": model.hierarchy.fields,
            "combinations": len(model.hierarchy.combos),
        }
    # The head alone on evaluation rows, before and after its temperature: what calibration did.
    logits = model.head.decision_function(features)
    hit = model.head.classes_[logits.argmax(axis=1)] == y_true
    metrics["head_calibration_ece"] = {
        name: reliability(softmax(logits / t, axis=1).max(axis=1), hit)[0]
        for name, t in (("before_temperature", 1.0), ("after_temperature", model.head.temperature))
    }
    return metrics


# -- with the database -----------------------------------------------------------------


def compare(
    old: FieldModel,
    new: FieldModel,
    features: FeatureBlocks,
    y_true: np.ndarray,
    weight: np.ndarray | None = None,
) -> dict[str, Any]:
    """Both heads alone on the same evaluation rows: (weighted) accuracy and macro-F1."""
    weight = np.ones(len(y_true)) if weight is None else weight
    out = {}
    for name, model in (("old", old), ("new", new)):
        pred = model.head.predict(features)
        out[name] = {
            "accuracy": round(float(np.average(pred == y_true, weights=weight)), 4),
            "macro_f1": round(
                float(
                    f1_score(y_true, pred, average="macro", zero_division=0, sample_weight=weight)
                ),
                4,
            ),
        }
    return out


def train_and_register(
    store: CatalogStore,
    registry: ModelRegistry,
    fields: Sequence[str],
    embedding_version: str,
    config: TrainConfig | None = None,
    *,
    kind: str = "field",
    trigger: str = "manual",
    features: FeatureBlocks | None = None,
    labels: Mapping[str, FieldLabels] | None = None,
    activate: str = "if-better",  # "always", "if-better", "never"
) -> list[dict[str, Any]]:
    """Train ``fields`` from the catalog, store each model, activate it when it is not
    worse than the active one on the same evaluation rows; returns the registry rows."""
    config = config or TrainConfig()
    if not fields:
        raise TrainingError("name at least one field to train")
    if features is None:
        features = load_features(store, embedding_version)
    if len(features) == 0:
        raise TrainingError("no product has stored photo features yet: import a catalog first")
    labels = labels if labels is not None else read_field_labels(store, fields)
    missing = [f for f in fields if f not in labels]
    if missing:
        raise TrainingError(f"no labels given for fields {missing}")
    labels = {f: labels[f] for f in fields}
    trained = train_heads(features, labels, config)
    rows = []
    for f, result in trained.items():
        model = result.model
        registered = registry.register(
            model.head,
            field=f,
            kind=kind,
            algorithm=ALGORITHM
            if isinstance(model.head, LinearHead)
            else f"{ALGORITHM} fused with {TEXT_ALGORITHM}",
            feature_groups=list(model.head.groups),
            embedding_version=embedding_version,
            feature_version=FEATURE_VERSION,
            train_size=result.train_size,
            validation_size=result.validation_size,
            corrections_used=result.corrections_used,
            metrics=result.metrics,
            params=model.params(),
            trigger=trigger,
        )
        comparison = _decide(
            registry, registered, model, features, labels[f], result, config, activate
        )
        registry.set_comparison(registered["id"], comparison)
        if comparison["activated"]:
            registry.activate(registered["id"])
        rows.append(registry.get(registered["id"]))
    return rows


def _decide(
    registry: ModelRegistry,
    registered: dict[str, Any],
    model: FieldModel,
    features: FeatureBlocks,
    labels: FieldLabels,
    result: TrainedField,
    config: TrainConfig,
    activate: str,
) -> dict[str, Any]:
    current = registry.active_for(registered["field"])
    base: dict[str, Any] = {"against": None, "activated": activate != "never"}
    if activate == "never":
        return {**base, "reason": "activation not requested"}
    if current is None:
        return {**base, "reason": "first model of this field"}
    base["against"] = {"id": current["id"], "version": current["version"]}
    if activate == "always":
        return {**base, "reason": "activation forced"}
    if current["embedding_version"] != registered["embedding_version"] or (
        current["feature_version"] != registered["feature_version"]
    ):
        return {**base, "reason": "the active model uses other features"}
    ids = [p for p in result.evaluation_ids if p in labels.values]
    if not ids:
        return {**base, "reason": "no evaluation rows to compare on"}
    try:
        old = FieldModel.from_params(
            current["field"], registry.load_head(current), current["params"], current["version"]
        )
    except (UnknownModelError, KeyError, OSError) as exc:
        return {**base, "reason": f"the active model cannot be loaded: {exc}"}
    y_true = np.array([labels.values[p] for p in ids], dtype=object)
    # Corrected rows weigh as in training: a person's correction outweighs a stale label.
    weight = np.array([config.correction_weight if p in labels.corrected else 1.0 for p in ids])
    scores = compare(old, model, features.select(ids), y_true, weight)
    tol = config.activation_tolerance
    better = (
        scores["new"]["accuracy"] >= scores["old"]["accuracy"] - tol
        and scores["new"]["macro_f1"] >= scores["old"]["macro_f1"] - tol
    )
    return {
        **base,
        "activated": better,
        "rows": len(ids),
        "corrected_rows": int((weight != 1.0).sum()),
        "correction_weight": config.correction_weight,
        "tolerance": tol,
        **scores,
        "reason": "not worse on accuracy and macro-F1"
        if better
        else "worse than the active model: kept inactive",
    }
