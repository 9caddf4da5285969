"""When the engine works: periodic and immediate sync cycles, rescans and garbage collection, the change feed.

APScheduler 3 (``BackgroundScheduler``) runs the periodic jobs; the guarantees are ours:

- **One engine operation at a time.** Sync cycles, rescans, gc and queued ctl operations share one lock. A
  sync requested while a cycle runs is not lost: it sets a *pending* flag and the running cycle goes round
  once more (so a burst of requests costs at most one extra cycle).
- **ctl operations between cycles.** :meth:`SyncScheduler.submit` queues an operation that changes the
  engine's state (``ctl add``, ``remove``, ``restore``…); it runs as soon as no cycle runs, before the next
  cycle starts, and its :class:`~concurrent.futures.Future` carries the result. Nobody waits for a long cycle
  unless they ask to.
- **Backoff while offline.** A cycle that fails as a whole with a transient error (``err.transient``: the
  server or a storage host unreachable, a timeout, 429/5xx; :mod:`oaiod.errors`) delays the next
  periodic cycle exponentially (2 s, 4 s … 5 min); immediate triggers from the watcher or the change feed are
  then ignored (their dirty paths stay recorded), an explicit ``ctl sync`` still tries. Success resets it.
  Credentials the server refused (kind ``auth``) back off the same way: nothing changes until they do (``ctl
  reload``), and a login tried every interval would only feed the server's login throttle.
- **Health checks** (:meth:`SyncScheduler.add_check`) run on their own interval beside the engine, e.g. the
  watcher's check that restarts watching a root whose watchdog emitter died.
- **Clean shutdown.** :meth:`SyncScheduler.shutdown` stops the APScheduler threads, waits for the running
  operation to finish and joins the change-feed thread: no thread is left behind. Operations still queued
  fail with :class:`SchedulerStopped`.

The change feed is a callable ``feed(since, timeout) -> (changed, next_since)`` (the hub's long poll, see
docs/hub-api.md); a thread loops on it and triggers a cycle when ``changed``.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol, TypeVar

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler

from oaiod.errors import FailureKind, OaiodError, failure_kind

log = logging.getLogger(__name__)

ChangeFeed = Callable[[str | None, float], tuple[bool, str | None]]
FEED_TIMEOUT = 25.0  #: seconds of one long poll; shutdown waits at most this long for the feed thread
BACKOFF_BASE = 2.0
BACKOFF_MAX = 300.0
T = TypeVar("T")


class Engine(Protocol):
    """What the scheduler needs of :class:`oaiod.engine.SyncEngine`."""

    def sync_cycle(self) -> Any: ...
    def rescan(self) -> Any: ...
    def gc(self) -> Any: ...


CLOCK_JUMP = 30.0  #: seconds the wall clock may drift from the monotonic one between two looks before it "jumped"


@dataclass(frozen=True)
class ScheduleSettings:
    interval: float = 30.0
    rescan_interval: float = 600.0
    gc_interval: float = 3600.0
    backoff_base: float = BACKOFF_BASE
    backoff_max: float = BACKOFF_MAX
    feed_timeout: float = FEED_TIMEOUT
    ctl_prefix: str = "oaiod ctl"  #: how to run ctl for this daemon, in hints (``oaiod --config FILE ctl``)
    describe: Callable[[BaseException], str] = str  #: a failure as one line for people (the daemon's error_text)


@dataclass(frozen=True)
class CycleOutcome:
    """What the last finished cycle did: its number, when it ended, its report or its error."""

    number: int
    finished: float  #: time.time()
    report: Any = None
    error: BaseException | None = None

    @property
    def transient(self) -> bool:
        """The cycle failed as a whole in a way that may pass (server or storage host unreachable): back off."""
        return self.error is not None and _is_transient(self.error)


class SchedulerStopped(OaiodError):
    """A queued operation did not run: the daemon is stopping (or reloading)."""


def _is_transient(exc: BaseException) -> bool:
    """``err.transient`` of :mod:`oaiod.errors`, the same for every boundary (HTTP and storage host alike)."""
    return isinstance(exc, OaiodError) and exc.transient


class SyncScheduler:
    """Runs the engine's sync cycles, rescans and gc; thread-safe; start once, shut down once."""

    def __init__(
        self,
        engine: Engine,
        settings: ScheduleSettings,
        change_feed: ChangeFeed | None = None,
        on_cycle: Callable[[CycleOutcome], None] | None = None,
    ) -> None:
        self.engine = engine
        self.settings = settings
        self._feed = change_feed
        self._on_cycle = on_cycle
        self._work_lock = threading.Lock()  # one engine operation at a time
        self._cycle_lock = threading.Lock()  # held by the thread running sync cycles
        self._pending = threading.Event()
        self._stopping = threading.Event()
        self._paused = False
        self._state = threading.Condition()  # guards the counters below and wakes waiters
        self._started_cycles = 0
        self._rescan_queued = False
        self._queued: collections.deque[tuple[str, Callable[[], Any], Future[Any]]] = collections.deque()
        self._queue_job_added = False
        self.last: CycleOutcome | None = None
        self.last_success: float | None = None
        self.failures = 0
        self.failing_since: float | None = None  #: wall clock of the first failed cycle in a row (``ctl status``)
        self.backoff_until = 0.0  #: wall clock, for ``ctl status``; the wait itself is on the monotonic clock
        self._backoff_deadline = 0.0  # time.monotonic()
        self._clock = (time.time(), time.monotonic())  # the last look at both clocks (check_clock)
        self._scheduler = BackgroundScheduler(
            executors={"default": ThreadPoolExecutor(max_workers=3)},
            job_defaults={"max_instances": 1, "coalesce": True, "misfire_grace_time": None},
            timezone="UTC",
        )
        self._feed_thread: threading.Thread | None = None

    # -- life cycle -------------------------------------------------------------------------------------

    def start(self, *, initial_cycle: bool = True) -> None:
        """Start the jobs (and a first cycle at once unless ``initial_cycle`` is False) and the feed thread."""
        now = datetime.now().astimezone()
        first = now if initial_cycle else now + timedelta(seconds=self.settings.interval)
        self._scheduler.add_job(
            self._sync_job, "interval", seconds=self.settings.interval, id="sync", next_run_time=first
        )
        self._scheduler.add_job(self._rescan_job, "interval", seconds=self.settings.rescan_interval, id="rescan")
        self._scheduler.add_job(self._gc_job, "interval", seconds=self.settings.gc_interval, id="gc")
        self._scheduler.start()
        if self._feed is not None:
            self._feed_thread = threading.Thread(target=self._feed_loop, name="oaiod-change-feed", daemon=True)
            self._feed_thread.start()

    def shutdown(self, *, feed_join_timeout: float | None = None) -> None:
        """Stop scheduling, wait for the running operation, join the feed thread; idempotent."""
        self._stopping.set()
        with self._state:
            self._state.notify_all()
        if self._scheduler.running:
            self._scheduler.shutdown(wait=True)
        self._fail_queued()
        if self._feed_thread is not None:
            self._feed_thread.join(self.settings.feed_timeout + 5 if feed_join_timeout is None else feed_join_timeout)
            if self._feed_thread.is_alive():
                log.info("change feed still in a long poll; it ends by itself when the server answers")

    @property
    def running(self) -> bool:
        return self._scheduler.running and not self._stopping.is_set()

    # -- requests ----------------------------------------------------------------------------------------

    def trigger(self, reason: str, *, force: bool = False) -> int:
        """Ask for a cycle as soon as possible; returns the number the requested cycle will at least have.

        Without ``force`` the request is dropped while paused or backing off after a transient error.
        """
        with self._state:
            target = self._started_cycles + 1
        if self._stopping.is_set() or (not force and (self._paused or time.monotonic() < self._backoff_deadline)):
            log.debug("sync request (%s) deferred: %s", reason, "paused" if self._paused else "backing off")
            return target
        if force:
            self.backoff_until = self._backoff_deadline = 0.0
        log.debug("sync requested: %s", reason)
        self._pending.set()
        if not self._cycle_lock.locked():  # else the running cycle sees the pending flag and goes round again
            # a fresh job id each time: APScheduler would skip (and warn about) a second instance of one id
            self._scheduler.add_job(self._sync_job)
        return target

    def check_clock(self) -> bool:
        """Notice the wall clock jumping (set by hand, NTP stepping it, a resumed VM): APScheduler keeps its next
        run times on the wall clock, so after a jump back of an hour the periodic sync, rescan and gc would wait an
        hour. Each job is then due after its interval from now, and a sync runs at once. Called about once a
        second by the daemon's main loop; True when a jump was seen."""
        wall, mono = time.time(), time.monotonic()
        (last_wall, last_mono), self._clock = self._clock, (wall, mono)
        jump = (wall - last_wall) - (mono - last_mono)
        if abs(jump) < CLOCK_JUMP or not self._scheduler.running:
            return False
        log.warning("the clock jumped %+.0f s; rescheduling the periodic sync, rescan and gc", jump)
        now = datetime.now().astimezone()
        backing_off = max(0.0, self._backoff_deadline - mono)  # its end keeps its place on the monotonic clock
        intervals = {
            "sync": backing_off or self.settings.interval,
            "rescan": self.settings.rescan_interval,
            "gc": self.settings.gc_interval,
        }
        for job_id, seconds in intervals.items():
            if self._scheduler.get_job(job_id) is not None:
                self._scheduler.modify_job(job_id, next_run_time=now + timedelta(seconds=seconds))
        if backing_off:
            self.backoff_until = wall + backing_off
        self.trigger("the clock jumped")
        return True

    def pause(self) -> None:
        self._paused = True
        log.info("sync paused")

    def resume(self) -> None:
        self._paused = False
        log.info("sync resumed")
        self.trigger("resume", force=True)

    @property
    def paused(self) -> bool:
        return self._paused

    @property
    def syncing(self) -> bool:
        return self._cycle_lock.locked()

    @property
    def started_cycles(self) -> int:
        return self._started_cycles

    def wait_for_cycle(self, number: int, timeout: float) -> CycleOutcome | None:
        """The outcome of a cycle numbered ``>= number`` once it finished; None on timeout or shutdown."""
        deadline = time.monotonic() + timeout
        with self._state:
            while not (self.last is not None and self.last.number >= number):
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self._stopping.is_set():
                    return None
                self._state.wait(remaining)
            return self.last

    def run_exclusive(self, what: str, func: Callable[[], T]) -> T:
        """Run ``func`` now in this thread, once no cycle, rescan or gc runs (waits for a running cycle)."""
        with self._work_lock:
            log.debug("running %s exclusively", what)
            return func()

    def submit(self, what: str, func: Callable[[], Any]) -> Future[Any]:
        """Queue ``func`` to run while no cycle, rescan or gc runs — at once when idle, else when the running
        cycle ends (before the next one). Operations run in the order submitted; the future carries the result
        or the exception (:class:`SchedulerStopped` when the scheduler shut down first)."""
        future: Future[Any] = Future()
        with self._state:
            if self._stopping.is_set():
                future.set_exception(SchedulerStopped(f"not done, the daemon is stopping: {what}"))
                return future
            self._queued.append((what, func, future))
            add_job, self._queue_job_added = not self._queue_job_added, True
        if add_job:
            self._scheduler.add_job(self._queue_job)
        return future

    @property
    def queued(self) -> list[str]:
        """What :meth:`submit` queued and has not started yet."""
        with self._state:
            return [what for what, _func, _future in self._queued]

    def _queue_job(self) -> None:
        with self._work_lock:
            with self._state:
                self._queue_job_added = False
            self._run_queued()

    def _run_queued(self) -> None:
        """Run every queued operation; the caller holds the work lock."""
        while True:
            with self._state:
                if not self._queued or self._stopping.is_set():  # shutdown fails what is left
                    return
                what, func, future = self._queued.popleft()
            if not future.set_running_or_notify_cancel():
                continue
            log.debug("running queued %s", what)
            try:
                future.set_result(func())
            except BaseException as exc:  # handed to whoever waits for it; logged for whoever does not
                log.error("%s failed: %s", what, exc, exc_info=not isinstance(exc, OaiodError))
                future.set_exception(exc)

    def _fail_queued(self) -> None:
        with self._state:
            queued, self._queued = list(self._queued), collections.deque()
        for what, _func, future in queued:
            if future.set_running_or_notify_cancel():
                future.set_exception(SchedulerStopped(f"not done, the daemon is stopping: {what}"))

    # -- jobs -------------------------------------------------------------------------------------------

    def _sync_job(self) -> None:
        """Run cycles while requests are pending; see the module docstring for why nothing is lost."""
        while not self._stopping.is_set():
            if not self._cycle_lock.acquire(blocking=False):
                self._pending.set()  # the running thread sees it after its cycle and goes round again
                return
            try:
                self._pending.set()
                while self._pending.is_set() and not self._stopping.is_set():
                    self._pending.clear()
                    if self._paused:
                        return
                    self._run_cycle()
            finally:
                self._cycle_lock.release()
            if not self._pending.is_set():
                return

    def _run_cycle(self) -> None:
        with self._state:
            self._started_cycles += 1
            number = self._started_cycles
        report: Any = None
        error: BaseException | None = None
        with self._work_lock:
            self._run_queued()  # ctl operations asked for during the previous cycle go first
            try:
                report = self.engine.sync_cycle()
            except Exception as exc:  # the daemon must outlive any failing cycle; the error is reported
                error = exc
        self._record(CycleOutcome(number, time.time(), report, error))

    def _record(self, outcome: CycleOutcome) -> None:
        error = outcome.error
        if error is None:
            if self.failures:
                log.info("sync works again after %d failed cycle(s)", self.failures)
            self.failures, self.backoff_until, self.last_success = 0, 0.0, outcome.finished
            self.failing_since = None
            self._backoff_deadline = 0.0
        elif outcome.transient or failure_kind(error) is FailureKind.AUTH:
            self.failures += 1
            self.failing_since = self.failing_since or outcome.finished
            delay = min(self.settings.backoff_base * 2 ** (self.failures - 1), self.settings.backoff_max)
            self.backoff_until, self._backoff_deadline = time.time() + delay, time.monotonic() + delay
            why = self.settings.describe(error)
            if outcome.transient:  # said once when it starts; the retries go to the DEBUG log until it works again
                level = logging.WARNING if self.failures == 1 else logging.DEBUG
                log.log(level, "offline: %s; retrying by itself (next try in %.0f s)", why, delay)
            else:  # refused credentials: said once, until they change (ctl reload) or work again
                level = logging.ERROR if self.failures == 1 else logging.DEBUG
                log.log(level, "cannot sync: %s; next try in %.0f s",
                        why.replace("oaiod ctl", self.settings.ctl_prefix), delay)  # fmt: skip
            self._reschedule_sync(delay)
        else:  # an expected failure (OaiodError) in one line; anything else is a bug: with its traceback
            expected = isinstance(error, OaiodError)
            log.error("sync cycle failed: %s", self.settings.describe(error), exc_info=None if expected else error)
        with self._state:
            self.last = outcome
            self._state.notify_all()
        if self._on_cycle is not None:
            self._on_cycle(outcome)

    def _reschedule_sync(self, delay: float) -> None:
        if self._stopping.is_set():
            return
        when = datetime.now().astimezone() + timedelta(seconds=delay)
        try:
            self._scheduler.modify_job("sync", next_run_time=when)
        except Exception as exc:  # the job may be gone during shutdown; the next start reschedules anyway
            log.debug("could not reschedule the sync job: %s", exc)

    def _rescan_job(self) -> None:
        with self._state:
            self._rescan_queued = False
        if self._stopping.is_set():
            return
        try:
            with self._work_lock:
                self.engine.rescan()
        except Exception as exc:  # reported; the next rescan tries again
            log.error("rescan failed: %s", exc, exc_info=not _is_transient(exc))
            return
        self.trigger("rescan")

    def _gc_job(self) -> None:
        if self._stopping.is_set() or self._paused:
            return
        try:
            with self._work_lock:
                self.engine.gc()
        except Exception as exc:  # gc is best effort and runs again later
            log.warning("garbage collection failed: %s", exc)

    def add_check(self, name: str, func: Callable[[], Any], seconds: float) -> None:
        """Run ``func`` every ``seconds``, beside the engine (not under its lock): cheap health checks such as the
        watcher's (:meth:`oaiod.daemon.watch.Watcher.check_health`). A failing check is logged and runs again."""

        def check() -> None:
            if self._stopping.is_set():
                return
            try:
                func()
            except Exception:  # the daemon outlives a failing check; the next one tries again
                log.exception("%s failed; trying again in %.0f s", name, seconds)

        self._scheduler.add_job(check, "interval", seconds=seconds, id=name, replace_existing=True)

    def request_rescan(self) -> None:
        """A rescan as soon as possible (after an inotify overflow or a watch-limit error); requests coalesce."""
        with self._state:
            if self._rescan_queued or self._stopping.is_set():
                return
            self._rescan_queued = True
        self._scheduler.add_job(self._rescan_job)

    # -- change feed ------------------------------------------------------------------------------------

    def _feed_loop(self) -> None:
        assert self._feed is not None
        since: str | None = None
        failures = 0
        while not self._stopping.is_set():
            try:
                changed, since = self._feed(since, self.settings.feed_timeout)
            except Exception as exc:  # an unreachable server: back off, the periodic cycle still runs
                failures += 1
                delay = min(self.settings.backoff_base * 2 ** (failures - 1), self.settings.backoff_max)
                # unreachable: the failing cycles say so once; anything else is worth a warning, once per streak
                quiet = _is_transient(exc) or failure_kind(exc) is FailureKind.AUTH or failures > 1
                level = logging.DEBUG if quiet else logging.WARNING
                log.log(level, "change feed failed (%s); retrying in %.0f s", self.settings.describe(exc), delay)
                self._stopping.wait(delay)
                continue
            failures = 0
            if changed and not self._stopping.is_set():
                self.trigger("change feed")
