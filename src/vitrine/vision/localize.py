"""Finding the products in a real photo: a box scorer over the CNN's feature map.

One CNN pass (:mod:`vitrine.vision.feature_map`) gives a 12x12 grid of 1280-channel
cells. Every box of whole cells (at least 2 cells a side, aspect between 1:4 and 4:1:
about 4,000 boxes) is described by what is inside it, what surrounds it (a one-cell
ring), their difference, and its geometry; the channels are first reduced by a PCA that
is fitted on the training scenes. A LightGBM regressor, trained on synthetic scenes made
of the shop's own products (:mod:`vitrine.vision.scenes`), predicts each box's overlap
(IoU) with the nearest product; non-maximum suppression keeps the best of each cluster,
and four more regressors move each kept box's edges by fractions of its size (trained on
the boxes that overlap a product by 0.4 or more), so that boxes are not bound to cells.

Pooling uses an integral image of the reduced map, so the cost of scoring every box is a
few milliseconds beside the one CNN pass. The estimator follows scikit-learn's shape:
``fit(feature_maps, boxes)`` then ``predict(feature_map)``; ``save``/``load`` write no
pickle (an ``.npz`` with the booster as text).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from vitrine.vision.feature_map import CELLS, STRIDE

COMPONENTS = 48
MIN_CELLS = 2
MAX_ASPECT = 4.0
DUPLICATE_IOU = 0.6  # moved boxes this alike are one product
DUPLICATE_NESTED = 0.9


@dataclass(frozen=True)
class Detection:
    """A box ``[x0, y0, x1, y1]`` (input pixels until mapped to the photo's) and its score,
    the predicted overlap with a product (0..1)."""

    box: tuple[float, float, float, float]
    score: float


def candidate_boxes(cells: int = CELLS) -> np.ndarray:
    """Every box of whole cells (``K x 4`` int, in cells) the scorer considers."""
    spans = [(a, b) for a in range(cells) for b in range(a + MIN_CELLS, cells + 1)]
    boxes = [
        (x0, y0, x1, y1)
        for (x0, x1) in spans
        for (y0, y1) in spans
        if 1 / MAX_ASPECT <= (x1 - x0) / (y1 - y0) <= MAX_ASPECT
    ]
    return np.asarray(boxes, dtype=np.int32)


def iou(boxes: np.ndarray, other: np.ndarray) -> np.ndarray:
    """Pairwise IoU of ``N x 4`` and ``M x 4`` boxes -> ``N x M``."""
    a, b = boxes[:, None, :].astype(np.float64), other[None, :, :].astype(np.float64)
    w = (np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0])).clip(0)
    h = (np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1])).clip(0)
    inter = w * h
    area_a = (a[..., 2] - a[..., 0]) * (a[..., 3] - a[..., 1])
    area_b = (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])
    return inter / np.maximum(area_a + area_b - inter, 1e-9)


def overlap_of_smaller(boxes: np.ndarray, other: np.ndarray) -> np.ndarray:
    """Pairwise intersection over the smaller box's area (1: one box inside the other)."""
    a, b = boxes[:, None, :].astype(np.float64), other[None, :, :].astype(np.float64)
    w = (np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0])).clip(0)
    h = (np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1])).clip(0)
    area_a = (a[..., 2] - a[..., 0]) * (a[..., 3] - a[..., 1])
    area_b = (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])
    return w * h / np.maximum(np.minimum(area_a, area_b), 1e-9)


def non_maximum_suppression(
    boxes: np.ndarray, scores: np.ndarray, overlap: float, limit: int, nested: float = 0.6
) -> list[int]:
    """Indices of the best boxes, none overlapping a better one by more than ``overlap``
    (IoU) nor lying inside one or around one (``nested`` of the smaller box's area):
    products in a photo overlap a little, never by most of themselves."""
    order = np.argsort(-scores)
    kept: list[int] = []
    for i in order:
        if len(kept) >= limit:
            break
        if kept and (
            iou(boxes[i : i + 1], boxes[kept]).max() > overlap
            or overlap_of_smaller(boxes[i : i + 1], boxes[kept]).max() > nested
        ):
            continue
        kept.append(int(i))
    return kept


def edge_offsets(boxes: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """How far each edge of ``boxes`` is from ``targets``' (``N x 4``), in box sizes."""
    size = np.stack([boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]] * 2, axis=1)
    return (targets - boxes) / np.maximum(size, 1e-9)


