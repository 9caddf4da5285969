"""The scheduler: one cycle at a time, requests coalesce and are never lost, backoff while offline, the change
feed triggers cycles, and shutdown leaves no thread behind. The engine here is a small stand-in (only the
three calls the scheduler makes); the feed is a callable with the ``wait_for_changes`` shape."""

from __future__ import annotations

import threading
import time

import pytest
from daemon_helpers import wait_for

from oaiod.daemon.scheduler import ScheduleSettings, SyncScheduler
from oaiod.errors import FailureKind, OaiodError
from oaiod.http import AuthError, TransportError
from oaiod.storage.errors import StoragePermissionDenied, TransientStorageError


class Offline(OaiodError):
    kind = FailureKind.TRANSIENT


class Engine:
    def __init__(self, cycle_time: float = 0.0) -> None:
        self.cycle_time = cycle_time
        self.cycles = 0
        self.running = 0
        self.max_running = 0
        self.fail: BaseException | None = None
        self.rescans = self.gcs = 0
        self.lock = threading.Lock()

    def sync_cycle(self) -> int:
        with self.lock:
            self.running += 1
            self.max_running = max(self.max_running, self.running)
        try:
            time.sleep(self.cycle_time)
            if self.fail is not None:
                raise self.fail
            self.cycles += 1
            return self.cycles
        finally:
            with self.lock:
                self.running -= 1

    def rescan(self) -> None:
        self.rescans += 1

    def gc(self) -> None:
        self.gcs += 1


SLOW = ScheduleSettings(interval=3600, rescan_interval=3600, gc_interval=3600, backoff_base=0.2, backoff_max=1.0)


def oaiod_threads() -> list[str]:
    return sorted(t.name for t in threading.enumerate() if t is not threading.main_thread() and t.is_alive())


def test_requests_during_a_cycle_coalesce_into_one_more_cycle() -> None:
    engine = Engine(cycle_time=0.5)
    scheduler = SyncScheduler(engine, SLOW)
    scheduler.start(initial_cycle=False)
    try:
        scheduler.trigger("first")
        wait_for(lambda: engine.running, what="a running cycle")
        for i in range(30):
            scheduler.trigger(f"burst {i}")
        outcome = scheduler.wait_for_cycle(2, 60)
        assert outcome is not None and outcome.error is None
        time.sleep(1.0)  # would show a third cycle if requests were not coalesced
        assert engine.cycles == 2
        assert engine.max_running == 1
    finally:
        scheduler.shutdown()


def test_a_request_is_never_lost_at_the_end_of_a_cycle() -> None:
    engine = Engine(cycle_time=0.01)
    scheduler = SyncScheduler(engine, SLOW)
    scheduler.start(initial_cycle=False)
    try:
        for _ in range(200):  # requests land at every point of a cycle's life
            target = scheduler.trigger("race")
            assert scheduler.wait_for_cycle(target, 60) is not None
        assert engine.max_running == 1
    finally:
        scheduler.shutdown()


def test_backoff_while_offline_and_reset_on_success() -> None:
    engine = Engine()
    engine.fail = Offline("no route to host")
    outcomes = []
    scheduler = SyncScheduler(engine, SLOW, on_cycle=outcomes.append)
    scheduler.start()
    try:
        wait_for(lambda: scheduler.failures >= 3, what="three failed cycles")  # retried by the backoff alone
        assert outcomes[0].transient
        assert scheduler.backoff_until > time.time() - 5
        started = scheduler.started_cycles
        scheduler.trigger("watcher")  # deferred while backing off
        assert scheduler.started_cycles in (started, started + 1)
        engine.fail = None
        target = scheduler.trigger("ctl sync", force=True)
        outcome = scheduler.wait_for_cycle(target, 60)
        wait_for(lambda: scheduler.last and scheduler.last.error is None, what="a good cycle")
        assert outcome is not None
        assert scheduler.failures == 0 and scheduler.backoff_until == 0.0
        assert scheduler.last_success is not None
    finally:
        scheduler.shutdown()


def test_permanent_errors_do_not_back_off_or_kill_the_scheduler() -> None:
    engine = Engine()
    engine.fail = ValueError("a bug")
    scheduler = SyncScheduler(engine, SLOW)
    scheduler.start()
    try:
        first = scheduler.wait_for_cycle(1, 60)
        assert first is not None and isinstance(first.error, ValueError) and not first.transient
        assert scheduler.failures == 0
        engine.fail = None
        assert scheduler.wait_for_cycle(scheduler.trigger("again"), 60).error is None
    finally:
        scheduler.shutdown()


