"""Classification on synthetic features: heads, calibration, hierarchy, rare classes,
metrics, the split, the registry and a stream of corrections that fixes a wrong class."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import f1_score

from vitrine.catalog.store import HUMAN, FeatureRecord, ImageRecord, ProductRecord
from vitrine.classify.dataset import FieldLabels
from vitrine.classify.features import FeatureBlocks
from vitrine.classify.heads import LinearHead, fit_temperature
from vitrine.classify.hierarchy import Hierarchy, decode, determines, learn_hierarchies
from vitrine.classify.metrics import choose_threshold, evaluate, reliability
from vitrine.classify.predictor import OTHER, Predictor
from vitrine.classify.registry import ModelRegistry, UnknownModelError
from vitrine.classify.split import stratified_split
from vitrine.classify.trainer import TrainConfig, train_and_register, train_heads
from vitrine.config import ConfigError, load_settings
from vitrine.runtime import Runtime
from vitrine.vision.features import FEATURE_VERSION, VECTOR_DIMS

# article -> (sub, master); "Anklet" is rare (3 products)
TAXONOMY = {
    "Shirts": ("Topwear", "Apparel"),
    "Tshirts": ("Topwear", "Apparel"),
    "Jeans": ("Bottomwear", "Apparel"),
    "Skirts": ("Bottomwear", "Apparel"),
    "Sneakers": ("Shoes", "Footwear"),
    "Boots": ("Shoes", "Footwear"),
    "Sandals": ("Sandal", "Footwear"),
    "Anklet": ("Jewellery", "Accessories"),
}
EMB_VERSION = "test-embedding"


def synthetic(
    per_class: int = 40, seed: int = 0, noise: float = 0.6
) -> tuple[FeatureBlocks, dict[str, FieldLabels]]:
    """Each article type is a Gaussian cluster in a 24-d 'embedding' and 6-d 'color'."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(len(TAXONOMY), 24)) * 2
    colour_centers = rng.normal(size=(len(TAXONOMY), 6))
    ids, emb, col, article = [], [], [], []
    for k, name in enumerate(TAXONOMY):
        n = 3 if name == "Anklet" else per_class
        for _ in range(n):
            ids.append(f"p{len(ids):05d}")
            emb.append(centers[k] + rng.normal(scale=noise, size=24))
            col.append(colour_centers[k] + rng.normal(scale=1.0, size=6))
            article.append(name)
    blocks = FeatureBlocks(
        ids, {"embedding": np.array(emb, np.float32), "color": np.array(col, np.float32)}
    )
    labels = {
        "articleType": FieldLabels("articleType", dict(zip(ids, article, strict=True)), set()),
        "subCategory": FieldLabels(
            "subCategory", {p: TAXONOMY[a][0] for p, a in zip(ids, article, strict=True)}, set()
        ),
        "masterCategory": FieldLabels(
            "masterCategory", {p: TAXONOMY[a][1] for p, a in zip(ids, article, strict=True)}, set()
        ),
    }
    return blocks, labels


CONFIG = TrainConfig(groups=["embedding", "color"], min_support=5, C=1.0)


def test_heads_hierarchy_rare_classes_and_metrics() -> None:
    blocks, labels = synthetic()
    trained = train_heads(blocks, labels, CONFIG)
    article = trained["articleType"]
    assert article.model.hierarchy is not None
    assert article.model.hierarchy.fields == ["masterCategory", "subCategory", "articleType"]
    m = article.metrics
    # The rare class is reported, merged into "other", and its evaluation row counts.
    assert m["rare"]["classes"] == {"Anklet": 2}
    assert m["rare"]["evaluation_rows"] == 1
    assert m["all"]["per_class"]["Anklet"]["support"] == 1
    assert m["all"]["per_class"]["Anklet"]["recall"] == 0.0
    assert m["all"]["rows"] == m["split"]["evaluation"]
    assert m["frequent_classes"]["accuracy"] >= 0.95
    assert m["all"]["accuracy"] < m["frequent_classes"]["accuracy"]
    for key in ("macro", "weighted", "confusion", "top_k", "calibration"):
        assert key in m["all"]
    assert set(m["all"]["top_k"]) == {"1", "3", "5"}
    assert 0 <= m["all"]["calibration"]["ece"] <= 1
    assert trained["masterCategory"].metrics["all"]["accuracy"] >= 0.95


