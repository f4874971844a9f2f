"""Leader election: one process runs the background duties; another takes over."""

from __future__ import annotations

from pathlib import Path

from vitrine.cluster.leader import Duty, FileLock, Leadership


class Recorder:
    def __init__(self) -> None:
        self.events: list[str] = []

    def duty(self, name: str) -> Duty:
        return Duty(
            name,
            lambda: self.events.append(f"start {name}"),
            lambda: self.events.append(f"stop {name}"),
        )


def test_one_leader_and_failover(tmp_path: Path) -> None:
    first, second = Recorder(), Recorder()
    lock_path = tmp_path / "vitrine.db.leader"
    a = Leadership(FileLock(lock_path), [first.duty("imports"), first.duty("retrain")], retry_s=60)
    b = Leadership(FileLock(lock_path), [second.duty("imports")], retry_s=60)
    a.start()
    b.start()
    try:
        assert a.leading and not b.leading
        assert first.events == ["start imports", "start retrain"] and second.events == []
        b.step()  # still held by a
        assert not b.leading
        a.stop()  # duties stop in reverse order, then the lock is released
        assert first.events[2:] == ["stop retrain", "stop imports"]
        b.step()
        assert b.leading and second.events == ["start imports"]
    finally:
        a.stop()
        b.stop()
    assert second.events == ["start imports", "stop imports"]


def test_a_broken_duty_does_not_keep_the_others_down(tmp_path: Path) -> None:
    recorder = Recorder()

    def broken() -> None:
        raise RuntimeError("cannot start")

    leader = Leadership(
        FileLock(tmp_path / "lock"),
        [Duty("broken", broken, lambda: None), recorder.duty("imports")],
        retry_s=60,
    )
    leader.start()
    try:
        assert leader.leading and recorder.events == ["start imports"]
    finally:
        leader.stop()
    assert recorder.events == ["start imports", "stop imports"]


class FlakyLock(FileLock):
    """A lock whose connection can be lost, as a database's can."""

    lost = False

    def still_held(self) -> bool:
        return not self.lost and super().still_held()


def test_losing_the_lock_stops_the_duties(tmp_path: Path) -> None:
    recorder = Recorder()
    lock = FlakyLock(tmp_path / "lock")
    leader = Leadership(lock, [recorder.duty("imports")], retry_s=60)
    leader.start()
    try:
        lock.lost = True
        leader.step()
        assert not leader.leading and recorder.events == ["start imports", "stop imports"]
        lock.lost = False
        leader.step()  # the lock was released on resigning: it can be taken again
        assert leader.leading
    finally:
        leader.stop()