@pytest.mark.parametrize(
    "outage",
    [
        TransientStorageError("GET 'o1/s/a.txt': storage host unreachable", key="o1/s/a.txt"),
        TransportError("GET https://hub.example/api/stampz/: connection refused", request_sent=False),
    ],
    ids=["storage host", "server"],
)
def test_a_whole_cycle_outage_backs_off_whether_server_or_storage(outage: OaiodError) -> None:
    """One "retry may help" for every boundary: a storage host that is down backs off like an unreachable server."""
    engine = Engine()
    engine.fail = outage
    scheduler = SyncScheduler(engine, SLOW)
    scheduler.start()
    try:
        wait_for(lambda: scheduler.failures >= 2, what="two failed cycles, the second one by the backoff alone")
        assert scheduler.last is not None and scheduler.last.transient
        assert scheduler.backoff_until > time.time() - 5
    finally:
        scheduler.shutdown()


def test_a_storage_error_that_waits_for_a_change_does_not_count_as_offline() -> None:
    engine = Engine()
    engine.fail = StoragePermissionDenied("PUT 'o1/s/a.txt': 403 read-only bucket", key="o1/s/a.txt")
    scheduler = SyncScheduler(engine, SLOW)
    scheduler.start()
    try:
        first = scheduler.wait_for_cycle(1, 60)
        assert first is not None and first.error is engine.fail and not first.transient
        assert scheduler.failures == 0 and scheduler.backoff_until == 0.0
    finally:
        scheduler.shutdown()


def test_refused_credentials_back_off_without_counting_as_offline() -> None:
    """A wrong password is not tried every interval: it backs off like an outage, but the state is an error."""
    engine = Engine()
    engine.fail = AuthError("POST", "https://hub.example/api/login/", 401, {"detail": "wrong password"})
    scheduler = SyncScheduler(engine, SLOW)
    scheduler.start()
    try:
        wait_for(lambda: scheduler.failures >= 2, what="two refused cycles, the second one by the backoff alone")
        assert scheduler.last is not None and not scheduler.last.transient
        assert scheduler.backoff_until > time.time() - 5
        engine.fail = None
        assert scheduler.wait_for_cycle(scheduler.trigger("ctl sync", force=True), 60).error is None
        assert scheduler.failures == 0 and scheduler.backoff_until == 0.0
    finally:
        scheduler.shutdown()


def test_pause_skips_cycles_until_resume() -> None:
    engine = Engine()
    scheduler = SyncScheduler(engine, SLOW)
    scheduler.start(initial_cycle=False)
    try:
        scheduler.pause()
        scheduler.trigger("watcher")
        time.sleep(0.3)
        assert engine.cycles == 0
        scheduler.resume()
        assert scheduler.wait_for_cycle(1, 60) is not None
    finally:
        scheduler.shutdown()


def test_change_feed_triggers_cycles_and_shutdown_joins_every_thread() -> None:
    before = oaiod_threads()
    engine = Engine()
    released = threading.Event()
    calls: list[str | None] = []

    def feed(since: str | None, timeout: float) -> tuple[bool, str]:
        calls.append(since)
        if len(calls) == 3:
            raise Offline("feed down")  # backs off and goes on
        released.wait(min(timeout, 0.1))
        return len(calls) % 2 == 0, f"cursor{len(calls)}"

    scheduler = SyncScheduler(engine, SLOW, change_feed=feed)
    scheduler.start(initial_cycle=False)
    wait_for(lambda: engine.cycles >= 2, what="cycles started by the feed")
    assert calls[:2] == [None, "cursor1"]
    engine.cycle_time = 0.5
    scheduler.trigger("one more")
    wait_for(lambda: engine.running, what="a running cycle")
    scheduler.shutdown()  # waits for the running cycle, stops APScheduler, joins the feed thread
    assert engine.running == 0
    assert oaiod_threads() == before


