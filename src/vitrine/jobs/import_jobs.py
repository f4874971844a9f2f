"""Import jobs run by the service: kept in the database, resumed after a restart.

A job is a CSV plus its photos (an uploaded zip, or a folder on the server under the
configured import root). One background thread runs the queued jobs in turn; the
import itself skips photos already stored, so a resumed job imports nothing twice.
"""

from __future__ import annotations

import logging
import shutil
import stat
import uuid
import zipfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from vitrine.catalog.csv_records import CsvFormatError, check_encoding
from vitrine.catalog.csv_source import ColumnMapping
from vitrine.catalog.models import utcnow
from vitrine.jobs.bulk_import import ImportReport, count_rows, import_catalog
from vitrine.jobs.import_job_store import ImportJobStore
from vitrine.runtime import Runtime
from vitrine.webhooks.events import IMPORT_FINISHED
from vitrine.worker import BackgroundWorker

log = logging.getLogger(__name__)
MAX_REJECTS_KEPT = 1000
# Jobs submitted through another process are picked up by the leader within this time.
JOB_POLL_S = 1.0


class ImportRequestError(ValueError):
    """An import that cannot be started; the message says why."""


class ImportTooLargeError(ImportRequestError):
    """An upload that would expand beyond the configured bounds (HTTP 413)."""


@dataclass(frozen=True)
class ZipLimits:
    """What an uploaded zip may expand to."""

    max_bytes: int
    max_entries: int
    max_ratio: float
    # Entries this small are never called bombs, whatever their ratio (a blank PNG).
    ratio_floor_bytes: int = 1024 * 1024


def _is_link(member: zipfile.ZipInfo) -> bool:
    return stat.S_ISLNK(member.external_attr >> 16)


def check_zip(zf: zipfile.ZipFile, target: Path, limits: ZipLimits) -> None:
    """Refuse, before anything is written, a zip that escapes ``target``, holds links or
    expands past ``limits`` (its sizes as declared: extraction stops at them)."""
    members = zf.infolist()
    if len(members) > limits.max_entries:
        raise ImportTooLargeError(
            f"the zip holds {len(members)} entries, more than the limit of {limits.max_entries}"
        )
    total = sum(m.file_size for m in members)
    if total > limits.max_bytes:
        raise ImportTooLargeError(
            f"the zip unpacks to {total} bytes, more than the limit of {limits.max_bytes}"
        )
    root = target.resolve()
    for member in members:
        if _is_link(member):
            raise ImportRequestError(f"zip entry {member.filename!r} is a link; links are refused")
        if not (root / member.filename).resolve().is_relative_to(root):
            raise ImportRequestError(f"zip entry {member.filename!r} escapes the folder")
        ratio = member.file_size / max(1, member.compress_size)
        if member.file_size > limits.ratio_floor_bytes and ratio > limits.max_ratio:
            raise ImportTooLargeError(
                f"zip entry {member.filename!r} expands {ratio:.0f} times, more than the "
                f"limit of {limits.max_ratio:g}: a zip bomb is refused"
            )


def safe_extract(archive: Path, target: Path, limits: ZipLimits) -> None:
    """Unzip after :func:`check_zip`; a broken zip is an ImportRequestError."""
    try:
        with zipfile.ZipFile(archive) as zf:
            check_zip(zf, target, limits)
            zf.extractall(target.resolve())
    except zipfile.BadZipFile as exc:
        raise ImportRequestError(f"the images file is not a valid zip: {exc}") from exc


def _check_mapping(mapping: ColumnMapping) -> None:
    try:
        check_encoding(mapping.encoding)
    except CsvFormatError as exc:
        raise ImportRequestError(str(exc)) from exc


