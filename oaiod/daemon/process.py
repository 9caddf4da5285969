"""The daemon process (``oaiod run``): signals, the control socket, and the start and stop of its parts.

One daemon per config: an exclusive ``flock`` on ``<state_dir>/oaiod.lock`` (a second instance exits
naming the PID that holds it). SIGTERM/SIGINT stop gracefully — the running sync cycle finishes (every
step of a cycle is idempotent, so even a kill converges later), watchers, scheduler and control socket
are shut down and joined. SIGHUP reloads the config: a bad new config is logged and the old one kept.
With ``NOTIFY_SOCKET`` set (systemd ``Type=notify``) the daemon sends READY=1, STATUS=…, WATCHDOG=1 at
half of ``WATCHDOG_USEC`` (only while the main loop is alive) and STOPPING=1.

Where the engine comes from is :func:`oaiod.daemon.wiring.build_engine` (server API, state repository,
storage opener, embedded hub); the daemon only starts, stops and rebuilds what it returns.
A failure there (a state database that cannot be opened, a wrong password) does not end the daemon: it
stays up in the ``error`` state so ``oaiod ctl status`` can say why and ``ctl rebuild-index``/``reload``
can repair it.

The lock is :mod:`oaiod.daemon.lock` (its errors, :class:`DaemonError` and :class:`AlreadyRunning`, are raised
here too), systemd notify :mod:`oaiod.daemon.notify`, the logs :mod:`oaiod.daemon.logs`.
"""

from __future__ import annotations

import faulthandler
import logging
import logging.handlers
import os
import queue
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from pathlib import Path
from typing import Any

from oaiod import __version__
from oaiod.daemon.config import Config, load_config
from oaiod.daemon.ctl import present
from oaiod.daemon.lock import DaemonError, InstanceLock
from oaiod.daemon.logs import LogBuffer, setup_logging
from oaiod.daemon.notify import SystemdNotifier
from oaiod.daemon.scheduler import CycleOutcome, ScheduleSettings, SyncScheduler
from oaiod.daemon.watch import Watcher
from oaiod.daemon.wiring import DaemonEngine, EngineFactory, EngineHandle, build_engine, remove_stale_temp_files
from oaiod.errors import ConfigError, OaiodError
from oaiod.heap import freeze_startup_objects, release_free_memory

log = logging.getLogger(__name__)

WATCH_CHECK_INTERVAL = 10.0  #: seconds between checks that every root is still watched (a dead emitter restarts)


# -- the daemon --------------------------------------------------------------------------------------------------


