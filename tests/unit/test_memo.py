"""The memo of costly aggregates: kept while the version holds and the time lives."""

from __future__ import annotations

import pytest

from vitrine.memo import Memo


def test_a_value_is_kept_until_its_version_changes() -> None:
    memo = Memo(ttl_seconds=60)
    calls: list[int] = []

    def compute() -> int:
        calls.append(1)
        return len(calls)

    assert memo.get("k", 1, compute) == 1
    assert memo.get("k", 1, compute) == 1  # kept
    assert memo.get("other", 1, compute) == 2  # keys apart
    assert memo.get("k", 2, compute) == 3  # a new version
    memo.clear()
    assert memo.get("k", 2, compute) == 4


def test_a_value_expires(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [100.0]
    monkeypatch.setattr("vitrine.memo.time.monotonic", lambda: now[0])
    memo = Memo(ttl_seconds=10)
    assert memo.get("k", 0, lambda: "old") == "old"
    now[0] += 9
    assert memo.get("k", 0, lambda: "new") == "old"
    now[0] += 2
    assert memo.get("k", 0, lambda: "new") == "new"
