"""``vitrine jobs``: background jobs (labelling the catalog, training, evaluations), and
running them here when no server is there to run them."""

from __future__ import annotations

import sys
from typing import Annotated, Any

import typer

from vitrine.cli.common import fail, open_vitrine, parse_fields, print_json

jobs_app = typer.Typer(
    help="Background jobs: label the catalog, training, evaluations.", no_args_is_help=True
)


def job_line(job: dict[str, Any]) -> dict[str, Any]:
    keys = ("id", "kind", "state", "stage", "done", "total", "error", "created_at")
    return {k: job.get(k) for k in keys} | {"params": job.get("params")}


def run_queued_jobs(vitrine: Any, *, progress: bool | None = None) -> list[dict[str, Any]]:
    """Run the queued jobs in this process when no server leads (a server that leads
    runs them itself: say so on stderr). Progress bars on a terminal."""
    from tqdm import tqdm

    from vitrine.cluster.job_queue import JobRunner
    from vitrine.cluster.leader import lock_for
    from vitrine.jobs.background import job_handlers

    lock = lock_for(vitrine.engine, vitrine.settings.home)
    if not lock.try_acquire():
        queued = vitrine.jobs.running()
        if queued:
            typer.echo(
                f"{len(queued)} job(s) queued; the running Vitrine server runs them "
                "(see `vitrine jobs list` or the admin UI)",
                err=True,
            )
        return []
    show = sys.stderr.isatty() if progress is None else progress
    bars: dict[str, Any] = {}

    def echo(stage: str, done: int, total: int) -> None:
        bar = bars.get(stage)
        if bar is None:
            for old in bars.values():
                old.close()
            bars.clear()
            bar = bars[stage] = tqdm(total=total or None, desc=stage, disable=not show)
        bar.update(done - bar.n)

    try:
        finished = JobRunner(vitrine.jobs.store, job_handlers(vitrine)).run_queued(echo)
    finally:
        for bar in bars.values():
            bar.close()
        lock.release()
    return finished


def run_job_here(vitrine: Any, job: dict[str, Any]) -> dict[str, Any]:
    """Run the queued jobs here (unless a server leads) and return ``job`` as it ended,
    or as it stands when the server runs it."""
    finished = run_queued_jobs(vitrine)
    return next((j for j in finished if j["id"] == job["id"]), job)


@jobs_app.command("list")
def list_jobs(limit: Annotated[int, typer.Option(min=1, max=1000)] = 20) -> None:
    """The latest jobs, newest first."""
    vitrine = open_vitrine()
    try:
        print_json([job_line(j) for j in vitrine.jobs.latest(limit)])
    finally:
        vitrine.close()


@jobs_app.command("show")
def show_job(job_id: Annotated[int, typer.Argument(help="The job's id.")]) -> None:
    """One job with its result."""
    vitrine = open_vitrine()
    try:
        job = vitrine.jobs.get(job_id)
        if job is None:
            fail(f"job {job_id} does not exist")
        print_json(job_line(job) | {"result": job.get("result")})
    finally:
        vitrine.close()


@jobs_app.command("cancel")
def cancel_job(job_id: Annotated[int, typer.Argument(help="The job's id.")]) -> None:
    """Cancel a queued job, or ask a running one to stop."""
    vitrine = open_vitrine()
    try:
        state = vitrine.jobs.cancel(job_id)
        if state is None:
            fail(f"job {job_id} does not exist")
        typer.echo(f"job {job_id}: {state}")
    finally:
        vitrine.close()


@jobs_app.command("run")
def run_jobs() -> None:
    """Run the queued jobs here (when no server runs them)."""
    vitrine = open_vitrine()
    try:
        print_json([job_line(j) | {"result": j.get("result")} for j in run_queued_jobs(vitrine)])
    finally:
        vitrine.close()


def label_catalog(
    fields: Annotated[
        str | None, typer.Option(help="Comma-separated fields (default: every active model's).")
    ] = None,
    relabel: Annotated[
        bool, typer.Option("--relabel", help="Label again what the active version labelled.")
    ] = False,
) -> None:
    """Label every product that has no value of its own with the active models."""
    vitrine = open_vitrine()
    try:
        job = vitrine.label_catalog(parse_fields(fields) if fields else None, relabel)
        done = run_queued_jobs(vitrine)
        final = next((j for j in done if j["id"] == job["id"]), None)
        final = final or vitrine.jobs.get(job["id"]) or job
        print_json(job_line(final) | {"result": final.get("result")})
    finally:
        vitrine.close()
