"""Run a hub: uvicorn in a background thread (embedded in the daemon or a test) or in the foreground (CLI).

:class:`HubServer` binds its socket itself, so ``port=0`` picks a free port that is known before the server
runs; ``start()`` returns once the hub answers HTTP. It can be started and stopped many times in one process.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import uvicorn

from oaiod.errors import OaiodError
from oaiod.heap import freeze_startup_objects, release_free_memory
from oaiod.hub.app import create_app
from oaiod.hub.notifier import ChangeNotifier
from oaiod.hub.service import HubService
from oaiod.hub.settings import HubSettings

log = logging.getLogger("oaiod.hub")

START_TIMEOUT = 30.0


class HubStartError(OaiodError):
    """The hub could not start (port taken, database unreachable, …); the message says which."""


class _Uvicorn(uvicorn.Server):
    """uvicorn that releases long polls at once when asked to exit (else shutdown waits for them)."""

    notifier: ChangeNotifier | None = None

    def handle_exit(self, sig: int, frame: Any) -> None:
        if self.notifier is not None:
            self.notifier.close_threadsafe()
        super().handle_exit(sig, frame)


class HubServer:
    """One hub on ``settings.host``:``settings.port``; ``url`` and ``host`` are valid after :meth:`start`."""

    def __init__(self, settings: HubSettings) -> None:
        self.settings = settings
        self.service: HubService | None = None
        self.port = 0
        self._server: _Uvicorn | None = None
        self._thread: threading.Thread | None = None
        self._socket: socket.socket | None = None

    @property
    def data_dir(self) -> Path:
        return self.settings.data_dir

    @property
    def host(self) -> str:
        """``HOST:PORT`` as the published client takes it (loopback answers on ``127.0.0.1``)."""
        bound = self.settings.host
        if bound in ("", "0.0.0.0", "localhost", "127.0.0.1"):
            bound = "127.0.0.1"
        elif bound in ("::", "::1"):
            bound = "[::1]"
        elif ":" in bound:
            bound = f"[{bound}]"
        return f"{bound}:{self.port}"

    @property
    def url(self) -> str:
        """The base URL, e.g. ``http://127.0.0.1:8765/api/``."""
        return f"http://{self.host}/api/"

    def _prepare(self, sock: socket.socket | None = None, upgrade: bool = True) -> tuple[_Uvicorn, socket.socket]:
        """Upgrade the database (unless told it is done), build the app and bind the listening socket (unless
        given one: a worker process of :mod:`oaiod.hub.workers`)."""
        try:
            self.service = HubService.open(self.settings, upgrade=upgrade)
        except Exception as exc:
            raise HubStartError(f"hub database {self.settings.database_url.split('@')[-1]}: {exc}") from exc
        app = create_app(self.settings, self.service)
        if sock is None:
            try:
                sock = bind_socket(self.settings)
            except HubStartError:
                self.service.close()
                raise
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(
            app,
            log_config=None,
            access_log=False,
            lifespan="on",
            timeout_graceful_shutdown=max(1, int(self.settings.graceful_shutdown)),
            ws="none",
            proxy_headers=False,  # uvicorn would trust X-Forwarded-* from 127.0.0.1; oaiod.hub.proxy decides
        )
        server = _Uvicorn(config)
        server.notifier = app.state.notifier
        self._server, self._socket = server, sock
        return server, sock

    def start(self) -> HubServer:
        """Start in a background thread; returns once the hub answers. Raises :class:`HubStartError`."""
        if self._thread is not None:
            raise HubStartError("this hub is running already")
        server, sock = self._prepare()
        self._thread = threading.Thread(
            target=server.run, kwargs={"sockets": [sock]}, name=f"oaiod-hub-{self.port}", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + START_TIMEOUT
        while not server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise HubStartError(f"the hub on port {self.port} did not start; see the log above")
            time.sleep(0.01)
        self._probe()
        log.info("oaiod hub listening on %s", self.url)
        return self

    def _probe(self) -> None:
        try:
            with urllib.request.urlopen(self.url + "login/", timeout=10) as answer:
                answer.read()
        except (OSError, urllib.error.URLError) as exc:
            self.stop()
            raise HubStartError(f"the hub on {self.url} does not answer: {exc}") from exc

    def stop(self) -> None:
        """Stop serving (long polls are released at once) and close the database; safe to call twice."""
        server, thread = self._server, self._thread
        if server is not None:
            if server.notifier is not None:
                server.notifier.close_threadsafe()
            server.should_exit = True
        if thread is not None:
            thread.join(timeout=self.settings.graceful_shutdown + 10)
        if self._socket is not None:
            self._socket.close()
        if self.service is not None:
            self.service.close()
        self._server = self._thread = self._socket = None
        self.service = None

    def serve_forever(self, sock: socket.socket | None = None, *, worker: bool = False) -> None:
        """Serve in the foreground until SIGINT or SIGTERM (the CLI's ``oaiod hub serve``); a process of its own,
        so it keeps its memory as the daemon does (:mod:`oaiod.heap`): start-up objects frozen, and freed heap
        pages handed back every :data:`TRIM_INTERVAL` seconds. A ``worker`` (:mod:`oaiod.hub.workers`) serves the
        socket its parent bound, on the database its parent upgraded, and leaves announcing the URL to it."""
        server, sock = self._prepare(sock, upgrade=not worker)
        freeze_startup_objects()
        done = threading.Event()
        trimmer = threading.Thread(target=_trim_until, args=(done,), name="oaiod-hub-trim", daemon=True)
        trimmer.start()
        if not worker:
            log.info("oaiod hub listening on %s", self.url)
        try:
            server.run(sockets=[sock])
        finally:
            done.set()
            self._server = None
            self.stop()

    def __enter__(self) -> HubServer:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()


def bind_socket(settings: HubSettings) -> socket.socket:
    """The hub's listening socket on ``settings.host``:``settings.port``; :class:`HubStartError` if it cannot."""
    family = socket.AF_INET6 if ":" in settings.host else socket.AF_INET
    # IPPROTO_TCP explicitly: asyncio sets TCP_NODELAY only on sockets of that protocol; without it every
    # answer on a kept-alive connection waits ~40 ms for the peer's delayed ACK.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((settings.host, settings.port))
        sock.listen(128)
    except OSError as exc:
        sock.close()
        raise HubStartError(f"cannot listen on {settings.host}:{settings.port}: {exc}") from exc
    return sock


TRIM_INTERVAL = 30.0  #: seconds between two hand-backs of freed heap pages by ``oaiod hub serve``


def _trim_until(done: threading.Event) -> None:
    while not done.wait(TRIM_INTERVAL):
        release_free_memory()