def test_predictions_agree_with_the_hierarchy_and_rare_products_need_review() -> None:
    blocks, labels = synthetic()
    trained = train_heads(blocks, labels, CONFIG)
    predictor = Predictor([t.model for t in trained.values()])
    out = predictor.predict(blocks)
    hierarchy = trained["articleType"].model.hierarchy
    assert hierarchy is not None
    rare = {f: set(trained[f].model.rare) for f in hierarchy.fields}
    allowed = {
        tuple(OTHER if v in rare[f] else v for f, v in zip(hierarchy.fields, c, strict=True))
        for c in hierarchy.combos
    }
    for i in range(len(blocks)):
        combo = tuple(
            OTHER if out[f].value[i] is None else out[f].value[i] for f in hierarchy.fields
        )
        assert combo in allowed
    rare_rows = [
        i for i, pid in enumerate(blocks.ids) if labels["articleType"].values[pid] == "Anklet"
    ]
    art = out["articleType"]
    assert all(art.value[i] is None and art.needs_review[i] for i in rare_rows)
    assert "rare class" in (art.reason[rare_rows[0]] or "")


def test_group_selection_is_reported() -> None:
    blocks, labels = synthetic(per_class=20)
    trained = train_heads(
        blocks, {"masterCategory": labels["masterCategory"]}, TrainConfig(min_support=5)
    )
    selection = trained["masterCategory"].metrics["feature_selection"]
    assert selection["chosen"] in (["embedding"], ["embedding", "color"])
    assert set(selection["calibration_macro_f1"]) <= {"embedding", "embedding+color"}


def test_temperature_undoes_overconfidence() -> None:
    rng = np.random.default_rng(1)
    logits = rng.normal(size=(4000, 5)) * 2
    p = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    target = np.array([rng.choice(5, p=row) for row in p])
    assert fit_temperature(logits * 4, target) == pytest.approx(4.0, rel=0.15)
    assert fit_temperature(logits, np.full(len(target), -1)) == 1.0


def test_head_round_trips_through_plain_arrays() -> None:
    blocks, labels = synthetic(per_class=15)
    y = np.array([labels["subCategory"].values[p] for p in blocks.ids], dtype=object)
    head = LinearHead(["embedding", "color"], C=1.0).fit(blocks, y)
    head.temperature = 1.7
    again = LinearHead.from_arrays(head.to_arrays())
    np.testing.assert_allclose(again.predict_proba(blocks), head.predict_proba(blocks), atol=1e-6)
    assert list(again.classes_) == list(head.classes_)
    with pytest.raises(ValueError, match="at least 2 classes"):
        LinearHead(["embedding"]).fit(blocks, np.array(["a"] * len(blocks), dtype=object))
    with pytest.raises(ValueError, match="unknown feature groups"):
        LinearHead(["embeding"])


def test_hierarchy_is_learned_not_given() -> None:
    article = {f"p{i}": a for i, a in enumerate(list(TAXONOMY) * 5)}
    sub = {p: TAXONOMY[a][0] for p, a in article.items()}
    colour = {p: ["Red", "Blue", "Green"][i % 3] for i, p in enumerate(article)}
    assert determines(article, sub) and not determines(sub, article)
    assert not determines(colour, sub) and not determines(sub, colour)
    hierarchies = learn_hierarchies({"articleType": article, "subCategory": sub, "colour": colour})
    assert [h.fields for h in hierarchies] == [["subCategory", "articleType"]]


def test_joint_decoding_overrides_an_inconsistent_argmax() -> None:
    h = Hierarchy(["master", "article"], [("Apparel", "Shirts"), ("Footwear", "Boots")])
    probas = {"master": np.array([[0.55, 0.45]]), "article": np.array([[0.1, 0.9]])}
    classes = {"master": ["Apparel", "Footwear"], "article": ["Boots", "Shirts"]}
    values, confidence = decode(h, probas, classes)
    assert values["master"][0] == "Apparel" and values["article"][0] == "Shirts"
    assert 0.5 < confidence["article"][0] <= 1.0


def test_metrics_match_scikit_learn_and_count_every_row() -> None:
    y_true = ["a", "a", "b", "b", "c", "rare"]
    y_pred = ["a", "b", "b", "b", "c", "a"]
    m = evaluate(y_true, y_pred, np.array([0.9, 0.6, 0.8, 0.7, 0.95, 0.4]), rare=["rare"])
    assert m["accuracy"] == pytest.approx(4 / 6, abs=1e-4)
    expected = f1_score(y_true, y_pred, labels=["a", "b", "c", "rare"], average="macro")
    assert m["macro"]["f1"] == pytest.approx(expected, abs=1e-4)
    assert m["per_class"]["rare"] == {
        "precision": 0.0,
        "recall": 0.0,
        "f1": 0.0,
        "support": 1,
        "rare": True,
    }
    assert sum(map(sum, m["confusion"]["matrix"])) == 6


