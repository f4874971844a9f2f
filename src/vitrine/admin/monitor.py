"""What the Monitoring page shows: snapshots of the service's own metrics over time.

A background thread samples the Prometheus registry, the process (CPU, memory), the
import jobs and the index every ``interval`` seconds into a ring buffer; rates and
latency percentiles are computed between snapshots, from the same histograms that
``/metrics`` exports (percentiles interpolated within buckets, as Prometheus'
``histogram_quantile`` does). Every ``recall_minutes`` it also checks the recall of the
approximate index against exact search.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import psutil
from prometheus_client import CollectorRegistry

from vitrine.index.health import RecallCheck, check_recall
from vitrine.jobs.import_job_store import ImportJobStore
from vitrine.runtime import Runtime
from vitrine.worker import BackgroundWorker

log = logging.getLogger(__name__)
LATENCY = "vitrine_http_request_seconds"
REQUESTS = "vitrine_http_requests_total"
INFERENCE = "vitrine_embedding_seconds"
IMAGES = "vitrine_images_processed_total"


@dataclass
class Histogram:
    """Cumulative bucket counts of one histogram series."""

    bounds: list[float] = field(default_factory=list)
    counts: list[float] = field(default_factory=list)
    total: float = 0.0
    sum: float = 0.0

    def minus(self, older: Histogram | None) -> Histogram:
        if older is None or older.bounds != self.bounds:
            return self
        return Histogram(
            self.bounds,
            [a - b for a, b in zip(self.counts, older.counts, strict=True)],
            self.total - older.total,
            self.sum - older.sum,
        )

    def quantile(self, q: float) -> float | None:
        """The q-quantile in seconds, linearly interpolated within its bucket."""
        if self.total <= 0:
            return None
        rank = q * self.total
        lower, below = 0.0, 0.0
        for bound, count in zip(self.bounds, self.counts, strict=True):
            if count >= rank:
                if bound == float("inf"):
                    return lower  # beyond the last finite bucket: its lower edge
                width = count - below
                return lower + (bound - lower) * ((rank - below) / width if width else 1.0)
            lower, below = bound, count
        return lower


@dataclass
class Snapshot:
    """One sample of the monitor."""

    at: float
    requests: dict[tuple[str, str], float]  # (route, status) -> count
    latency: dict[str, Histogram]  # "METHOD route" -> histogram
    inference: Histogram
    images: float
    cpu_percent: float
    rss_bytes: int
    index_size: int
    imports_queued: int
    imports_running: int
    imported_total: int


def read_registry(registry: CollectorRegistry) -> dict[str, Any]:
    requests: dict[tuple[str, str], float] = {}
    latency: dict[str, Histogram] = {}
    inference = Histogram()
    images = 0.0
    for family in registry.collect():
        for s in family.samples:
            if s.name == REQUESTS:
                key = (s.labels["route"], s.labels["status"])
                requests[key] = requests.get(key, 0.0) + s.value
            elif s.name.startswith(LATENCY):
                h = latency.setdefault(f"{s.labels['method']} {s.labels['route']}", Histogram())
                _add_sample(h, s.name.removeprefix(LATENCY), s.labels, s.value)
            elif s.name.startswith(INFERENCE):
                _add_sample(inference, s.name.removeprefix(INFERENCE), s.labels, s.value)
            elif s.name == IMAGES:
                images = s.value
    return {"requests": requests, "latency": latency, "inference": inference, "images": images}


def _add_sample(h: Histogram, suffix: str, labels: dict[str, str], value: float) -> None:
    if suffix == "_bucket":
        h.bounds.append(float(labels["le"]))
        h.counts.append(value)
    elif suffix == "_count":
        h.total = value
    elif suffix == "_sum":
        h.sum = value


class SystemMonitor:
    """Samples the process and the service every few seconds for the monitoring page."""

    def __init__(
        self,
        vitrine: Runtime,
        registry: CollectorRegistry,
        interval: float = 5.0,
        keep: int = 720,
        recall_minutes: float = 10.0,
    ) -> None:
        self.vitrine = vitrine
        self.import_jobs = ImportJobStore(vitrine.engine)
        self.registry = registry
        self.interval = interval
        self.recall_period = recall_minutes * 60
        self.snapshots: deque[Snapshot] = deque(maxlen=keep)
        self.recall: RecallCheck | None = None
        self.recall_history: deque[RecallCheck] = deque(maxlen=200)
        self._process = psutil.Process()
        self._process.cpu_percent(None)  # the first call only starts the measurement
        self._lock = threading.Lock()
        self._worker = BackgroundWorker(
            "vitrine-monitor", self._round, interval=self.interval, wait_first=True, join_timeout=5
        )
        self._next_recall = time.monotonic() + min(60.0, self.recall_period)

    # -- lifecycle ------------------------------------------------------------------

    def start(self) -> None:
        self.sample()
        self._worker.start()

    def stop(self) -> None:
        self._worker.stop()

    def _round(self) -> None:
        self.sample()
        if self.recall_period > 0 and time.monotonic() >= self._next_recall:
            self.run_recall_check()

    # -- sampling -------------------------------------------------------------------

    def _index_size(self) -> int:
        # Only once the index is open: the monitor must not load it by itself.
        search = self.vitrine.opened().get("search")
        return len(search) if search is not None else 0

    def _imports(self) -> tuple[int, int, int]:
        by_status = self.import_jobs.status_counts()
        processed = sum(p for _, p in by_status.values())
        return by_status.get("queued", (0, 0))[0], by_status.get("running", (0, 0))[0], processed

    def sample(self) -> Snapshot:
        metrics = read_registry(self.registry)
        queued, running, processed = self._imports()
        with self._process.oneshot():
            cpu = self._process.cpu_percent(None)
            rss = self._process.memory_info().rss
        snap = Snapshot(
            at=time.time(),
            requests=metrics["requests"],
            latency=metrics["latency"],
            inference=metrics["inference"],
            images=metrics["images"],
            cpu_percent=cpu,
            rss_bytes=rss,
            index_size=self._index_size(),
            imports_queued=queued,
            imports_running=running,
            imported_total=processed,
        )
        with self._lock:
            self.snapshots.append(snap)
        return snap

    def run_recall_check(self, sample: int = 50) -> RecallCheck | None:
        self._next_recall = time.monotonic() + self.recall_period
        search = self.vitrine.opened().get("search")
        if search is None:
            return None
        result = check_recall(search.vectors, sample=sample, seed=int(time.time()))
        with self._lock:
            self.recall = result
            self.recall_history.append(result)
        return result

    # -- views ----------------------------------------------------------------------

    def _window(self, seconds: float) -> tuple[Snapshot | None, Snapshot | None]:
        with self._lock:
            if not self.snapshots:
                return None, None
            last = self.snapshots[-1]
            older = next(
                (s for s in self.snapshots if s.at >= last.at - seconds), self.snapshots[0]
            )
        return older, last

    def endpoints(self, seconds: float = 300.0) -> list[dict[str, Any]]:
        """Per endpoint over the last ``seconds``: rate, error rate, p50 / p95 / p99 in ms."""
        older, last = self._window(seconds)
        if last is None:
            return []
        base = None if older is last else older  # one snapshot only: since the start
        span = last.at - base.at if base is not None else None
        rows = []
        for key, hist in sorted(last.latency.items()):
            delta = hist.minus(base.latency.get(key) if base is not None else None)
            if delta.total <= 0:
                continue
            route = key.split(" ", 1)[1]
            errors = _errors(last, route) - (_errors(base, route) if base is not None else 0)
            answered = _count(last, route) - (_count(base, route) if base is not None else 0)
            rows.append(
                {
                    "endpoint": key,
                    "requests": int(delta.total),
                    "rate": delta.total / span if span else None,
                    "error_rate": errors / answered if answered else 0.0,
                    "p50": _ms(delta.quantile(0.5)),
                    "p95": _ms(delta.quantile(0.95)),
                    "p99": _ms(delta.quantile(0.99)),
                }
            )
        rows.sort(key=lambda r: -r["requests"])
        return rows

    def series(self, minutes: float = 30.0) -> dict[str, list[Any]]:
        """Charts: per sample interval, request rate, error rate, p95, CPU, memory, imports."""
        with self._lock:
            snaps = [s for s in self.snapshots if s.at >= time.time() - minutes * 60]
        out: dict[str, list[Any]] = {
            k: []
            for k in (
                "t",
                "rps",
                "errors",
                "p95_ms",
                "inference_ms",
                "cpu",
                "rss_mb",
                "index",
                "imports_per_s",
                "queued",
            )
        }
        for prev, cur in itertools.pairwise(snaps):
            span = max(cur.at - prev.at, 1e-9)
            total = sum(cur.requests.values()) - sum(prev.requests.values())
            errors = _errors(cur, None) - _errors(prev, None)
            merged_now, merged_then = _merged(cur), _merged(prev)
            p95 = merged_now.minus(merged_then).quantile(0.95)
            inference = cur.inference.minus(prev.inference)
            out["t"].append(time.strftime("%H:%M:%S", time.localtime(cur.at)))
            out["rps"].append(round(total / span, 3))
            out["errors"].append(round(errors / total, 4) if total else 0.0)
            out["p95_ms"].append(_ms(p95))
            out["inference_ms"].append(
                round(1000 * inference.sum / inference.total, 2) if inference.total else None
            )
            out["cpu"].append(round(cur.cpu_percent, 1))
            out["rss_mb"].append(round(cur.rss_bytes / 2**20, 1))
            out["index"].append(cur.index_size)
            out["imports_per_s"].append(
                round(max(0, cur.imported_total - prev.imported_total) / span, 2)
            )
            out["queued"].append(cur.imports_queued + cur.imports_running)
        return out

    def latest(self) -> Snapshot | None:
        with self._lock:
            return self.snapshots[-1] if self.snapshots else None

    def inference(self) -> dict[str, float | None]:
        last = self.latest()
        h = last.inference if last is not None else Histogram()
        return {
            "calls": h.total,
            "mean_ms": round(1000 * h.sum / h.total, 2) if h.total else None,
            "p50_ms": _ms(h.quantile(0.5)),
            "p95_ms": _ms(h.quantile(0.95)),
        }


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 2)


def _count(snap: Snapshot, route: str) -> float:
    return sum(v for (r, _), v in snap.requests.items() if r == route)


def _errors(snap: Snapshot, route: str | None) -> float:
    return sum(
        v
        for (r, status), v in snap.requests.items()
        if status.startswith("5") and (route is None or r == route)
    )


def _merged(snap: Snapshot) -> Histogram:
    """All endpoints' latency histograms added together."""
    merged = Histogram()
    for h in snap.latency.values():
        if not merged.bounds:
            merged = Histogram(list(h.bounds), list(h.counts), h.total, h.sum)
        elif merged.bounds == h.bounds:
            merged.counts = [a + b for a, b in zip(merged.counts, h.counts, strict=True)]
            merged.total += h.total
            merged.sum += h.sum
    return merged
