"""The import's stages, each run alone on the same photos and the same cores as the import.

Used by ``bench_foundation.py`` beside the end-to-end import of the same rows:

* ``decode``: read the file, SHA-256, decode (``vision.decode``, working side 320);
* ``features``: the hand-made aspects (``vision.features``), the colour layout and the
  CNN's input tensor;
* ``cnn``: the CNN on those inputs, chunks of ``embedding_batch_size``, one
  single-threaded model per worker (as the import runs it);
* ``storage``: blob puts, the database batches, the index upsert and labelling, in one
  process (as the import's writer runs them).

Decode, features and CNN run in one worker process per core, each worker on its share of
the photos, phase after phase (a barrier between phases, so that each phase has the cores
to itself); a stage's throughput is the photos over the slowest worker's time in it.
Storage runs in the main process, as in the import. ``pipeline_bound`` is what the cores
allow when every photo pays every stage on the same cores: ``1 / sum(1 / stage)``.
"""

from __future__ import annotations

import multiprocessing
import time
from pathlib import Path
from queue import Empty
from typing import Any

import numpy as np

STAGES = ("decode", "features", "cnn", "storage")


def _phase_worker(
    paths: list[str], model_dir: str, version: str, batch: int, barrier: Any, queue: Any
) -> None:
    import cv2

    from vitrine.vision.analyzer import WORKING_SIDE, PreparedImage, content_hash
    from vitrine.vision.decode import decode_image, read_image_bytes
    from vitrine.vision.embedding import Embedder
    from vitrine.vision.features import extract_features
    from vitrine.vision.layout import layout_vector
    from vitrine.vision.model_input import prepare_image

    cv2.setNumThreads(1)
    embedder = Embedder.for_version(Path(model_dir), version, threads=1)
    embedder.embed_prepared(np.zeros((1, 224, 224, 3), np.uint8))  # warm
    seconds: dict[str, float] = {}

    barrier.wait()
    t0 = time.perf_counter()
    decoded = []
    for p in paths:
        data = read_image_bytes(Path(p))
        decoded.append((content_hash(data), len(data), decode_image(data, max_side=WORKING_SIDE)))
    seconds["decode"] = time.perf_counter() - t0

    barrier.wait()
    t0 = time.perf_counter()
    prepared = []
    for (digest, size, d), p in zip(decoded, paths, strict=True):
        prepared.append(
            PreparedImage(
                source=p,
                content_hash=digest,
                format=d.format,
                width=d.width,
                height=d.height,
                byte_size=size,
                features=extract_features(d.rgb),
                model_input=prepare_image(d.rgb),
                layout=layout_vector(d.rgb),
            )
        )
    seconds["features"] = time.perf_counter() - t0

    barrier.wait()
    t0 = time.perf_counter()
    vectors, labels = [], []
    for i in range(0, len(prepared), batch):
        result = embedder.embed_prepared(np.stack([x.model_input for x in prepared[i : i + batch]]))
        vectors.append(result.vectors)
        labels.extend(result.labels)
    seconds["cnn"] = time.perf_counter() - t0
    for x in prepared:
        x.model_input = np.zeros((0, 0, 3), np.uint8)
    queue.put((seconds, prepared, np.concatenate(vectors), labels, embedder.model_version))


def measure_stages(vitrine: Any, csv_path: Path, images_dir: Path, limit: int) -> dict[str, Any]:
    """Each stage alone on the first ``limit`` rows; ``vitrine`` is a fresh Runtime (its home
    receives the storage stage's writes)."""
    from vitrine.catalog.blobs import image_key
    from vitrine.catalog.csv_source import CatalogRow, ColumnMapping, read_catalog
    from vitrine.jobs.bulk_import import ImportReport, _Outcome, _Writer
    from vitrine.vision.analyzer import ImageAnalysis

    rows = [
        r for r in read_catalog(csv_path, images_dir, ColumnMapping()) if isinstance(r, CatalogRow)
    ]
    rows = rows[:limit]
    workers = vitrine.settings.import_workers or multiprocessing.cpu_count()
    version = vitrine.embedder.model_version
    shares = [rows[i::workers] for i in range(workers)]
    context = multiprocessing.get_context("spawn")
    barrier, queue = context.Barrier(workers), context.Queue()
    procs = [
        context.Process(
            target=_phase_worker,
            args=(
                [str(r.image_path) for r in share],
                str(vitrine.settings.model_dir),
                version,
                vitrine.settings.embedding_batch_size,
                barrier,
                queue,
            ),
        )
        for share in shares
    ]
    for p in procs:
        p.start()
    results = []
    while len(results) < len(procs):
        try:
            results.append(queue.get(timeout=5))
        except Empty:
            failed = [p.exitcode for p in procs if p.exitcode not in (None, 0)]
            if failed:
                raise RuntimeError(f"a stage worker failed (exit codes {failed})") from None
    for p in procs:
        p.join()
    seconds = {s: max(r[0][s] for r in results) for s in ("decode", "features", "cnn")}

    by_path = {}
    for _, prepared, vectors, labels, model_version in results:
        for x, v, lb in zip(prepared, vectors, labels, strict=True):
            by_path[x.source] = ImageAnalysis(x, v, lb, model_version)
    vitrine.search  # noqa: B018  (open the index outside the timed part)
    report = ImportReport()
    writer = _Writer(vitrine, report)
    t0 = time.perf_counter()
    for row in rows:
        analysis = by_path[str(row.image_path)]
        key = image_key(analysis.prepared.content_hash, analysis.prepared.format)
        if not vitrine.blobs.exists(key):
            vitrine.blobs.put(key, Path(row.image_path).read_bytes())
        writer.add(row.product, _Outcome(row.line, row.product.id, analysis=analysis, blob_key=key))
    writer.flush()
    vitrine.search.save()
    seconds["storage"] = time.perf_counter() - t0
    n = len(rows)
    per_second = {s: n / seconds[s] for s in STAGES}
    return {
        "photos": n,
        "workers": workers,
        "model_version": version,
        "seconds": {s: round(v, 2) for s, v in seconds.items()},
        "photos_per_second": {s: round(v, 1) for s, v in per_second.items()},
        "slowest": min(per_second, key=per_second.__getitem__),
        "pipeline_bound": round(1.0 / sum(1.0 / v for v in per_second.values()), 1),
    }
