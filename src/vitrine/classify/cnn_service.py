"""The CNN's versions: which one serves, the fine-tuned ones on disk, and the jobs that
fine-tune one and switch the service to one (:mod:`vitrine.jobs.cnn_jobs` runs them)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from vitrine.classify.finetune.export import list_finetuned
from vitrine.cluster.job_queue import FINETUNE_CNN, SWITCH_CNN, JobQueue

RECORD_KEYS = (
    "version",
    "base_version",
    "created_at",
    "method",
    "input_size",
    "device",
    "train_seconds",
    "stopped",
    "products",
)


class UnknownCnnVersion(LookupError):
    """No CNN of that version exists here."""


class CnnService:
    """Lists CNN versions and queues the fine-tuning and switch jobs."""

    def __init__(
        self,
        model_dir: Path,
        jobs: JobQueue,
        in_service: Callable[[], str],
        check: Callable[[str], None],
    ) -> None:
        self.model_dir = model_dir
        self.jobs = jobs
        self._in_service = in_service
        self._check = check  # raises ValueError / FileNotFoundError for a bad version

    def versions(self) -> dict[str, Any]:
        """The version in service and every fine-tuned version, newest first."""
        current = self._in_service()
        rows = []
        for record in list_finetuned(self.model_dir):
            row = {k: record.get(k) for k in RECORD_KEYS}
            row["fields"] = sorted(record.get("fields") or {})
            metrics = record.get("metrics") or {}
            row["evaluation_accuracy"] = metrics.get("evaluation_accuracy") or {}
            row["in_service"] = record["version"] == current
            rows.append(row)
        return {"in_service": current, "versions": rows}

    def finetune(self, params: dict[str, Any], by: str | None) -> dict[str, Any]:
        return self.jobs.submit(FINETUNE_CNN, params, by)

    def switch(self, version: str, by: str | None) -> dict[str, Any]:
        """Queue the switch to ``version``; raises :class:`UnknownCnnVersion` when no such
        version can be loaded here."""
        try:
            self._check(version)
        except (ValueError, FileNotFoundError) as exc:
            raise UnknownCnnVersion(str(exc)) from exc
        return self.jobs.submit(SWITCH_CNN, {"version": version}, by)
