"""``oaiod hub serve --workers N``: N hub processes serving one port of one machine, on one PostgreSQL database.

The parent upgrades the database once, binds the port, then forks the workers before it opens anything else: no
thread and no database connection crosses a fork. Each worker is a whole hub (:meth:`HubServer.serve_forever` on
the inherited socket; the kernel hands each connection to one of them) with its own connection pool and its own
``LISTEN`` connection; they agree through the database as hubs on several machines do (``docs/hub-api.md``,
*Several hub processes*). The parent only supervises:

- SIGTERM or SIGINT: passed on to every worker as SIGTERM (each finishes its requests as a single hub does), then
  it waits for them; a worker still running ``graceful_shutdown + 10`` seconds later is killed.
- A worker that dies is replaced after :data:`RESTART_DELAY`. Workers that die within :data:`STARTUP_GRACE` of
  their start :data:`STARTUP_FAILURES` times in a row stop the hub (exit status 1): a hub that cannot start will
  not start by retrying.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import time
from types import FrameType

from oaiod.hub.server import HubServer, HubStartError, bind_socket
from oaiod.hub.service import upgrade_schema
from oaiod.hub.settings import HubSettings

log = logging.getLogger("oaiod.hub")

RESTART_DELAY = 1.0  #: seconds before a dead worker is replaced
STARTUP_GRACE = 10.0  #: a worker that dies this soon after its start failed to start
STARTUP_FAILURES = 3  #: failed starts in a row that stop the hub
POLL_INTERVAL = 0.2  #: seconds between two looks at the workers


def serve_workers(settings: HubSettings, count: int) -> int:
    """Run ``count`` worker processes on ``settings`` until SIGTERM or SIGINT; the exit status. Raises
    :class:`HubStartError` when the database or the port is not usable (before any worker starts)."""
    try:
        upgrade_schema(settings.database_url)
    except Exception as exc:
        raise HubStartError(f"hub database {settings.database_url.split('@')[-1]}: {exc}") from exc
    sock = bind_socket(settings)
    settings = settings.replace(port=sock.getsockname()[1])
    announced = HubServer(settings)
    announced.port = settings.port
    log.info("oaiod hub listening on %s (%d worker processes)", announced.url, count)
    try:
        return Supervisor(settings, sock, count).run()
    finally:
        sock.close()


class Supervisor:
    """Forks, replaces and stops the workers (see the module docstring)."""

    def __init__(self, settings: HubSettings, sock: socket.socket, count: int) -> None:
        self.settings = settings
        self.sock = sock
        self.count = count
        self.workers: dict[int, float] = {}  #: pid → when it started (monotonic)
        self.stopping = False
        self.failures = 0

    def _stop(self, _signum: int, _frame: FrameType | None) -> None:
        self.stopping = True

    def _stop_requested(self) -> bool:
        return self.stopping  # a signal may have set it since the last look

    def run(self) -> int:
        signal.signal(signal.SIGTERM, self._stop)
        signal.signal(signal.SIGINT, self._stop)
        for _ in range(self.count):
            self._fork()
        status = 0
        while not self.stopping:
            time.sleep(POLL_INTERVAL)
            for pid, code in self._reap():
                started = self.workers.pop(pid)
                if self._stop_requested():
                    break
                early = time.monotonic() - started < STARTUP_GRACE
                self.failures = self.failures + 1 if early else 0
                next_step = "stopping the hub" if self.failures >= STARTUP_FAILURES else "starting another"
                log.warning("hub: worker process %d ended (%s); %s", pid, _describe(code), next_step)
                if self.failures >= STARTUP_FAILURES:
                    self.stopping, status = True, 1
                    break
                time.sleep(RESTART_DELAY)
                self._fork()
        self._stop_workers()
        return status

    def _fork(self) -> None:
        pid = os.fork()
        if pid == 0:  # the worker: never returns into the parent's code
            _work(self.settings, self.sock)
        self.workers[pid] = time.monotonic()

    def _reap(self) -> list[tuple[int, int]]:
        ended = []
        while self.workers:
            try:
                pid, code = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
            if pid in self.workers:
                ended.append((pid, code))
        return ended

    def _stop_workers(self) -> None:
        for pid in self.workers:
            _signal(pid, signal.SIGTERM)
        deadline = time.monotonic() + self.settings.graceful_shutdown + 10
        while self.workers and time.monotonic() < deadline:
            for pid, _code in self._reap():
                self.workers.pop(pid, None)
            time.sleep(POLL_INTERVAL / 2)
        for pid in self.workers:
            log.warning("hub: worker process %d did not stop in time; killing it", pid)
            _signal(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        self.workers.clear()


def _work(settings: HubSettings, sock: socket.socket) -> None:
    """A worker's whole life; ends the process. uvicorn stops gracefully on SIGTERM or SIGINT, then raises it
    again: with the default handlers back, that ends the worker (SIGTERM) or lands here (SIGINT)."""
    code = 0
    try:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)  # not the parent's handlers
        signal.signal(signal.SIGINT, signal.default_int_handler)
        HubServer(settings).serve_forever(sock, worker=True)
    except KeyboardInterrupt:
        pass
    except BaseException:
        log.exception("hub: worker process %d failed", os.getpid())
        code = 1
    finally:
        logging.shutdown()
        os._exit(code)


def _signal(pid: int, signum: int) -> None:
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        pass


def _describe(code: int) -> str:
    if os.WIFSIGNALED(code):
        return f"signal {signal.Signals(os.WTERMSIG(code)).name}"
    return f"exit status {os.waitstatus_to_exitcode(code)}"
