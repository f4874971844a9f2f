"""The import_jobs table: queued, running and finished import jobs with their progress."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, func, select, update

from vitrine.catalog.models import ImportJob, utcnow


class ImportJobStore:
    """Every read and write of the import_jobs table."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def insert(self, job_id: str, params: dict[str, Any]) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                ImportJob.__table__.insert().values(
                    id=job_id, status="queued", params=params, rejects=[], created_at=utcnow()
                )
            )

    def get(self, job_id: str) -> dict[str, Any] | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(ImportJob.__table__).where(ImportJob.id == job_id)).first()
        return dict(row._mapping) if row else None

    def latest(self, limit: int = 50) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(ImportJob.__table__).order_by(ImportJob.created_at.desc()).limit(limit)
            ).all()
        return [dict(r._mapping) for r in rows]

    def next_queued(self) -> dict[str, Any] | None:
        """The oldest queued job."""
        with self.engine.connect() as conn:
            row = conn.execute(
                select(ImportJob.__table__)
                .where(ImportJob.status == "queued")
                .order_by(ImportJob.created_at)
                .limit(1)
            ).first()
        return dict(row._mapping) if row else None

    def requeue_running(self) -> None:
        """Jobs a previous process left running are queued again."""
        with self.engine.begin() as conn:
            conn.execute(
                update(ImportJob).where(ImportJob.status == "running").values(status="queued")
            )

    def save(self, job_id: str, **values: Any) -> None:
        with self.engine.begin() as conn:
            conn.execute(update(ImportJob).where(ImportJob.id == job_id).values(**values))

    def status_counts(self) -> dict[str, tuple[int, int]]:
        """Per status: how many jobs, and how many rows they processed."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(ImportJob.status, func.count(), func.sum(ImportJob.processed)).group_by(
                    ImportJob.status
                )
            ).all()
        return {status: (int(n), int(p or 0)) for status, n, p in rows}
