"""The jobs table: every read and write of queued, running and finished background jobs."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Engine, select, update

from vitrine.catalog.models import Job, utcnow

ACTIVE = ("queued", "running")
FINISHED = ("done", "failed", "cancelled")


class JobStore:
    """Every read and write of the ``jobs`` table."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def insert(self, kind: str, params: dict[str, Any], created_by: str | None) -> int:
        now = utcnow()
        with self.engine.begin() as conn:
            result = conn.execute(
                Job.__table__.insert().values(
                    kind=kind,
                    params=params,
                    state="queued",
                    done=0,
                    total=0,
                    cancel_requested=False,
                    created_by=created_by,
                    created_at=now,
                    updated_at=now,
                )
            )
            return int(result.inserted_primary_key[0])

    def get(self, job_id: int) -> dict[str, Any] | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(Job.__table__).where(Job.id == job_id)).first()
        return dict(row._mapping) if row else None

    def latest(
        self, limit: int = 50, kinds: Sequence[str] | None = None, states: Sequence[str] = ()
    ) -> list[dict[str, Any]]:
        query = select(Job.__table__).order_by(Job.id.desc()).limit(limit)
        if kinds:
            query = query.where(Job.kind.in_(list(kinds)))
        if states:
            query = query.where(Job.state.in_(list(states)))
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(query)]

    def queued(self, kind: str) -> list[dict[str, Any]]:
        """Queued jobs of one kind, oldest first."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(Job.__table__)
                .where(Job.kind == kind, Job.state == "queued")
                .order_by(Job.id)
            )
            return [dict(r._mapping) for r in rows]

    def claim_next(self, kinds: Sequence[str]) -> dict[str, Any] | None:
        """Mark the oldest queued job of these kinds running and return it (None: none)."""
        while True:
            with self.engine.connect() as conn:
                row = conn.execute(
                    select(Job.id)
                    .where(Job.state == "queued", Job.kind.in_(list(kinds)))
                    .order_by(Job.id)
                    .limit(1)
                ).first()
            if row is None:
                return None
            now = utcnow()
            with self.engine.begin() as conn:
                claimed = conn.execute(
                    update(Job)
                    .where(Job.id == row.id, Job.state == "queued")
                    .values(state="running", started_at=now, updated_at=now)
                ).rowcount
            if claimed:  # another runner may have taken it first: look again
                return self.get(row.id)

    def progress(self, job_id: int, stage: str | None, done: int, total: int) -> bool:
        """Record progress; returns whether cancelling was asked for."""
        with self.engine.begin() as conn:
            conn.execute(
                update(Job)
                .where(Job.id == job_id)
                .values(stage=stage, done=done, total=total, updated_at=utcnow())
            )
            return bool(conn.execute(select(Job.cancel_requested).where(Job.id == job_id)).scalar())

    def finish(
        self, job_id: int, state: str, result: dict[str, Any] | None, error: str | None = None
    ) -> None:
        now = utcnow()
        with self.engine.begin() as conn:
            conn.execute(
                update(Job)
                .where(Job.id == job_id)
                .values(state=state, result=result, error=error, updated_at=now, finished_at=now)
            )

    def request_cancel(self, job_id: int) -> str | None:
        """A queued job is cancelled at once; a running one is asked to stop. Returns the
        job's state afterwards (None: no such job)."""
        now = utcnow()
        with self.engine.begin() as conn:
            conn.execute(
                update(Job)
                .where(Job.id == job_id, Job.state == "queued")
                .values(state="cancelled", updated_at=now, finished_at=now)
            )
            conn.execute(
                update(Job)
                .where(Job.id == job_id, Job.state == "running")
                .values(cancel_requested=True, updated_at=now)
            )
            return conn.execute(select(Job.state).where(Job.id == job_id)).scalar()

    def requeue_running(self, kinds: Sequence[str]) -> int:
        """Jobs that a runner which died left running are queued again (only the leader
        runs jobs, so at its start none of these runs anywhere)."""
        with self.engine.begin() as conn:
            return conn.execute(
                update(Job)
                .where(Job.state == "running", Job.kind.in_(list(kinds)))
                .values(state="queued", stage="waiting to resume", updated_at=utcnow())
            ).rowcount