class Daemon:
    """One running instance: owns the lock, the ctl server, and (rebuildable) engine, scheduler and watcher.

    Signals and ctl requests never act directly: they queue work for the main thread (``_calls``), so
    reload, rebuild and stop happen one at a time, in one place.
    """

    def __init__(self, config: Config, engine_factory: EngineFactory | None = None) -> None:
        self.config = config
        self.engine_factory = engine_factory or build_engine
        self.lock = InstanceLock(config.paths.lock_file)
        self.notifier = SystemdNotifier()
        self.log_buffer = LogBuffer()
        self.handle: EngineHandle | None = None
        self.scheduler: SyncScheduler | None = None
        self.watcher: Watcher | None = None
        self.engine_error: str | None = None  #: why there is no engine (the daemon still serves ctl)
        self.started = time.time()
        self._stop = threading.Event()
        self._calls: queue.SimpleQueue[tuple[Callable[[], Any], Future[Any]]] = queue.SimpleQueue()
        self._wake = threading.Event()
        self.ready = threading.Event()  #: set once the first start of the components is done (or failed)
        self._heartbeat = time.monotonic()
        self._log_handlers: list[logging.Handler] = []
        self.ctl_server: Any = None
        self.ui_server: Any = None  #: the status page (oaiod.daemon.ui.server.UiServer) while it runs
        self.ui_error: str | None = None  #: why the status page does not run although enabled

    # -- main loop ---------------------------------------------------------------------------------------------

    def run(self) -> int:
        """Run until stopped; returns the exit code. Raises :class:`AlreadyRunning` before doing anything else."""
        self.lock.acquire()
        try:
            self._log_handlers = setup_logging(self.config, self.log_buffer)
            log.info(
                "oaiod %s starting (pid %d, config %s)",
                __version__,
                os.getpid(),
                self.config.source or "embedded defaults",
            )
            previous = self._install_signals()
            try:
                return self._serve()
            finally:
                for signum, handler in previous.items():
                    signal.signal(signum, handler)
        finally:
            for handler in self._log_handlers:
                logging.getLogger().removeHandler(handler)
                handler.close()
            self.lock.release()

    def _serve(self) -> int:
        from oaiod.daemon.ctl.commands import DaemonCommands
        from oaiod.daemon.ctl.protocol import CtlServer

        self.ctl_server = CtlServer(self.config.paths.socket, DaemonCommands(self).table(), present.error_text)
        self.ctl_server.start()
        watchdog = self._start_watchdog()
        try:
            self._start_ui()
            self._start_components()
            freeze_startup_objects()  # the first cycle may be running already: that is fine (see its docstring)
            self.ready.set()
            self.notifier.notify("READY=1", f"STATUS={self.state_line()}", f"MAINPID={os.getpid()}")
            log.info("oaiod ready; control socket %s", self.config.paths.socket)
            while not self._stop.is_set():
                self._heartbeat = time.monotonic()
                self._wake.wait(1.0)
                self._wake.clear()
                self._run_calls()
                if self.scheduler is not None:
                    self.scheduler.check_clock()
        finally:
            self.notifier.notify("STOPPING=1", "STATUS=stopping")
            log.info("oaiod stopping")
            self._stop.set()
            self._stop_components()
            if self.ui_server is not None:
                self.ui_server.stop()
            self.ctl_server.close()
            if watchdog is not None:
                watchdog.join()
            log.info("oaiod stopped")
        return 0

    def _start_ui(self) -> None:
        """Start the status page (``[ui]``; changes of it take effect at the next start); a failure is logged and
        the daemon runs on without it (``ctl ui`` says why)."""
        if not self.config.ui.enabled:
            return
        from oaiod.daemon.ui.server import UiServer

        try:
            self.ui_server = UiServer(self, self.config.ui.port).start()
        except (OaiodError, OSError) as exc:  # OSError: the token file cannot be written
            self.ui_error = str(exc)
            log.error("status page not started: %s", exc)

    def _install_signals(self) -> dict[int, Any]:
        def on_stop(signum: int, _frame: Any) -> None:
            log.info("received %s; stopping after the current operation", signal.Signals(signum).name)
            self.request_stop()

        def on_hup(_signum: int, _frame: Any) -> None:
            log.info("received SIGHUP; reloading the config")
            self.call_in_main(self.reload)

        faulthandler.register(signal.SIGUSR1, all_threads=True)  # kill -USR1 PID: every thread's stack to stderr
        handlers = {signal.SIGTERM: on_stop, signal.SIGINT: on_stop, signal.SIGHUP: on_hup}
        return {signum: signal.signal(signum, handler) for signum, handler in handlers.items()}

    def request_stop(self) -> None:
        self._stop.set()
        self._wake.set()

    def call_in_main(self, func: Callable[[], Any]) -> Future[Any]:
        """Run ``func`` on the main loop (one such call at a time); the future carries its result or error."""
        future: Future[Any] = Future()
        self._calls.put((func, future))
        self._wake.set()
        return future

    def _run_calls(self) -> None:
        while True:
            try:
                func, future = self._calls.get_nowait()
            except queue.Empty:
                return
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(func())
            except BaseException as exc:  # handed to the caller (ctl answers it); the loop goes on
                future.set_exception(exc)

    def _start_watchdog(self) -> threading.Thread | None:
        interval = self.notifier.watchdog_interval
        if not self.notifier.enabled or interval is None:
            return None

        def ping() -> None:
            while not self._stop.wait(interval):
                if time.monotonic() - self._heartbeat < max(3 * interval, 5.0):  # a hung main loop gets no pings
                    self.notifier.notify("WATCHDOG=1", f"STATUS={self.state_line()}")

        thread = threading.Thread(target=ping, name="oaiod-sd-watchdog", daemon=True)
        thread.start()
        return thread

    # -- components --------------------------------------------------------------------------------------------

    def _start_components(self) -> None:
        """Build the engine and start scheduler and watcher; a failure leaves the daemon up in ``error``."""
        try:
            handle = self.engine_factory(self.config)
        except OaiodError as exc:
            self.engine_error = str(exc)
            log.error("cannot start syncing: %s; fix it, then run: %s", exc, self.config.ctl("reload"))
            return
        sync = self.config.sync
        settings = ScheduleSettings(
            sync.interval,
            sync.rescan_interval,
            sync.gc_interval,
            ctl_prefix=self.config.ctl(),
            describe=present.error_text,
        )
        scheduler = SyncScheduler(handle.engine, settings, handle.change_feed, on_cycle=self._cycle_done)
        watcher = Watcher(
            handle.engine.mark_dirty,
            lambda: scheduler.trigger("local changes"),
            scheduler.request_rescan,
            sync.debounce,
            is_ignored=ignore_rule(sync.ignore),
        )
        roots = handle.engine.roots()
        watcher.start(roots)
        scheduler.add_check("watch-health", watcher.check_health, WATCH_CHECK_INTERVAL)
        self.handle, self.watcher, self.scheduler, self.engine_error = handle, watcher, scheduler, None
        scheduler.start()
        cleanup = threading.Thread(
            target=remove_stale_temp_files, args=(roots, self.started), name="oaiod-temp-cleanup", daemon=True
        )
        cleanup.start()

    def _stop_components(self) -> None:
        """Stop watcher, scheduler (waits for the running cycle) and engine, in that order; idempotent."""
        watcher, scheduler, handle = self.watcher, self.scheduler, self.handle
        self.watcher = self.scheduler = self.handle = None
        if watcher is not None:
            watcher.stop()
        if scheduler is not None:
            # a long poll in flight cannot be interrupted; its thread (a daemon thread) ends by itself when the poll
            # returns (at most FEED_TIMEOUT later) and never starts another: do not hold up SIGTERM for it
            scheduler.shutdown(feed_join_timeout=2.0)
        if handle is not None:
            handle.close()

    def _cycle_done(self, outcome: CycleOutcome) -> None:
        watcher, handle = self.watcher, self.handle
        if watcher is not None and handle is not None and outcome.error is None:
            watcher.watch(handle.engine.roots())  # roots added or removed (ctl add, a new share) are (un)watched
        self.notifier.notify(f"STATUS={self.state_line()}")
        release_free_memory()

    def settle_local_changes(self) -> None:
        """Hand the watcher's collected changes to the engine now, without the debounce (``ctl sync --wait``)."""
        watcher = self.watcher
        if watcher is not None:
            watcher.settle()

    def rewatch(self) -> None:
        if self.watcher is not None and self.handle is not None:
            self.watcher.watch(self.handle.engine.roots())

    # -- reload and rebuild (main thread only) -------------------------------------------------------------------

    def reload(self) -> str:
        """Re-read the config; a bad one is logged and refused (the old one stays), a good one restarts syncing."""
        self.notifier.notify("RELOADING=1", f"MONOTONIC_USEC={time.monotonic_ns() // 1000}")
        try:
            new = load_config(self.config.source)
            if new.paths.state_dir != self.config.paths.state_dir:
                raise ConfigError("client.state_dir", "cannot change while the daemon runs; restart it")
        except ConfigError as exc:
            log.error("config reload refused, keeping the running config: %s", exc)
            self.notifier.notify("READY=1", f"STATUS={self.state_line()}")
            raise
        self._stop_components()
        self.config = new
        logging.getLogger().setLevel(new.log.level)
        self._start_components()
        self.notifier.notify("READY=1", f"STATUS={self.state_line()}")
        log.info("config reloaded from %s", new.source or "embedded defaults")
        return "reloaded"

    def rebuild_index(self) -> str:
        """Rebuild the index from disk and server without touching user files.

        With a working engine see :meth:`forget_index` (run here once no cycle runs). Without one (a database
        that cannot be opened) the database files are moved aside and the engine is built again on a fresh one.
        """
        if self.handle is not None and self.scheduler is not None:
            return self.scheduler.run_exclusive("rebuild-index", self.forget_index)
        self._stop_components()
        db = self.config.paths.state_db
        moved = []
        suffix = time.strftime(".broken-%Y%m%d-%H%M%S")
        for path in (db, db.with_name(db.name + "-wal"), db.with_name(db.name + "-shm")):
            if path.exists():
                path.rename(path.with_name(path.name + suffix))
                moved.append(path.name)
        log.warning("state database moved aside (%s); rebuilding the index from disk and server", ", ".join(moved))
        self._start_components()
        if self.engine_error:
            raise DaemonError(f"rebuilt index cannot be opened either: {self.engine_error}")
        return f"index rebuilt; old database kept as {db.name}{suffix}"

    def forget_index(self) -> str:
        """The engine forgets its index; the next cycle hashes every local file and records equal ones as synced.

        Must run while no cycle runs (``ctl`` queues it with :meth:`SyncScheduler.submit`).
        """
        handle, scheduler = self.handle, self.scheduler
        if handle is None or scheduler is None:
            raise DaemonError(f"not syncing: {self.engine_error or 'the daemon is starting or stopping'}")
        handle.engine.rebuild_index()
        scheduler.trigger("rebuild-index", force=True)
        log.warning("index forgotten; rebuilding it from disk and server")
        return "index rebuilt from disk and server"

    # -- what ctl shows ------------------------------------------------------------------------------------------

    def state(self) -> str:
        """starting, idle, syncing, paused, offline or error."""
        scheduler = self.scheduler
        if not self.ready.is_set():
            return "starting"
        if self.engine_error or scheduler is None:
            return "error"
        if scheduler.paused:
            return "paused"
        if scheduler.syncing:
            return "syncing"
        if scheduler.last is not None and scheduler.last.error is not None:
            return "offline" if scheduler.last.transient else "error"
        return "idle"

    def state_line(self) -> str:
        """One line for systemd's STATUS=."""
        scheduler = self.scheduler
        last = scheduler.last_success if scheduler else None
        when = time.strftime("%H:%M:%S", time.localtime(last)) if last else "never"
        return f"{self.state()}; last sync {when}"

    def status(self) -> dict[str, Any]:
        scheduler, handle = self.scheduler, self.handle
        last = scheduler.last if scheduler else None
        info: dict[str, Any] = {
            "state": self.state(),
            "pid": os.getpid(),
            "version": __version__,
            "config": str(self.config.source) if self.config.source else None,
            "instance": self.config.paths.instance,
            "server": handle.server_url if handle else self.config.server.url,
            "device_id": handle.device_id if handle else None,
            "root": str(self.config.client.root),
            "started": self.started,
            "last_sync": scheduler.last_success if scheduler else None,
            "last_error": self.engine_error or (present.error_text(last.error) if last and last.error else None),
            "next_try": scheduler.backoff_until or None if scheduler else None,
            "failing_since": scheduler.failing_since if scheduler else None,
            "cycles": scheduler.started_cycles if scheduler else 0,
            "queued": scheduler.queued if scheduler else [],
            "watched": [str(root) for root in self.watcher.roots] if self.watcher else [],
            "engine": {},
        }
        if handle is not None:
            try:
                info["engine"] = present.status(handle.engine.status())
            except Exception as exc:  # status must answer even if the engine is in trouble
                log.warning("engine status failed: %s", exc)
                info["engine"] = {"error": str(exc)}
        return info

    def engine(self) -> DaemonEngine:
        """The engine, or :class:`DaemonError` saying why there is none."""
        if self.handle is None:
            raise DaemonError(f"not syncing: {self.engine_error or 'the daemon is starting or stopping'}")
        return self.handle.engine

    def follow_log(self, since: int, until: Callable[[], bool]) -> Iterator[str | None]:
        """Yield new log lines after ``since`` (None every second as a heartbeat) until ``until()``."""
        counter = since
        while not until() and not self._stop.is_set():
            new = self._wait_log(counter)
            if not new:
                yield None
            for number, line in new:
                counter = number
                yield line

    def _wait_log(self, counter: int) -> list[tuple[int, str]]:
        buffer = self.log_buffer
        with buffer.cond:
            buffer.cond.wait_for(lambda: buffer.counter > counter, timeout=1.0)
        return buffer.since(counter)