def apply_offsets(boxes: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Boxes with their edges moved by ``offsets`` (box sizes); never turned inside out."""
    size = np.stack([boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]] * 2, axis=1)
    moved = boxes + np.clip(offsets, -0.5, 0.5) * size
    moved[:, 2] = np.maximum(moved[:, 2], moved[:, 0] + 1)
    moved[:, 3] = np.maximum(moved[:, 3], moved[:, 1] + 1)
    return moved


class BoxFeatures:
    """Per-box descriptors of a feature map: inside, ring, contrast (PCA-reduced), geometry."""

    def __init__(self, mean: np.ndarray, components: np.ndarray, cells: int = CELLS) -> None:
        self.mean = mean.astype(np.float32)
        self.components = components.astype(np.float32)  # C x COMPONENTS
        self.cells = cells
        self.boxes = candidate_boxes(cells)
        b = self.boxes
        self.ring = np.stack(
            [(b[:, 0] - 1).clip(0), (b[:, 1] - 1).clip(0), (b[:, 2] + 1).clip(max=cells),
             (b[:, 3] + 1).clip(max=cells)], axis=1)  # fmt: skip
        w, h = (b[:, 2] - b[:, 0]) / cells, (b[:, 3] - b[:, 1]) / cells
        self.geometry = np.stack(
            [b[:, 0] / cells, b[:, 1] / cells, b[:, 2] / cells, b[:, 3] / cells, w * h,
             np.log(w / h)], axis=1).astype(np.float32)  # fmt: skip

    @staticmethod
    def fit_pca(maps: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """PCA of the cells of ``N x S x S x C`` maps (a sample of at most 20,000 cells)."""
        cells = maps.reshape(-1, maps.shape[-1])
        if len(cells) > 20_000:
            cells = cells[rng.choice(len(cells), 20_000, replace=False)]
        mean = cells.mean(axis=0)
        _, _, vt = np.linalg.svd(cells - mean, full_matrices=False)
        return mean, vt[:COMPONENTS].T

    def _sums(self, integral: np.ndarray, boxes: np.ndarray) -> np.ndarray:
        x0, y0, x1, y1 = boxes.T
        return integral[y1, x1] - integral[y0, x1] - integral[y1, x0] + integral[y0, x0]

    def __call__(self, feature_map: np.ndarray) -> np.ndarray:
        """``S x S x C`` map -> ``K x (3 * COMPONENTS + 6)`` box features."""
        reduced = (feature_map.reshape(-1, feature_map.shape[-1]) - self.mean) @ self.components
        reduced = reduced.reshape(self.cells, self.cells, -1)
        integral = np.zeros((self.cells + 1, self.cells + 1, reduced.shape[-1]), np.float32)
        integral[1:, 1:] = reduced.cumsum(0).cumsum(1)
        inner_area = (self.boxes[:, 2] - self.boxes[:, 0]) * (self.boxes[:, 3] - self.boxes[:, 1])
        outer_area = (self.ring[:, 2] - self.ring[:, 0]) * (self.ring[:, 3] - self.ring[:, 1])
        inner = self._sums(integral, self.boxes)
        outer = self._sums(integral, self.ring)
        ring_area = np.maximum(outer_area - inner_area, 1)[:, None]
        ring = (outer - inner) / ring_area
        inner = inner / inner_area[:, None]
        return np.concatenate([inner, ring, inner - ring, self.geometry], axis=1)


class Localizer:
    """Scores every candidate box of a feature map; ``predict`` answers the products'
    boxes in input pixels (multiply by nothing: ``STRIDE`` is applied here)."""

    def __init__(self, min_score: float = 0.4, overlap: float = 0.35, limit: int = 6) -> None:
        self.min_score = min_score
        self.overlap = overlap
        self.limit = limit
        self.features: BoxFeatures | None = None
        self.booster: Any = None
        self.edges: list[Any] = []  # x0, y0, x1, y1 offsets, in box widths / heights
        self.info: dict[str, Any] = {}

    def fit(
        self,
        maps: np.ndarray,
        truths: list[np.ndarray],
        seed: int = 0,
        negatives: int = 160,
        rounds: int = 300,
    ) -> Localizer:
        """Fit on ``N x S x S x C`` maps and each map's true boxes (``M x 4``, input px)."""
        import lightgbm as lgb

        rng = np.random.default_rng(seed)
        self.features = BoxFeatures(*BoxFeatures.fit_pca(maps, rng), cells=maps.shape[1])
        cell_boxes = self.features.boxes * STRIDE
        rows, targets, offsets = [], [], []
        for feature_map, truth in zip(maps, truths, strict=True):
            truth = np.asarray(truth, dtype=np.float64).reshape(-1, 4)
            overlaps = iou(cell_boxes, truth) if len(truth) else np.zeros((len(cell_boxes), 1))
            overlap = overlaps.max(axis=1)
            near = np.nonzero(overlap >= 0.3)[0]
            far = rng.choice(len(cell_boxes), size=negatives, replace=False)
            keep = np.union1d(near, far)
            rows.append(self.features(feature_map)[keep])
            targets.append(overlap[keep])
            nearest = truth[overlaps[keep].argmax(axis=1)] if len(truth) else cell_boxes[keep]
            offsets.append(edge_offsets(cell_boxes[keep], nearest))
        x, y = np.concatenate(rows), np.concatenate(targets)
        offset = np.concatenate(offsets)
        params = {
            "objective": "regression",
            "learning_rate": 0.08,
            "num_leaves": 63,
            "min_data_in_leaf": 40,
            "feature_fraction": 0.7,
            "bagging_fraction": 0.8,
            "bagging_freq": 1,
            "seed": seed,
            "verbosity": -1,
            "num_threads": 0,
        }
        self.booster = lgb.train(params, lgb.Dataset(x, y), num_boost_round=rounds)
        close = y >= 0.4
        self.edges = [
            lgb.train(params, lgb.Dataset(x[close], offset[close, k]), num_boost_round=rounds // 2)
            for k in range(4)
        ]
        self.info = {"scenes": len(maps), "rows": len(x), "edge_rows": int(close.sum())}
        return self

    def score(self, feature_map: np.ndarray) -> np.ndarray:
        """The predicted overlap of every candidate box (``K``)."""
        return self._score(self._box_features(feature_map))

    def _box_features(self, feature_map: np.ndarray) -> np.ndarray:
        if self.features is None or self.booster is None:
            raise RuntimeError("the localiser is not fitted")
        return self.features(feature_map)

    def _score(self, rows: np.ndarray) -> np.ndarray:
        return np.asarray(self.booster.predict(rows), dtype=np.float64)

    def predict(self, feature_map: np.ndarray, min_score: float | None = None) -> list[Detection]:
        """The products' boxes in input pixels, best first (none: an empty list)."""
        described = self._box_features(feature_map)  # once: scores and edges read it
        scores = self._score(described)
        assert self.features is not None
        boxes = self.features.boxes * STRIDE
        floor = self.min_score if min_score is None else min_score
        kept = [
            i
            for i in non_maximum_suppression(boxes, scores, self.overlap, self.limit)
            if scores[i] >= floor
        ]
        if not kept:
            return []
        placed = boxes[kept].astype(np.float64)
        if self.edges:
            rows = described[kept]
            moved = np.stack([model.predict(rows) for model in self.edges], axis=1)
            placed = apply_offsets(placed, moved)
            # Moved boxes may meet on one product: drop the near-duplicates (measured:
            # suppressing as strictly as above lost 3 points of scene recall).
            again = non_maximum_suppression(
                placed, scores[kept], DUPLICATE_IOU, self.limit, nested=DUPLICATE_NESTED
            )
            placed, kept = placed[sorted(again)], [kept[i] for i in sorted(again)]
        return [
            Detection(tuple(float(v) for v in box), float(scores[i]))  # type: ignore[arg-type]
            for box, i in zip(placed, kept, strict=True)
        ]

    def save(self, path: Path) -> None:
        if self.features is None or self.booster is None:
            raise RuntimeError("the localiser is not fitted")
        np.savez_compressed(
            path,
            mean=self.features.mean,
            components=self.features.components,
            booster=np.frombuffer(self.booster.model_to_string().encode(), dtype=np.uint8),
            edges=np.frombuffer(
                "\n<edge>\n".join(m.model_to_string() for m in self.edges).encode(),
                dtype=np.uint8,
            ),
            info=np.frombuffer(json.dumps(self.info).encode(), dtype=np.uint8),
        )

    @classmethod
    def load(cls, path: Path, **kwargs: Any) -> Localizer:
        import lightgbm as lgb

        with np.load(path, allow_pickle=False) as data:
            localizer = cls(**kwargs)
            localizer.features = BoxFeatures(data["mean"], data["components"])
            localizer.booster = lgb.Booster(model_str=data["booster"].tobytes().decode())
            localizer.info = json.loads(data["info"].tobytes().decode())
            edges = data["edges"].tobytes().decode() if "edges" in data.files else ""
            localizer.edges = [
                lgb.Booster(model_str=text) for text in edges.split("\n<edge>\n") if text
            ]
        return localizer
