"""The ``train_localizer`` job: teach Vitrine where products are in real photos.

1. up to ``products`` catalog photos on a plain background are cut out along their
   product's outline (:func:`vitrine.vision.scenes.cut_out`); a fifth of them is kept
   aside for the evaluation;
2. ``scenes`` synthetic snapshots and multi-product photos are composed of the rest on
   the training backgrounds, and the CNN's feature map of each is computed;
3. the box scorer is fitted (:class:`vitrine.vision.localize.Localizer`) and measured on
   scenes of the kept-aside products on the *test* backgrounds: the share of products
   that some box of the top 6 covers at IoU >= 0.5, and for one-product scenes how often
   the best box does;
4. the localiser and its record are written under ``model_dir/localizer``; every process
   picks the newest one up at its next search.

The job runs again by itself when the catalog has grown by a quarter since
(:func:`localizer_due`).
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from typing import Any

import numpy as np

from vitrine.catalog.blobs import BlobNotFoundError
from vitrine.cluster.job_queue import TRAIN_LOCALIZER, JobError, Progress
from vitrine.index.product_finder import list_localizers, localizer_dir
from vitrine.private_fs import make_private_dir
from vitrine.runtime import Runtime
from vitrine.vision.decode import ImageDecodeError, decode_image
from vitrine.vision.feature_map import FeatureMapper, letterbox
from vitrine.vision.localize import Localizer, iou
from vitrine.vision.scenes import CutOut, cut_out, random_scene

MIN_CUTOUTS = 20
GROWTH = 1.25


def _cutouts(runtime: Runtime, limit: int, rng: np.random.Generator, progress: Progress):
    images = runtime.store.primary_images()
    order = rng.permutation(len(images))[: limit * 2]  # some photos have no plain background
    progress.start("cutting out products", min(len(order), limit))
    cutouts: list[CutOut] = []
    for i in order:
        product_id, key = images[int(i)]
        try:
            rgb = decode_image(runtime.blobs.get(key), source=key, max_side=512).rgb
        except (BlobNotFoundError, ImageDecodeError, OSError):
            continue
        item = cut_out(rgb, product_id)
        if item is not None:
            cutouts.append(item)
            progress.advance()
        if len(cutouts) >= limit:
            break
    return cutouts, len(images)


def _scenes(cutouts, count, split, rng, mapper, progress, stage):
    maps, truths, scenes = [], [], []
    progress.start(stage, count)
    for _ in range(count):
        scene = random_scene(cutouts, split, rng)
        model_input, placement = letterbox(scene.image)
        maps.append(mapper(model_input[None])[0])
        boxes = np.asarray(scene.boxes, dtype=np.float64).reshape(-1, 4)
        truths.append(boxes * placement.scale + [placement.left, placement.top] * 2)
        scenes.append(scene)
        progress.advance()
    return np.stack(maps), truths


def evaluate(localizer: Localizer, maps: np.ndarray, truths: list[np.ndarray]) -> dict:
    """Recall of products at IoU >= 0.5 by the top boxes; best-box hit on one-product scenes."""
    covered, products, single_hits, singles = 0, 0, 0, 0
    for feature_map, truth in zip(maps, truths, strict=True):
        boxes = np.asarray([d.box for d in localizer.predict(feature_map, min_score=0.0)])
        if len(truth) == 0 or len(boxes) == 0:
            products += len(truth)
            continue
        overlap = iou(truth, boxes)
        covered += int((overlap.max(axis=1) >= 0.5).sum())
        products += len(truth)
        if len(truth) == 1:
            singles += 1
            single_hits += int(overlap[0, 0] >= 0.5)
    return {
        "product_recall_iou50": round(covered / max(products, 1), 4),
        "best_box_iou50_one_product": round(single_hits / max(singles, 1), 4),
        "test_scenes": len(maps),
    }


def train_localizer(runtime: Runtime, params: dict[str, Any], progress: Progress) -> dict:
    """Train and save a localiser (see the module's steps)."""
    t0 = time.perf_counter()
    seed = int(params.get("seed") or 0)
    rng = np.random.default_rng(seed)
    cutouts, catalog = _cutouts(runtime, int(params.get("products") or 1500), rng, progress)
    if len(cutouts) < MIN_CUTOUTS:
        raise JobError(
            f"only {len(cutouts)} catalog photos have a plain background to cut the product "
            f"out of; the localiser needs at least {MIN_CUTOUTS}"
        )
    held = max(4, len(cutouts) // 5)
    train, test = cutouts[held:], cutouts[:held]
    mapper = FeatureMapper(runtime.settings.model_dir)
    scenes = int(params.get("scenes") or 600)
    maps, truths = _scenes(train, scenes, "train", rng, mapper, progress, "composing scenes")
    progress.start("fitting the box scorer")
    localizer = Localizer().fit(maps, truths, seed=seed)
    test_maps, test_truths = _scenes(test, max(60, scenes // 4), "test", rng, mapper, progress,
                                     "evaluating")  # fmt: skip
    evaluation = evaluate(localizer, test_maps, test_truths)
    now = datetime.now(UTC)
    version = f"localizer-{now:%Y%m%d%H%M%S}"
    folder = localizer_dir(runtime.settings.model_dir)
    make_private_dir(folder)
    localizer.save(folder / f"{version}.npz")
    record = {
        "version": version,
        "trained_at": now.isoformat(timespec="seconds").replace("+00:00", "Z"),
        "catalog_products": catalog,
        "cutouts": len(cutouts),
        "scenes": scenes,
        "evaluation": evaluation,
        "train_seconds": round(time.perf_counter() - t0, 1),
    }
    (folder / f"{version}.json").write_text(json.dumps(record, indent=1))
    return record


def localizer_due(runtime: Runtime) -> bool:
    """True when no localiser exists yet for a catalog of photos, or the catalog has grown
    by a quarter since the newest one was trained."""
    count = runtime.store.count_products()
    records = list_localizers(runtime.settings.model_dir)
    if not records:
        return count >= 4 * MIN_CUTOUTS
    return count >= GROWTH * max(int(records[0].get("catalog_products") or 0), 1)


def queue_localizer_if_due(runtime: Runtime) -> None:
    """Queue ``train_localizer`` when it is due and none is queued or running already."""
    busy = runtime.jobs.store.queued(TRAIN_LOCALIZER) or any(
        job["kind"] == TRAIN_LOCALIZER for job in runtime.jobs.running()
    )
    if not busy and localizer_due(runtime):
        runtime.jobs.submit(TRAIN_LOCALIZER, {}, "the catalog grew")
