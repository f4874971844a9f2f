"""Bulk catalog import: a CSV and a folder of photos into the catalog, the index and the blob store.

Pipelined: each worker process reads, hashes, decodes and describes photos, runs its own
single-threaded CNN on chunks of them and stores them in the blob store; the main
process writes the database in batches and updates the index. Resumable: a photo
already stored for its product (same content hash) is skipped. A bad row or photo is
reported, never fatal: the rest is imported.
"""

from __future__ import annotations

import csv
import errno
import multiprocessing
import os
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from vitrine.catalog.blob_stores import open_blob_store
from vitrine.catalog.blobs import BlobStore, image_key
from vitrine.catalog.csv_records import read_records
from vitrine.catalog.csv_source import CatalogRow, ColumnMapping, RejectedRow, read_catalog
from vitrine.catalog.records import aspect_rows, image_records, image_sizes
from vitrine.catalog.s3 import S3Options
from vitrine.catalog.store import ImageRecord, ProductRecord, filterable_attributes, product_text
from vitrine.runtime import Runtime
from vitrine.vision.analyzer import (
    WORKING_SIDE,
    ImageAnalysis,
    ImageAnalyzer,
    PreparedImage,
    content_hash,
    prepare,
)
from vitrine.vision.decode import DecodeLimits, ImageDecodeError, decode_image, read_image_bytes
from vitrine.vision.embedding import Embedder

# Below this many rows, worker start-up costs more than it saves.
MIN_ROWS_FOR_POOL = 48


@dataclass
class ImportReport:
    """Counts, timings and rejects of one catalog import."""

    rows: int = 0
    imported: int = 0
    skipped: int = 0
    rejected: list[RejectedRow] = field(default_factory=list)
    seconds: float = 0.0
    stage_seconds: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    rejects_file: Path | None = None
    first_result_seconds: float = 0.0  # start-up: workers spawned, models loaded

    @property
    def steady_images_per_second(self) -> float:
        """Photos per second after the first result (start-up left out)."""
        steady = self.seconds - self.first_result_seconds
        return max(0, self.imported - 1) / steady if steady > 0 else 0.0

    @property
    def images_per_second(self) -> float:
        return self.imported / self.seconds if self.seconds > 0 else 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "rows": self.rows,
            "imported": self.imported,
            "skipped_already_imported": self.skipped,
            "rejected": len(self.rejected),
            "seconds": round(self.seconds, 2),
            "images_per_second": round(self.images_per_second, 1),
            "first_result_seconds": round(self.first_result_seconds, 2),
            "steady_images_per_second": round(self.steady_images_per_second, 1),
            "stage_seconds": {k: round(v, 2) for k, v in self.stage_seconds.items()},
            "rejects_file": str(self.rejects_file) if self.rejects_file else None,
        }


@dataclass
class _Task:
    line: int
    product_id: str
    path: str


@dataclass
class _Outcome:
    line: int
    product_id: str
    prepared: PreparedImage | None = None
    analysis: ImageAnalysis | None = None
    blob_key: str | None = None
    skipped: bool = False
    error: str | None = None
    source: str = ""


# -- worker side ----------------------------------------------------------------------

_worker_state: dict[str, Any] = {}
_EMPTY_INPUT = np.zeros((0, 0, 3), np.uint8)


def _init_worker(
    known: set[tuple[str, str]],
    limits: DecodeLimits,
    blob_url: str,
    s3: S3Options,
    model_dir: Path,
    model_version: str,
    analyzer: ImageAnalyzer | None = None,
) -> None:
    """Each worker runs the whole per-photo pipeline, CNN included, on one core.

    One single-threaded model per worker beats one multi-threaded model fed by feature
    workers: on a few cores the latter's threads keep waiting for each other.
    """
    import cv2

    cv2.setNumThreads(1)
    if analyzer is None:
        analyzer = ImageAnalyzer(Embedder.for_version(model_dir, model_version, threads=1), limits)
    _worker_state.update(
        known=known, limits=limits, blobs=open_blob_store(blob_url, s3), analyzer=analyzer
    )


def _process_chunk(tasks: list[_Task]) -> list[_Outcome]:
    """Prepare every photo of a chunk, then run the CNN once on the chunk."""
    outcomes = [_prepare_task(task) for task in tasks]
    ready = [o for o in outcomes if o.prepared is not None]
    if ready:
        analyzer: ImageAnalyzer = _worker_state["analyzer"]
        t0 = time.perf_counter()
        try:
            analyses = analyzer.complete([o.prepared for o in ready])  # type: ignore[misc]
        except Exception as exc:  # the model failing on a chunk rejects that chunk only
            for o in ready:
                o.error, o.source, o.prepared = (
                    f"{type(exc).__name__}: {exc}",
                    o.prepared.source,
                    None,
                )  # type: ignore[union-attr]
            return outcomes
        share = (time.perf_counter() - t0) / len(ready)
        for o, analysis in zip(ready, analyses, strict=True):
            analysis.prepared.timings["embedding"] = share
            analysis.prepared.model_input = _EMPTY_INPUT  # not needed any more: keep IPC small
            o.analysis, o.prepared = analysis, None
    return outcomes


