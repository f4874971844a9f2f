"""Background jobs across processes: queued in the database, run by the leader.

Any process (an API request, the admin UI, a shell command) queues a job; the process
that holds the leader lock (:mod:`vitrine.cluster.leader`) runs it, one at a time, and
writes its stage and progress to the job's row, which every process can read. A command
run while no server is alive takes the lock itself and runs what it queued
(:meth:`JobRunner.run_queued`), so jobs never wait for a server that is not there.
Jobs left running by a process that died are queued again when the next leader starts.
Each job run is the root span of a trace of its own (``job <kind>``).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

from opentelemetry.trace import Span, StatusCode

from vitrine import tracing
from vitrine.cluster.job_store import JobStore
from vitrine.worker import BackgroundWorker

log = logging.getLogger(__name__)

# The kinds of job (their handlers: vitrine.jobs.background).
LABEL_CATALOG = "label_catalog"
TRAIN_CLASSIFIER = "train_classifier"
TRAIN_RECOMMENDATIONS = "train_recommendations"
EVALUATE_RECOMMENDATIONS = "evaluate_recommendations"
FINETUNE_CNN = "finetune_cnn"
SWITCH_CNN = "switch_cnn"
TRAIN_LOCALIZER = "train_localizer"
JOB_KINDS = (
    LABEL_CATALOG,
    TRAIN_CLASSIFIER,
    TRAIN_RECOMMENDATIONS,
    EVALUATE_RECOMMENDATIONS,
    FINETUNE_CNN,
    SWITCH_CNN,
    TRAIN_LOCALIZER,
)


class JobCancelled(Exception):
    """Raised inside a job when someone asked to cancel it."""


class JobInterrupted(Exception):
    """Raised inside a job when its runner stops (the process lost the lead or ends):
    the job stays running in the table and the next leader queues it again."""


class JobError(ValueError):
    """A job that cannot start or go on, with a message meant for the person who asked."""


class Progress:
    """What a running job tells: its stage and how far it is, saved at most twice a
    second (and at every stage change); raises :class:`JobCancelled` when asked to stop."""

    def __init__(
        self,
        store: JobStore | None,
        job_id: int,
        echo: Callable[[str, int, int], None] | None = None,
        stopping: Callable[[], bool] = lambda: False,
    ) -> None:
        self.store = store
        self.stopping = stopping
        self.job_id = job_id
        self.echo = echo
        self.stage: str | None = None
        self.done = 0
        self.total = 0
        self._saved = 0.0

    def start(self, stage: str, total: int = 0) -> None:
        self.stage, self.done, self.total = stage, 0, total
        self._save(force=True)

    def advance(self, n: int = 1) -> None:
        self.done += n
        self._save()

    def _save(self, force: bool = False) -> None:
        if self.stopping():
            raise JobInterrupted(self.job_id)
        if self.echo is not None:
            self.echo(self.stage or "", self.done, self.total)
        now = time.monotonic()
        if self.store is None or (not force and now - self._saved < 0.5):
            return
        self._saved = now
        if self.store.progress(self.job_id, self.stage, self.done, self.total):
            raise JobCancelled(self.job_id)


Handler = Callable[[dict[str, Any], Progress], dict[str, Any]]


class JobQueue:
    """Queue, read and cancel jobs (any process)."""

    def __init__(self, store: JobStore, kinds: tuple[str, ...] = JOB_KINDS) -> None:
        self.store = store
        self.kinds = kinds
        # Called after a job is queued, so that a runner in this process starts at once.
        self.on_submit: Callable[[], None] | None = None

    def submit(
        self, kind: str, params: Mapping[str, Any], created_by: str | None = None
    ) -> dict[str, Any]:
        """Queue a job; a queued job of the same kind with the same params is reused."""
        if kind not in self.kinds:
            raise JobError(f"unknown job kind {kind!r}; one of {', '.join(self.kinds)}")
        for job in self.store.queued(kind):
            if job["params"] == dict(params):
                return job
        job_id = self.store.insert(kind, dict(params), created_by)
        if self.on_submit is not None:
            self.on_submit()
        job = self.store.get(job_id)
        assert job is not None
        return job

    def get(self, job_id: int) -> dict[str, Any] | None:
        return self.store.get(job_id)

    def latest(self, limit: int = 50, kinds: tuple[str, ...] = ()) -> list[dict[str, Any]]:
        return self.store.latest(limit, kinds)

    def running(self) -> list[dict[str, Any]]:
        return self.store.latest(20, states=("queued", "running"))

    def cancel(self, job_id: int) -> str | None:
        return self.store.request_cancel(job_id)


class JobRunner:
    """Runs queued jobs with their handlers: as a leader duty in the server (a loop on
    a :class:`BackgroundWorker`), or once, in the foreground, in a command."""

    def __init__(self, store: JobStore, handlers: Mapping[str, Handler]) -> None:
        self.store = store
        self.handlers = dict(handlers)
        self._worker = BackgroundWorker("vitrine-jobs", self._step, interval=2.0, join_timeout=5)

    def start(self) -> None:
        self.store.requeue_running(tuple(self.handlers))
        self._worker.start()

    def stop(self) -> None:
        self._worker.stop()

    def wake(self) -> None:
        self._worker.wake()

    def _step(self) -> float | None:
        return 0 if self.run_next() is not None else None

    def run_next(
        self, echo: Callable[[str, int, int], None] | None = None
    ) -> dict[str, Any] | None:
        """Run the oldest queued job to its end; returns its final row (None: none queued)."""
        job = self.store.claim_next(tuple(self.handlers))
        if job is None:
            return None
        attributes = {"vitrine.job.kind": job["kind"], "vitrine.job.id": job["id"]}
        with tracing.root_span(f"job {job['kind']}", attributes) as span:
            outcome = self._run(job, echo, span)
            span.set_attribute("vitrine.job.outcome", outcome)
        return self.store.get(job["id"])

    def _run(
        self, job: dict[str, Any], echo: Callable[[str, int, int], None] | None, span: Span
    ) -> str:
        """Run a claimed job to its end and record how it ended; returns that outcome."""
        progress = Progress(self.store, job["id"], echo, lambda: self._worker.stopping)
        started = time.perf_counter()
        try:
            result = self.handlers[job["kind"]](job["params"] or {}, progress)
        except JobCancelled:
            self.store.finish(job["id"], "cancelled", None, "cancelled on request")
            return "cancelled"
        except JobInterrupted:
            log.info("job %s (%s) interrupted: the next leader resumes it", job["id"], job["kind"])
            return "interrupted"
        except JobError as exc:
            self.store.finish(job["id"], "failed", None, str(exc))
            span.set_status(StatusCode.ERROR, str(exc))
            return "failed"
        except Exception as exc:  # a job never takes the runner down
            log.exception("job %s (%s) failed", job["id"], job["kind"])
            self.store.finish(job["id"], "failed", None, f"{type(exc).__name__}: {exc}")
            span.record_exception(exc)
            span.set_status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}")
            return "failed"
        result = {**result, "seconds": round(time.perf_counter() - started, 1)}
        self.store.progress(job["id"], progress.stage, progress.done, progress.total)
        try:
            json.dumps(result)
        except (TypeError, ValueError) as exc:  # a handler's bug must not leave it running
            log.error("job %s (%s): result not storable: %s", job["id"], job["kind"], exc)
            self.store.finish(job["id"], "failed", None, f"result not storable: {exc}")
            span.set_status(StatusCode.ERROR, f"result not storable: {exc}")
            return "failed"
        self.store.finish(job["id"], "done", result)
        return "done"

    def run_queued(self, echo: Callable[[str, int, int], None] | None = None) -> list[dict]:
        """Run every queued job in this thread (a command holding the leader lock)."""
        self.store.requeue_running(tuple(self.handlers))
        finished = []
        while (job := self.run_next(echo)) is not None:
            finished.append(job)
        return finished