def test_reliability_and_threshold() -> None:
    rng = np.random.default_rng(2)
    conf = rng.uniform(0.3, 1.0, 20000)
    correct = rng.uniform(size=conf.size) < conf  # perfectly calibrated
    ece, bins = reliability(conf, correct)
    assert ece < 0.02 and sum(b["count"] for b in bins) == conf.size
    t = choose_threshold(conf, correct, 0.9)
    assert correct[conf >= t].mean() >= 0.9
    assert 0.75 < t < 0.9
    assert choose_threshold(conf, np.zeros_like(correct), 0.9) > 1.0


def test_split_is_stratified_stable_and_evaluates_small_classes() -> None:
    ids = [f"id{i}" for i in range(1000)]
    strata = ["big" if i < 900 else "mid" if i < 997 else "tiny" for i in range(1000)]
    split = stratified_split(ids, strata)
    held = np.concatenate([split.calibration, split.evaluation])
    assert abs(len(held) / 1000 - 0.2) < 0.01
    assert sum(strata[i] == "tiny" for i in split.evaluation) == 1
    again = stratified_split(ids, strata)
    assert np.array_equal(split.evaluation, again.evaluation)
    assert not set(split.train) & set(held)


@pytest.fixture()
def vitrine(tmp_path: Path) -> Runtime:
    v = Runtime(load_settings(env={}).with_overrides(home=tmp_path / "home"))
    yield v
    v.close()


def test_registry_activate_and_rollback(vitrine: Runtime) -> None:
    blocks, labels = synthetic(per_class=15)
    registry = ModelRegistry(vitrine.engine, vitrine.blobs)
    config = TrainConfig(groups=["embedding"], min_support=5)
    fields = ["masterCategory"]
    vitrine.store.upsert_products([ProductRecord(p) for p in blocks.ids])
    first = train_and_register(
        vitrine.store, registry, fields, EMB_VERSION, config, features=blocks, labels=labels
    )[0]
    assert first["active"] and first["comparison"]["reason"] == "first model of this field"
    second = train_and_register(
        vitrine.store,
        registry,
        fields,
        EMB_VERSION,
        config,
        features=blocks,
        labels=labels,
        activate="always",
    )[0]
    assert second["active"] and second["version"] == "masterCategory-v2"
    assert not registry.get(first["id"])["active"]
    assert registry.rollback("masterCategory")["id"] == first["id"]
    assert not registry.get(second["id"])["active"]
    with pytest.raises(UnknownModelError):
        registry.rollback("masterCategory")
    with pytest.raises(UnknownModelError):
        registry.activate(999)
    head = registry.load_head(registry.get(first["id"]))
    assert set(head.classes_) >= {"Apparel", "Footwear"}


def test_corrections_fix_a_wrong_class_and_trigger_retraining(vitrine: Runtime) -> None:
    """The shop filed every T-shirt as a shirt; people correct some; the retrained model
    names the other T-shirts right, and only then."""
    blocks, labels = synthetic(per_class=60, seed=3)
    truth = labels["articleType"].values
    shop = {p: ("Shirts" if v == "Tshirts" else v) for p, v in truth.items()}
    vitrine.store.upsert_products(
        [ProductRecord(p, attributes={"articleType": v}) for p, v in shop.items()]
    )
    vitrine = Runtime(vitrine.settings.with_overrides(classify_retrain_after=25))
    service = vitrine.classification_for(EMB_VERSION)
    config = TrainConfig(groups=["embedding"], min_support=5, C=0.05, correction_weight=3.0)
    registry = service.registry

    def train() -> dict:
        return train_and_register(
            vitrine.store, registry, ["articleType"], EMB_VERSION, config, features=blocks
        )[0]

    first = train()
    tshirts = [p for p, v in truth.items() if v == "Tshirts"]
    corrected, untouched = tshirts[:30], tshirts[30:]
    before = service.predict(blocks.select(untouched))
    assert all(p["articleType"]["value"] == "Shirts" for p in before)
    assert service.due_for_retraining() == []

    for pid in corrected:
        service.feedback(pid, "articleType", "Tshirts")
    rows = vitrine.store.labels(fields=["articleType"], source=HUMAN)
    assert {r["product_id"] for r in rows} == set(corrected)
    assert service.due_for_retraining() == [["articleType"]]

    second = train()
    assert second["corrections_used"] > 0
    assert second["comparison"]["against"]["id"] == first["id"]
    assert second["active"], second["comparison"]
    service._checked = 0.0
    after = service.predict(blocks.select(untouched))
    fixed = np.mean([p["articleType"]["value"] == "Tshirts" for p in after])
    assert fixed >= 0.9
    assert service.due_for_retraining() == []  # the corrections were used


