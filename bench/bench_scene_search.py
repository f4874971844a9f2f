"""Products in real photos: snapshots and multi-product scenes, searched against the
whole fashion-small catalog (35k products), beside today's whole-photo search.

Query photos are composed from the higher-resolution ``fashion-queries/225x300`` photos
(their products are in the catalog): each product cut out along its outline and put on a
background of the *test* part (:data:`vitrine.vision.scenes.TEST_PHOTOS` and test
clutter; the localiser trains on the other part), then re-lit, blurred and
JPEG-compressed (fixed seeds).

* snapshots (one product): hit@1 and hit@10 of ``/v1/search/image`` as it runs now
  (the product isolated first) beside the ``baseline``: the same search on the photo
  whole, as it ran before the localiser;
* scenes (two or three products): item recall@10, the share of products among some
  object's top 10 of ``/v1/search/scene``, beside the baseline's top 10 of the whole photo;
* catalog-like photos (the 225x300 photos as they are): hit@1 with and without the
  isolation step (a plain background is never cut: the figures must be equal);
* latency, one request at a time: snapshot search and scene search, p50 and p95.

The localiser is trained by its job on the bench home when it has none (``--retrain``
trains a new one). A picture of one scene with its boxes is written to ``--picture``.

    .venv/bin/python bench/bench_scene_search.py
    .venv/bin/python bench/bench_scene_search.py --snapshots 100 --scenes 50
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

from bench_finetune_speed import cpu_flags  # noqa: E402
from bench_photo_search import QUERIES, ensure_catalog, settings_for  # noqa: E402


class _Quiet:
    """A job's progress, printed at each stage."""

    def start(self, stage: str, total: int = 0) -> None:
        print(f"  {stage} ({total})", flush=True)

    def advance(self, n: int = 1) -> None:
        pass


def jpeg(rgb: np.ndarray, quality: int = 90) -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.fromarray(rgb).save(out, "JPEG", quality=quality)
    return out.getvalue()


def query_cutouts(limit: int) -> list[Any]:
    from PIL import Image

    from vitrine.vision.scenes import cut_out

    paths = sorted((QUERIES / "225x300").glob("*.jpg"), key=lambda p: p.stem)
    cutouts = []
    for path in paths:
        item = cut_out(np.asarray(Image.open(path).convert("RGB")), path.stem)
        if item is not None:
            cutouts.append(item)
        if len(cutouts) >= limit:
            break
    return cutouts


def percentiles(values: list[float]) -> str:
    ms = np.asarray(values) * 1000
    return f"p50 {np.percentile(ms, 50):.0f} ms, p95 {np.percentile(ms, 95):.0f} ms"