class ImportJobs:
    """Import jobs of the service: created from the API or the admin UI, run one at a time."""

    def __init__(self, vitrine: Runtime) -> None:
        self.vitrine = vitrine
        self.root = vitrine.settings.home / "imports"
        self.store = ImportJobStore(vitrine.engine)
        self._worker = BackgroundWorker("vitrine-imports", self._run_next, interval=JOB_POLL_S)

    # -- creating ---------------------------------------------------------------------

    def create_from_upload(
        self, csv_data: bytes, zip_path: Path | None, mapping: ColumnMapping
    ) -> str:
        _check_mapping(mapping)
        job_id = uuid.uuid4().hex
        folder = self.root / job_id
        images = folder / "images"
        images.mkdir(parents=True)
        (folder / "products.csv").write_bytes(csv_data)
        if zip_path is not None:
            settings = self.vitrine.settings
            limits = ZipLimits(
                max_bytes=settings.import_zip_max_bytes,
                max_entries=settings.import_zip_max_entries,
                max_ratio=settings.import_zip_max_ratio,
            )
            try:
                safe_extract(zip_path, images, limits)
            except ImportRequestError:
                shutil.rmtree(folder, ignore_errors=True)
                raise
        return self._insert(job_id, str(folder / "products.csv"), str(images), mapping)

    def create_from_path(self, csv_path: str, images_dir: str, mapping: ColumnMapping) -> str:
        root = self.vitrine.settings.import_root
        if root is None:
            raise ImportRequestError(
                "server-side imports are disabled: set VITRINE_IMPORT_ROOT to allow a folder"
            )
        _check_mapping(mapping)
        root = root.resolve()
        try:  # a name the OS refuses (too long, a NUL byte) names no file either
            csv_file = (root / csv_path).resolve()
            folder = (root / images_dir).resolve()
            for given, path in ((csv_path, csv_file), (images_dir, folder)):
                if not path.is_relative_to(root):
                    raise ImportRequestError(f"{given!r} is outside the import root")
            if not csv_file.is_file():
                raise ImportRequestError(f"{csv_path}: no such CSV file under the import root")
            if not folder.is_dir():
                raise ImportRequestError(f"{images_dir}: no such folder under the import root")
        except ImportRequestError:
            raise
        except (OSError, ValueError) as exc:
            raise ImportRequestError("csv_path or images_dir is not a usable path") from exc
        return self._insert(uuid.uuid4().hex, str(csv_file), str(folder), mapping)

    def _insert(self, job_id: str, csv_path: str, images: str, mapping: ColumnMapping) -> str:
        self.store.insert(job_id, {"csv": csv_path, "images": images, "mapping": asdict(mapping)})
        self._worker.wake()
        return job_id

    # -- reading ----------------------------------------------------------------------

    def get(self, job_id: str) -> dict[str, Any] | None:
        return self.store.get(job_id)

    def list(self, limit: int = 50) -> list[dict[str, Any]]:
        return self.store.latest(limit)

    # -- running ----------------------------------------------------------------------

    def start(self) -> None:
        """Start the runner; jobs left running by a previous process are queued again
        (only one process runs jobs: see ``vitrine.cluster.leader``)."""
        self.store.requeue_running()
        self._worker.start()

    def stop(self) -> None:
        self._worker.stop()

    def _run_next(self) -> float | None:
        """One round of the runner: the oldest queued job, or a wait for one."""
        job = self.store.next_queued()
        if job is None:
            return None
        self.run_job(job)
        return 0

    def _save(self, job_id: str, **values: Any) -> None:
        self.store.save(job_id, **values)

    def run_job(self, job: dict[str, Any]) -> None:
        job_id = job["id"]
        params = job["params"]
        self._save(job_id, status="running", started_at=utcnow())
        rejected = [0]

        def progress(report: ImportReport, processed: int) -> None:
            rejected[0] = len(report.rejected)
            self._save(
                job_id,
                processed=processed,
                imported=report.imported,
                skipped=report.skipped,
                rejects=[
                    {"line": r.line, "product_id": r.product_id, "reason": r.reason}
                    for r in report.rejected[:MAX_REJECTS_KEPT]
                ],
            )

        try:
            csv_path = Path(params["csv"])
            mapping = ColumnMapping(**params["mapping"])
            self._save(job_id, total=count_rows(csv_path, mapping.encoding))
            import_catalog(
                self.vitrine,
                csv_path,
                Path(params["images"]),
                mapping,
                progress=False,
                on_progress=progress,
                rejects_path=self.root / f"{job_id}-rejects.csv",
                confine=True,
            )
            self._save(job_id, status="done", finished_at=utcnow())
        except Exception as exc:  # a failed job is recorded, never kills the runner
            log.exception("import job %s failed", job_id)
            error = self._public_error(exc, params)
            self._save(job_id, status="failed", error=error, finished_at=utcnow())
        self._announce(job_id, rejected[0])

    def _announce(self, job_id: str, rejected: int) -> None:
        """The ``import.finished`` event of a job that ended (its row's counts)."""
        row = self.store.get(job_id) or {}
        counts = ("status", "total", "processed", "imported", "skipped", "error")
        data = {"job_id": job_id, **{k: row.get(k) for k in counts}, "rejected": rejected}
        self.vitrine.webhooks.publish(IMPORT_FINISHED, data, f"import-{job_id}")

    def _public_error(self, exc: Exception, params: dict[str, Any]) -> str:
        """The job's error as its submitter may read it: no server path in it."""
        if isinstance(exc, CsvFormatError):
            return str(exc)
        text = f"{type(exc).__name__}: {exc}"
        root = self.vitrine.settings.import_root
        folders = [params.get("csv", ""), params.get("images", ""), str(self.vitrine.settings.home)]
        if root is not None:
            folders += [str(root.resolve()), str(root)]
        for folder in sorted(filter(None, folders), key=len, reverse=True):
            text = text.replace(folder, "<import>")
        return text