def test_feedback_is_validated(vitrine: Runtime) -> None:
    service = vitrine.classification_for(EMB_VERSION)
    vitrine.store.upsert_products([ProductRecord("a")])
    with pytest.raises(KeyError):
        service.feedback("missing", "articleType", "Shirts")
    with pytest.raises(ValueError, match="value"):
        service.feedback("a", "articleType", "  ")
    with pytest.raises(ValueError, match="field"):
        service.feedback("a", "", "Shirts")
    assert service.predict(FeatureBlocks(["a"], {"embedding": np.zeros((1, 24))})) == [{}]


def test_classification_settings_from_the_environment() -> None:
    s = load_settings(
        env={"VITRINE_CLASSIFY_REVIEW_PRECISION": "0.95", "VITRINE_CLASSIFY_RARE_POLICY": "drop"}
    )
    assert s.classify_review_precision == 0.95 and s.classify_rare_policy == "drop"
    with pytest.raises(ConfigError, match="classify_review_precision"):
        load_settings(env={"VITRINE_CLASSIFY_REVIEW_PRECISION": "high"})
    with pytest.raises(ConfigError, match="classify_rare_policy"):
        load_settings(env={"VITRINE_CLASSIFY_RARE_POLICY": "ignore"})


def test_drop_policy_leaves_rare_classes_unpredicted_but_counted() -> None:
    blocks, labels = synthetic(per_class=20)
    config = TrainConfig(groups=["embedding"], min_support=5, rare_policy="drop")
    trained = train_heads(blocks, {"articleType": labels["articleType"]}, config)["articleType"]
    assert OTHER not in trained.model.head.classes_ and "Anklet" not in trained.model.head.classes_
    m = trained.metrics
    assert m["rare"]["policy"] == "drop" and m["all"]["per_class"]["Anklet"]["recall"] == 0.0
    with pytest.raises(ValueError, match="policy"):
        train_heads(blocks, labels, TrainConfig(rare_policy="keep"))


def _store_synthetic(vitrine: Runtime, blocks: FeatureBlocks, attributes: dict) -> None:
    """Products with stored features, as an import would leave them (no photos needed)."""
    rng = np.random.default_rng(0)
    images = []
    for i, pid in enumerate(blocks.ids):
        features = [FeatureRecord("embedding", EMB_VERSION, blocks.blocks["embedding"][i])]
        features += [
            FeatureRecord(kind, FEATURE_VERSION, rng.normal(size=dim).astype(np.float32))
            for kind, dim in VECTOR_DIMS.items()
        ]
        images.append(ImageRecord(pid, f"h{i}", f"k{i}", "JPEG", 60, 80, 100, features=features))
    vitrine.store.upsert_products([ProductRecord(p, attributes=attributes[p]) for p in blocks.ids])
    vitrine.store.add_images(images)


def test_background_retraining_after_enough_corrections(tmp_path: Path) -> None:
    settings = load_settings(env={}).with_overrides(
        home=tmp_path / "home",
        classify_retrain_after=20,
        classify_retrain_check_seconds=0.2,
        classify_feature_groups="embedding",
    )
    vitrine = Runtime(settings)
    blocks, labels = synthetic(per_class=30, seed=5)
    article = labels["articleType"].values
    _store_synthetic(vitrine, blocks, {p: {"articleType": v} for p, v in article.items()})
    service = vitrine.classification_for(EMB_VERSION)
    first = service.train(["articleType"], groups=["embedding"], min_support=5)[0]
    assert first["active"] and first["trigger"] == "manual"
    for pid in [p for p, v in article.items() if v == "Jeans"][:20]:
        service.feedback(pid, "articleType", "Jeans")  # confirmations count as corrections
    service.start()
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and len(service.registry.list("articleType")) < 2:
            time.sleep(0.2)
    finally:
        service.stop()
    models = service.registry.list("articleType")
    assert len(models) == 2, "the background retrainer did not run"
    second = models[1]
    assert second["trigger"] == "auto" and second["corrections_used"] > 0
    assert second["comparison"]["against"]["id"] == first["id"]
    assert service.due_for_retraining() == []
    vitrine.close()