def ignore_rule(extra: tuple[str, ...]) -> Callable[[Path, str], bool]:
    """The watcher's filter: :mod:`oaiod.engine.ignore` rules per root (its ``.oaioignore`` re-read when it changes)."""
    from oaiod.engine.ignore import IGNORE_FILE, IgnoreRules

    cache: dict[Path, tuple[float, IgnoreRules]] = {}

    def ignored(root: Path, relpath: str) -> bool:
        if relpath == IGNORE_FILE:
            cache.pop(root, None)
            return False
        try:
            mtime = (root / IGNORE_FILE).stat().st_mtime
        except OSError:
            mtime = 0.0
        cached = cache.get(root)
        if cached is None or cached[0] != mtime:
            cached = cache[root] = (mtime, IgnoreRules.for_root(root, extra))
        rules = cached[1]
        return rules.ignored(relpath) or rules.ignored(relpath, is_dir=True)

    return ignored


def run_daemon(config_path: Path | None, engine_factory: EngineFactory | None = None) -> int:
    """``oaiod run``: load the config, run until stopped; the exit code for the shell (config error: 2)."""
    try:
        config = load_config(config_path)
    except ConfigError as exc:
        print(f"oaiod: config error: {exc}", file=sys.stderr, flush=True)
        return 2
    try:
        return Daemon(config, engine_factory).run()
    except DaemonError as exc:  # AlreadyRunning among them
        print(f"oaiod: {exc}", file=sys.stderr, flush=True)
        return 1
