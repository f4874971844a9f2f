"""A small thread-safe memo for aggregates that are costly to compute and change slowly
(the admin UI's facets and histograms): a value is kept until the version it was
computed at changes (e.g. the newest row of its table) or its time to live passes."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable
from typing import Any


class Memo:
    """Values by key, each with the version it was computed at and when."""

    def __init__(self, ttl_seconds: float = 60.0) -> None:
        self.ttl_seconds = ttl_seconds
        self._values: dict[Hashable, tuple[Hashable, float, Any]] = {}
        self._lock = threading.Lock()

    def get(self, key: Hashable, version: Hashable, compute: Callable[[], Any]) -> Any:
        now = time.monotonic()
        with self._lock:
            kept = self._values.get(key)
        if kept is not None and kept[0] == version and now - kept[1] < self.ttl_seconds:
            return kept[2]
        value = compute()  # outside the lock: two racing computations agree anyway
        with self._lock:
            self._values[key] = (version, now, value)
        return value

    def clear(self) -> None:
        with self._lock:
            self._values.clear()
