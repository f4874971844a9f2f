"""The background worker: rounds, waits, wake-ups, failures and stopping."""

from __future__ import annotations

import threading
import time

from vitrine.worker import BackgroundWorker


def wait_for(condition, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_rounds_repeat_and_a_failing_round_does_not_end_the_loop() -> None:
    calls: list[int] = []

    def step() -> float:
        calls.append(len(calls))
        if len(calls) == 2:
            raise RuntimeError("boom")
        return 0.0

    worker = BackgroundWorker("t", step, error_wait=0.01)
    worker.start()
    wait_for(lambda: len(calls) >= 5)
    worker.stop()
    assert not worker.running
    stopped_at = len(calls)
    time.sleep(0.05)
    assert len(calls) == stopped_at  # no round after stop


def test_wake_ends_the_wait_and_wait_first_delays_the_first_round() -> None:
    rounds = threading.Event()
    count = [0]

    def step() -> None:
        count[0] += 1
        rounds.set()

    worker = BackgroundWorker("t", step, interval=60, wait_first=True)
    worker.start()
    assert not rounds.wait(0.1)  # waiting its first interval
    worker.wake()
    assert rounds.wait(2)
    rounds.clear()
    worker.wake()
    assert rounds.wait(2)
    assert count[0] == 2
    started = time.monotonic()
    worker.stop()
    assert time.monotonic() - started < 2  # the stop ends the 60 s wait


def test_once_and_on_stop() -> None:
    done: list[str] = []
    worker = BackgroundWorker(
        "t", lambda: done.append("round"), once=True, on_stop=lambda: done.append("stop")
    )
    worker.start()
    wait_for(lambda: done == ["round", "stop"])
    worker.stop()
    assert done == ["round", "stop"]


def test_sleep_inside_a_step_returns_true_when_stopping() -> None:
    seen: list[bool] = []
    worker: BackgroundWorker

    def step() -> float:
        seen.append(worker.sleep(30))
        return 0

    worker = BackgroundWorker("t", step)
    worker.start()
    time.sleep(0.05)
    worker.stop()
    assert seen and seen[-1] is True
