"""Micro-batching of CNN calls: concurrent requests share one model call.

Requests arriving within ``max_wait`` seconds of the first (or until ``max_batch`` are
waiting) are embedded together. One request alone waits at most ``max_wait``; under
load the model runs on fuller batches and throughput rises without hurting latency.
While tracing, a batch's span continues the first request's trace and links the others.
"""

from __future__ import annotations

import queue
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field

from opentelemetry.context import Context

from vitrine import tracing
from vitrine.vision.analyzer import ImageAnalysis, PreparedImage
from vitrine.worker import BackgroundWorker


@dataclass
class _Request:
    images: Sequence[PreparedImage]
    future: Future[list[ImageAnalysis]]
    trace: Context | None = None  # the submitter's trace context (None: not tracing)
    queued: float = field(default_factory=time.monotonic)


class MicroBatcher:
    """Runs ``complete`` on batches gathered from many threads; thread-safe."""

    def __init__(
        self,
        complete: Callable[[Sequence[PreparedImage]], list[ImageAnalysis]],
        max_batch: int = 32,
        max_wait: float = 0.005,
        on_batch: Callable[[int], None] | None = None,
        on_timing: Callable[[float], None] | None = None,
    ) -> None:
        self._complete = complete
        self.max_batch = max_batch
        self.max_wait = max_wait
        self._on_batch = on_batch
        self._on_timing = on_timing
        self._queue: queue.Queue[_Request | None] = queue.Queue()
        self._closed = False
        self._worker = BackgroundWorker("vitrine-batcher", self._next_batch, interval=0)
        self._worker.start()

    def submit(self, images: Sequence[PreparedImage]) -> Future[list[ImageAnalysis]]:
        if self._closed:
            raise RuntimeError("the batcher is closed")
        future: Future[list[ImageAnalysis]] = Future()
        if not images:
            future.set_result([])
            return future
        self._queue.put(_Request(images, future, tracing.current_context()))
        return future

    def analyze(self, images: Sequence[PreparedImage]) -> list[ImageAnalysis]:
        return self.submit(images).result()

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._queue.put(None)  # wakes the worker waiting for the next request
            self._worker.stop(timeout=5)

    def _next_batch(self) -> float:
        """Wait for a request, gather others for up to ``max_wait``, run them as one."""
        first = self._queue.get()
        if first is None:  # closing: leave the marker for the round that sees the stop
            self._queue.put(None)
            return 0
        batch = [first]
        size = len(first.images)
        deadline = time.monotonic() + self.max_wait
        while size < self.max_batch:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            try:
                nxt = self._queue.get(timeout=remaining)
            except queue.Empty:
                break
            if nxt is None:
                self._queue.put(None)
                break
            batch.append(nxt)
            size += len(nxt.images)
        self._process(batch)
        return 0

    def _process(self, batch: list[_Request]) -> None:
        images = [img for request in batch for img in request.images]
        started = time.perf_counter()
        try:
            with tracing.span(
                "cnn.batch",
                {
                    "vitrine.cnn.batch_size": len(images),
                    "vitrine.cnn.requests": len(batch),
                    "vitrine.cnn.queued_ms": (time.monotonic() - batch[0].queued) * 1000,
                },
                parent=batch[0].trace,
                links=[request.trace for request in batch[1:]],
            ):
                results = self._complete(images)
        except Exception as exc:  # every waiting request learns of the failure
            for request in batch:
                request.future.set_exception(exc)
            return
        if self._on_batch is not None:
            self._on_batch(len(images))
        if self._on_timing is not None:
            self._on_timing(time.perf_counter() - started)
        start = 0
        for request in batch:
            n = len(request.images)
            request.future.set_result(results[start : start + n])
            start += n