def test_submitted_operations_run_between_cycles_in_order_and_fail_on_shutdown() -> None:
    engine = Engine()
    gate = threading.Event()
    engine.sync_cycle_inner = engine.sync_cycle  # type: ignore[attr-defined]
    engine.sync_cycle = lambda: (gate.wait(60), engine.sync_cycle_inner())[1]  # type: ignore[method-assign]
    scheduler = SyncScheduler(engine, SLOW)
    scheduler.start(initial_cycle=False)
    order: list[str] = []
    try:
        assert scheduler.submit("idle", lambda: "done").result(10) == "done"  # no cycle: runs at once
        scheduler.trigger("long")
        wait_for(lambda: scheduler.syncing, what="a running cycle")
        first = scheduler.submit("first", lambda: order.append(f"first during {engine.running} cycles"))
        second = scheduler.submit("second", lambda: 1 / 0)
        third = scheduler.submit("third", lambda: order.append("third"))
        assert not first.done() and scheduler.queued == ["first", "second", "third"]
        gate.set()
        assert third.result(10) is None
        assert order == ["first during 0 cycles", "third"]  # in order, never beside a cycle; a failure stops none
        assert isinstance(second.exception(10), ZeroDivisionError)
        assert scheduler.queued == []
        gate.clear()
        scheduler.trigger("long again")
        wait_for(lambda: scheduler.syncing, what="a running cycle")
        stranded = scheduler.submit("stranded", lambda: order.append("stranded"))
        stopper = threading.Thread(target=scheduler.shutdown)
        stopper.start()
        wait_for(lambda: not scheduler.running, what="shutdown to begin")
        gate.set()
        stopper.join(60)
        assert "daemon is stopping: stranded" in str(stranded.exception(10))
        assert "stranded" not in order
    finally:
        gate.set()
        scheduler.shutdown()


def test_a_health_check_runs_on_its_interval_and_outlives_its_failures() -> None:
    engine = Engine()
    scheduler = SyncScheduler(engine, SLOW)
    calls: list[int] = []

    def check() -> None:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("a failing check is logged and runs again")

    scheduler.add_check("watch-health", check, 0.1)
    scheduler.start(initial_cycle=False)
    try:
        wait_for(lambda: len(calls) >= 3, what="the check to run again after it failed")
    finally:
        scheduler.shutdown()
    done = len(calls)
    time.sleep(0.3)
    assert len(calls) == done  # nothing runs after shutdown


class _JumpingClock:
    """The wall clock of the scheduler module, ``offset`` seconds off the real one (a clock jump cannot be made
    on a shared machine: setting the system clock needs privileges and would move every other process's too)."""

    def __init__(self) -> None:
        self.offset = 0.0
        self.monotonic, self.sleep = time.monotonic, time.sleep

    def time(self) -> float:
        return time.time() + self.offset


def test_a_clock_jump_reschedules_the_periodic_jobs(monkeypatch: pytest.MonkeyPatch) -> None:
    import oaiod.daemon.scheduler as module

    clock = _JumpingClock()
    monkeypatch.setattr(module, "time", clock)
    engine = Engine()
    scheduler = SyncScheduler(engine, SLOW)
    scheduler.start()
    try:
        wait_for(lambda: engine.cycles == 1, what="the first cycle")
        assert not scheduler.check_clock()  # no jump: nothing happens
        clock.offset = -7200.0  # set back two hours
        assert scheduler.check_clock()
        wait_for(lambda: engine.cycles == 2, what="a sync after the jump")
        assert not scheduler.check_clock()  # seen once
        job = scheduler._scheduler.get_job("sync")
        assert job is not None and job.next_run_time.timestamp() < time.time() + SLOW.interval + 60
    finally:
        scheduler.shutdown()


def test_backoff_waits_on_the_monotonic_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    """A clock set forward does not end a backoff early (nor one set back make it last hours)."""
    import oaiod.daemon.scheduler as module

    clock = _JumpingClock()
    monkeypatch.setattr(module, "time", clock)
    engine = Engine()
    engine.fail = Offline("no route to host")
    settings = ScheduleSettings(
        interval=3600, rescan_interval=3600, gc_interval=3600, backoff_base=600, backoff_max=600
    )
    scheduler = SyncScheduler(engine, settings)
    scheduler.start()
    try:
        wait_for(lambda: scheduler.failures == 1, what="a failed cycle")
        clock.offset = 7200.0
        started = scheduler.started_cycles
        scheduler.trigger("watcher")
        time.sleep(0.3)
        assert scheduler.started_cycles == started  # still backing off
        assert scheduler.check_clock()
        assert abs(scheduler.backoff_until - (clock.time() + 600)) < 30  # shown on the new wall clock
        time.sleep(0.3)
        assert scheduler.started_cycles == started
    finally:
        scheduler.shutdown()