def draw(scene: Any, objects: list[Any], path: Path) -> None:
    import cv2

    image = np.ascontiguousarray(scene.image[..., ::-1])
    for box in scene.boxes:
        cv2.rectangle(image, box[:2], box[2:], (0, 200, 0), 2)
    for i, obj in enumerate(objects):
        cv2.rectangle(image, obj.box[:2], obj.box[2:], (0, 0, 255), 2)
        label = f"{i + 1}: {obj.score:.2f}"
        cv2.putText(image, label, (obj.box[0] + 3, obj.box[1] + 16), 0, 0.5, (0, 0, 255), 2)
    cv2.imwrite(str(path), image)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--home", type=Path, default=ROOT / ".cache" / "bench-fashion-home")
    parser.add_argument("--snapshots", type=int, default=300)
    parser.add_argument("--scenes", type=int, default=150)
    parser.add_argument("--catalog-like", type=int, default=200)
    parser.add_argument("--retrain", action="store_true")
    parser.add_argument("--picture", type=Path, default=ROOT / ".cache" / "scene-example.jpg")
    args = parser.parse_args()

    from vitrine.jobs.localizer_jobs import train_localizer
    from vitrine.runtime import Runtime
    from vitrine.vision.scenes import random_scene

    print("CPU flags:", " ".join(cpu_flags()))
    ensure_catalog(args.home)
    vitrine = Runtime(settings_for(args.home, 50, ""))
    print(f"catalog: {vitrine.store.count_products()} products")
    if args.retrain or not vitrine.finder.available:
        t0 = time.perf_counter()
        record = train_localizer(vitrine, {}, _Quiet())  # type: ignore[arg-type]
        print(f"localiser trained in {time.perf_counter() - t0:.0f} s")
    record = vitrine.finder.record()
    print("localiser:", json.dumps(record))
    vitrine.search  # noqa: B018 - the index, before the first timed query
    photos, scenes = vitrine.photo_search, vitrine.scene_search
    cutouts = query_cutouts(max(args.snapshots, args.catalog_like, 400))
    print(f"query products cut out: {len(cutouts)}")

    def ids(hits: list[Any]) -> list[str]:
        return [h.product_id for h in hits]

    rng = np.random.default_rng(2026)
    ranks: dict[str, list[int]] = {"baseline": [], "vitrine": []}
    snapshot_seconds = []
    for _ in range(args.snapshots):
        scene = random_scene(cutouts, "test", rng, count=1)
        data, target = jpeg(scene.image), scene.product_ids[0]
        _, whole = photos(data, "snapshot", 10, isolate=False)
        t0 = time.perf_counter()
        _, hits = photos(data, "snapshot", 10)
        snapshot_seconds.append(time.perf_counter() - t0)
        for name, found in (("baseline", ids(whole)), ("vitrine", ids(hits))):
            ranks[name].append(found.index(target) if target in found else 99)
    print(f"\nsnapshots ({args.snapshots}, one product on a test background)")
    for name, r in ranks.items():
        r_ = np.asarray(r)
        print(f"  {name:9s} hit@1 {(r_ == 0).mean():.3f}  hit@10 {(r_ < 10).mean():.3f}")
    print(f"  latency (vitrine): {percentiles(snapshot_seconds)}")

    found_items = {"baseline": 0, "vitrine": 0}
    total, scene_seconds, pictured = 0, [], False
    for _ in range(args.scenes):
        scene = random_scene(cutouts, "test", rng, count=int(rng.choice([2, 3])))
        data = jpeg(scene.image)
        _, whole = photos(data, "scene", 10, isolate=False)
        t0 = time.perf_counter()
        objects = scenes(data, "scene", 10)
        scene_seconds.append(time.perf_counter() - t0)
        matched = {h.product_id for obj in objects for h in obj.results}
        total += len(scene.product_ids)
        found_items["baseline"] += len(set(scene.product_ids) & set(ids(whole)))
        found_items["vitrine"] += len(set(scene.product_ids) & matched)
        if not pictured and len(scene.product_ids) == 3:
            draw(scene, objects, args.picture)
            pictured = True
    print(f"\nscenes ({args.scenes}, two or three products; {total} products)")
    for name, n in found_items.items():
        print(f"  {name:9s} item recall@10 {n / max(total, 1):.3f}")
    print(f"  latency (vitrine scene search): {percentiles(scene_seconds)}")

    same = {"as is": 0, "isolating": 0}
    paths = sorted((QUERIES / "225x300").glob("*.jpg"), key=lambda p: p.stem)
    chosen = paths[:: max(1, len(paths) // args.catalog_like)][: args.catalog_like]
    for path in chosen:
        data = path.read_bytes()
        same["as is"] += ids(photos(data, path.name, 1, isolate=False)[1])[:1] == [path.stem]
        same["isolating"] += ids(photos(data, path.name, 1)[1])[:1] == [path.stem]
    print(f"\ncatalog-like photos ({len(chosen)}, 225x300 as they are)")
    for name, n in same.items():
        print(f"  {name:9s} hit@1 {n / max(len(chosen), 1):.3f}")
    print(f"\npicture: {args.picture}")
    vitrine.close()


if __name__ == "__main__":
    main()
