"""Classification from a product's own words: the text head, its fusion with the photo
head, when the trainer uses it, and how a fused head is stored."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from vitrine.catalog.store import FeatureRecord, ImageRecord, ProductRecord
from vitrine.classify.dataset import FieldLabels
from vitrine.classify.features import (
    TEXT_GROUP,
    FeatureBlocks,
    load_features,
    product_text,
    text_block,
)
from vitrine.classify.fusion import FusedHead, head_from_arrays
from vitrine.classify.heads import LinearHead
from vitrine.classify.predictor import Predictor
from vitrine.classify.text import TextHead, has_text
from vitrine.classify.trainer import TrainConfig, train_heads
from vitrine.config import load_settings
from vitrine.runtime import Runtime
from vitrine.vision.features import FEATURE_VERSION, VECTOR_DIMS

COLOURS = ["Navy Blue", "Black", "Red", "White", "Green"]
GARMENTS = ["Shirt", "Tshirt", "Dress", "Jeans", "Sneakers", "Kurta"]


def colour_products(
    per_class: int = 60, seed: int = 0, text_share: float = 1.0
) -> tuple[FeatureBlocks, dict[str, FieldLabels]]:
    """The colour is barely visible in the 'photo' features but named in most titles."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(len(COLOURS), 16)) * 0.35
    ids, emb, texts, colour = [], [], [], []
    for k, name in enumerate(COLOURS):
        for _ in range(per_class):
            ids.append(f"p{len(ids):05d}")
            emb.append(centers[k] + rng.normal(size=16))
            brand = rng.choice(["Turtle", "Puma", "Nike", "Fabindia", "Mango"])
            garment = rng.choice(GARMENTS)
            texted = rng.random() < text_share
            texts.append(f"{brand} Men {name} {garment}" if texted else "")
            colour.append(name)
    blocks = FeatureBlocks(
        ids, {"embedding": np.array(emb, np.float32), TEXT_GROUP: text_block(texts)}
    )
    return blocks, {
        "baseColour": FieldLabels("baseColour", dict(zip(ids, colour, strict=True)), set())
    }


def _accuracy(trained: dict, blocks: FeatureBlocks, labels: dict) -> float:
    result = trained["baseColour"]
    rows = blocks.select(result.evaluation_ids)
    predicted = Predictor([result.model]).predict(rows)["baseColour"].value
    truth = np.array([labels["baseColour"].values[p] for p in rows.ids], dtype=object)
    return float((predicted == truth).mean())


def test_the_trainer_fuses_text_when_it_helps_and_reports_both_scores() -> None:
    blocks, labels = colour_products()
    config = TrainConfig(min_support=5, C=1.0, groups=None)
    with_text = train_heads(blocks, labels, config)
    photo_only = train_heads(blocks, labels, TrainConfig(min_support=5, C=1.0, text=False))

    head = with_text["baseColour"].model.head
    assert isinstance(head, FusedHead)
    assert head.groups[-1] == TEXT_GROUP
    assert isinstance(photo_only["baseColour"].model.head, LinearHead)
    selection = with_text["baseColour"].metrics["feature_selection"]["calibration_macro_f1"]
    assert selection["embedding+text"] > selection["embedding"]
    assert with_text["baseColour"].metrics["fusion_weights"]["text"] > 0
    assert _accuracy(with_text, blocks, labels) >= 0.95
    assert _accuracy(photo_only, blocks, labels) < 0.8


def test_a_product_without_text_gets_the_photo_head_alone() -> None:
    blocks, labels = colour_products()
    head = train_heads(blocks, labels, TrainConfig(min_support=5, C=1.0))["baseColour"].model.head
    assert isinstance(head, FusedHead)
    silent = FeatureBlocks(blocks.ids[:20], {**{k: v[:20] for k, v in blocks.blocks.items()}})
    silent.blocks[TEXT_GROUP] = text_block([""] * 20)
    expected = head.image.predict_proba(silent)
    assert np.allclose(head.predict_proba(silent), expected, atol=1e-6)
    no_block = FeatureBlocks(silent.ids, {"embedding": silent.blocks["embedding"]})
    assert not has_text(no_block).any()
    assert np.allclose(head.predict_proba(no_block), expected, atol=1e-6)


def test_text_is_not_used_when_few_products_have_any() -> None:
    blocks, labels = colour_products(text_share=0.2)
    head = train_heads(blocks, labels, TrainConfig(min_support=5, C=1.0))["baseColour"].model.head
    assert isinstance(head, LinearHead)


def test_a_fused_head_round_trips_through_plain_arrays_without_pickle() -> None:
    blocks, labels = colour_products(per_class=30)
    head = train_heads(blocks, labels, TrainConfig(min_support=5, C=1.0))["baseColour"].model.head
    assert isinstance(head, FusedHead)
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **head.to_arrays())
    buffer.seek(0)
    with np.load(buffer, allow_pickle=False) as data:
        loaded = head_from_arrays({k: data[k] for k in data.files})
    assert isinstance(loaded, FusedHead)
    assert list(loaded.classes_) == list(head.classes_)
    assert np.allclose(loaded.decision_function(blocks), head.decision_function(blocks), atol=1e-4)


def test_text_head_reads_words_and_spelling_variants() -> None:
    texts = ["navy blue shirt", "navy blue jeans", "black shirt", "black jeans"] * 5
    y = np.array(["Navy Blue", "Navy Blue", "Black", "Black"] * 5, dtype=object)
    head = TextHead().fit(texts, y)
    logits = head.decision_function(["Navy-Blue dress", "BLACK dress"])
    assert list(head.classes_[logits.argmax(axis=1)]) == ["Navy Blue", "Black"]


def test_product_text_joins_title_and_description() -> None:
    assert product_text(" Red Dress ", "cotton, midi") == "Red Dress cotton, midi"
    assert product_text(None, None) == ""
    assert product_text("", "  ") == ""


def test_titles_in_the_catalog_train_a_stored_fused_model(tmp_path: Path) -> None:
    blocks, labels = colour_products(per_class=30)
    vitrine = Runtime(load_settings(env={}).with_overrides(home=tmp_path / "home"))
    try:
        rng = np.random.default_rng(1)
        images = []
        for i, pid in enumerate(blocks.ids):
            features = [FeatureRecord("embedding", "test-emb", blocks.blocks["embedding"][i])]
            features += [
                FeatureRecord(kind, FEATURE_VERSION, rng.normal(size=dim).astype(np.float32))
                for kind, dim in VECTOR_DIMS.items()
            ]
            images.append(
                ImageRecord(pid, f"h{i}", f"k{i}", "JPEG", 60, 80, 100, features=features)
            )
        title = dict(zip(blocks.ids, blocks.blocks[TEXT_GROUP], strict=True))
        vitrine.store.upsert_products(
            [
                ProductRecord(p, title=title[p], attributes={"baseColour": c})
                for p, c in labels["baseColour"].values.items()
            ]
        )
        vitrine.store.add_images(images)

        loaded = load_features(vitrine.store, "test-emb")
        assert list(loaded.blocks[TEXT_GROUP]) == [title[p] for p in loaded.ids]
        service = vitrine.classification_for("test-emb")
        rows = service.train(["baseColour"], min_support=5, C=1.0)
        assert rows[0]["active"] and "text" in rows[0]["feature_groups"]
        head = service.registry.load_head(rows[0])
        assert isinstance(head, FusedHead)
        one = loaded.select([loaded.ids[0]])
        prediction = service.predict(one)[0]["baseColour"]
        assert prediction["value"] == labels["baseColour"].values[loaded.ids[0]]
    finally:
        vitrine.close()
