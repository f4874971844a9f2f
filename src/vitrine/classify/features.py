"""The feature groups a classification head can use, gathered per product.

A product is described by its primary photo: the CNN embedding plus the hand-crafted
colour, texture, shape and pattern descriptors; and by its own words (title and
description, the ``text`` block: one string per row, empty when it has none). Groups are
kept apart (not concatenated here) so that each head can use the ones that help its field.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from vitrine.catalog.store import EMBEDDING_KIND, CatalogStore, product_text
from vitrine.vision.analyzer import ImageAnalysis
from vitrine.vision.features import FEATURE_VERSION, VECTOR_DIMS

FEATURE_GROUPS: tuple[str, ...] = (EMBEDDING_KIND, *VECTOR_DIMS)  # the photo's
TEXT_GROUP = "text"


@dataclass
class FeatureBlocks:
    """Row-aligned feature matrices by group, for the products in ``ids``."""

    ids: list[str]
    blocks: dict[str, np.ndarray]

    def __len__(self) -> int:
        return len(self.ids)

    def take(self, rows: np.ndarray | Sequence[int]) -> FeatureBlocks:
        rows = np.asarray(rows, dtype=np.int64)
        return FeatureBlocks(
            [self.ids[i] for i in rows], {k: v[rows] for k, v in self.blocks.items()}
        )

    def select(self, ids: Sequence[str]) -> FeatureBlocks:
        """The rows of ``ids`` (each must be present), in that order."""
        position = {pid: i for i, pid in enumerate(self.ids)}
        return self.take([position[pid] for pid in ids])


def check_groups(groups: Sequence[str]) -> list[str]:
    unknown = [g for g in groups if g not in (*FEATURE_GROUPS, TEXT_GROUP)]
    if unknown:
        raise ValueError(
            f"unknown feature groups {unknown}; choose from "
            f"{', '.join((*FEATURE_GROUPS, TEXT_GROUP))}"
        )
    return list(groups)


def load_features(
    store: CatalogStore,
    embedding_version: str,
    groups: Sequence[str] = FEATURE_GROUPS,
    product_ids: Sequence[str] | None = None,
    *,
    text: bool = True,
) -> FeatureBlocks:
    """The stored features of every product (or of ``product_ids``) that has all photo
    ``groups``; with ``text``, also each product's title and description."""
    matrices: dict[str, tuple[list[str], np.ndarray]] = {}
    for group in check_groups([g for g in groups if g != TEXT_GROUP]):
        version = embedding_version if group == EMBEDDING_KIND else FEATURE_VERSION
        matrices[group] = store.primary_vectors(group, version, product_ids)
    common: set[str] | None = None
    for ids, _ in matrices.values():
        common = set(ids) if common is None else common & set(ids)
    ordered = sorted(common or ())
    blocks: dict[str, np.ndarray] = {}
    for group, (ids, matrix) in matrices.items():
        if not ordered:
            blocks[group] = np.zeros((0, matrix.shape[1] if matrix.ndim == 2 else 0), np.float32)
            continue
        position = {pid: i for i, pid in enumerate(ids)}
        blocks[group] = matrix[[position[pid] for pid in ordered]]
    if text:
        texts = store.product_texts(product_ids)  # None: all (no huge IN list)
        blocks[TEXT_GROUP] = text_block(
            [product_text(*texts.get(pid, (None, None))) for pid in ordered]
        )
    return FeatureBlocks(ordered, blocks)


def text_block(texts: Sequence[str | None]) -> np.ndarray:
    return np.array([t or "" for t in texts], dtype=object)


def blocks_from_analyses(
    ids: Sequence[str],
    analyses: Sequence[ImageAnalysis],
    texts: Sequence[str | None] | None = None,
) -> FeatureBlocks:
    """Feature blocks of freshly analysed photos (one per id), before anything is stored;
    ``texts``: each product's title and description, when known."""
    if not analyses:
        return FeatureBlocks([], {})
    vectors = [a.prepared.features.vectors() for a in analyses]
    blocks = {EMBEDDING_KIND: np.stack([a.embedding for a in analyses]).astype(np.float32)}
    for group in VECTOR_DIMS:
        blocks[group] = np.stack([v[group] for v in vectors]).astype(np.float32)
    blocks[TEXT_GROUP] = text_block(texts if texts is not None else [None] * len(analyses))
    return FeatureBlocks(list(ids), blocks)