def _prepare_task(task: _Task) -> _Outcome:
    known: set[tuple[str, str]] = _worker_state["known"]
    limits: DecodeLimits = _worker_state["limits"]
    blobs: BlobStore = _worker_state["blobs"]
    try:
        data = read_image_bytes(Path(task.path), limits)
        digest = content_hash(data)
        if (task.product_id, digest) in known:
            return _Outcome(task.line, task.product_id, skipped=True)
        prepared = prepare(data, task.path, limits)
        key = image_key(digest, prepared.format)
        if not blobs.exists(key):
            blobs.put(key, data)
        return _Outcome(task.line, task.product_id, prepared=prepared, blob_key=key)
    except ImageDecodeError as exc:
        return _Outcome(task.line, task.product_id, error=exc.reason, source=task.path)
    except OSError as exc:  # the reason names the problem, never a server path
        return _Outcome(task.line, task.product_id, error=_os_reason(exc), source=task.path)
    except Exception as exc:  # one broken photo must never stop the import
        return _Outcome(
            task.line, task.product_id, error=f"{type(exc).__name__}: {exc}", source=task.path
        )


def _os_reason(exc: OSError) -> str:
    if isinstance(exc, IsADirectoryError):
        return "photo path names a folder, not a file"
    if isinstance(exc, PermissionError):
        return "photo file cannot be read: permission denied"
    if exc.errno == errno.ENAMETOOLONG:
        return "photo path is too long"
    return f"photo file cannot be read: {exc.strerror or type(exc).__name__}"


# -- main side ------------------------------------------------------------------------


def _chunks(items: Iterable[_Task], size: int) -> Iterator[list[_Task]]:
    chunk: list[_Task] = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _calibration_photos(
    csv_path: Path,
    images_dir: Path,
    mapping: ColumnMapping,
    confine: bool,
    limits: DecodeLimits,
) -> Iterator[np.ndarray]:
    """The import's first good photos (decoded as the import decodes them), for int8
    calibration; unreadable ones are skipped here and rejected by the import itself."""
    for item in read_catalog(csv_path, images_dir, mapping, confine=confine):
        if not isinstance(item, CatalogRow):
            continue
        try:
            data = read_image_bytes(Path(item.image_path), limits)
            yield decode_image(data, limits=limits, max_side=WORKING_SIDE).rgb
        except (ImageDecodeError, OSError):
            continue


def count_rows(csv_path: Path, encoding: str | None = None) -> int:
    """Data rows of the CSV (broken ones included: each is one reject)."""
    return max(0, sum(1 for _ in read_records(csv_path, encoding)) - 1)


class _Writer:
    """Batches the database and index writes of the main process."""

    def __init__(self, vitrine: Runtime, report: ImportReport) -> None:
        self.vitrine = vitrine
        self.report = report
        self.db_batch = vitrine.settings.import_db_batch
        self.products: list[ProductRecord] = []
        self.images: list[ImageRecord] = []
        self.analyses: list[tuple[str, ImageAnalysis]] = []

    def add(self, product: ProductRecord, outcome: _Outcome) -> None:
        if outcome.skipped:
            self.products.append(product)
            self.report.skipped += 1
        else:
            assert outcome.analysis is not None
            analysis = outcome.analysis
            for stage, seconds in analysis.prepared.timings.items():
                self.report.stage_seconds[stage] += seconds
            self.products.append(product)
            self.images.append(image_records(analysis, product.id, outcome.blob_key or ""))
            self.analyses.append((product.id, analysis))
        if len(self.products) >= self.db_batch:
            self.flush()

    def flush(self) -> None:
        if not self.products:
            return
        t0 = time.perf_counter()
        store = self.vitrine.store
        self.report.imported += store.save_products(self.products, self.images)
        t1 = time.perf_counter()
        ids = [pid for pid, _ in self.analyses]
        analyses = [a for _, a in self.analyses]
        matrix = np.stack([a.embedding for a in analyses]) if analyses else None
        attributes = {
            p.id: filterable_attributes(p.attributes, p.price, p.available) for p in self.products
        }
        titles = {p.id: p.title for p in self.products}
        self.vitrine.search.upsert(
            ids,
            matrix,
            attributes,
            titles,
            aspects=aspect_rows(analyses),
            sizes=image_sizes(analyses) if analyses else None,
        )
        t2 = time.perf_counter()
        texts = {p.id: product_text(p.title, p.description) for p in self.products}
        self.vitrine.classification.label_analyses(ids, analyses, [texts.get(i) for i in ids])
        self.report.stage_seconds["classify"] += time.perf_counter() - t2
        self.report.stage_seconds["database"] += t1 - t0
        self.report.stage_seconds["index"] += t2 - t1
        self.products, self.images, self.analyses = [], [], []


def _write_rejects(path: Path, rejected: Iterable[RejectedRow]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["line", "product_id", "source", "reason"])
        for r in rejected:
            writer.writerow([r.line, r.product_id, r.source, r.reason])


def import_catalog(
    vitrine: Runtime,
    csv_path: Path,
    images_dir: Path,
    mapping: ColumnMapping | None = None,
    *,
    workers: int | None = None,
    limit: int | None = None,
    rejects_path: Path | None = None,
    progress: bool = True,
    on_progress: Callable[[ImportReport, int], None] | None = None,
    progress_every: float = 1.0,
    confine: bool = False,
) -> ImportReport:
    """Import a catalog CSV and its photos; see the module docstring.

    ``confine``: every photo path must stay inside ``images_dir`` (API import jobs).
    """
    mapping = mapping or ColumnMapping()
    report = ImportReport()
    started = time.perf_counter()
    total = count_rows(csv_path, mapping.encoding)
    if limit is not None:
        total = min(total, limit)

    rows: dict[int, ProductRecord] = {}
    processed = 0
    last_report = time.monotonic()

    def tasks() -> Iterator[_Task]:
        nonlocal processed
        for item in read_catalog(csv_path, images_dir, mapping, confine=confine):
            if limit is not None and report.rows >= limit:
                return
            report.rows += 1
            if isinstance(item, RejectedRow):
                report.rejected.append(item)
                processed += 1
                bar.update(1)
                continue
            assert isinstance(item, CatalogRow)
            rows[item.line] = item.product
            yield _Task(item.line, item.product.id, str(item.image_path))

    if vitrine.needs_auto_int8():  # a new home on a VNNI CPU: int8 from its own photos
        vitrine.prepare_auto_int8(
            _calibration_photos(csv_path, images_dir, mapping, confine, vitrine.limits)
        )
    vitrine.search  # open (or rebuild) the index before the workers start  # noqa: B018
    vitrine.embedder  # export the model once, before the workers load it  # noqa: B018
    known = vitrine.store.image_keys()
    # Photos per CNN call in each worker.
    chunk_size = max(1, vitrine.settings.embedding_batch_size)
    init_args = (
        known,
        vitrine.limits,
        vitrine.settings.resolved_blob_url,
        S3Options.from_settings(vitrine.settings),
        vitrine.settings.model_dir,
        vitrine.embedder.model_version,  # every worker runs exactly the CNN in service
    )
    n_workers = (
        workers if workers is not None else (vitrine.settings.import_workers or os.cpu_count() or 1)
    )
    writer = _Writer(vitrine, report)
    bar = tqdm(total=total, unit="img", desc="import", disable=not progress, smoothing=0.1)

    def consume(outcomes: Iterable[_Outcome]) -> None:
        nonlocal processed, last_report
        for outcome in outcomes:
            if not report.first_result_seconds:
                report.first_result_seconds = time.perf_counter() - started
            processed += 1
            if on_progress is not None and time.monotonic() - last_report >= progress_every:
                writer.flush()
                on_progress(report, processed)
                last_report = time.monotonic()
            product = rows.pop(outcome.line)
            if outcome.error is not None:
                report.rejected.append(
                    RejectedRow(outcome.line, outcome.product_id, outcome.source, outcome.error)
                )
            else:
                writer.add(product, outcome)
            bar.update(1)

    try:
        if n_workers <= 0 or total < MIN_ROWS_FOR_POOL:
            _init_worker(*init_args, analyzer=vitrine.analyzer)
            consume(o for chunk in _chunks(tasks(), chunk_size) for o in _process_chunk(chunk))
        else:
            context = multiprocessing.get_context("spawn")
            with context.Pool(n_workers, initializer=_init_worker, initargs=init_args) as pool:
                results = pool.imap(_process_chunk, _chunks(tasks(), chunk_size))
                consume(o for chunk in results for o in chunk)
        writer.flush()
    finally:
        bar.close()
        vitrine.search.save()

    report.seconds = time.perf_counter() - started
    if on_progress is not None:
        on_progress(report, report.rows)
    if report.rejected:
        report.rejects_file = rejects_path or (
            vitrine.settings.home / "imports" / f"rejects-{csv_path.stem}-{int(time.time())}.csv"
        )
        _write_rejects(report.rejects_file, report.rejected)
    return report
