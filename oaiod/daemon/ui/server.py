"""Runs the status page inside the daemon: uvicorn in a thread on 127.0.0.1, the token file and login codes.

The token (:func:`load_token`) is made once and kept in ``<state_dir>/ui-token`` (0600), so a script's copy keeps
working across restarts; a file that is not ours, not 0600 or not a token is replaced. ``ctl ui`` never shows it:
it asks for a one-time login code (:meth:`UiServer.login_url`), used once within :data:`LOGIN_CODE_SECONDS`.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import stat
import threading
import time
from pathlib import Path
from typing import Any

from oaiod.errors import OaiodError

log = logging.getLogger(__name__)

TOKEN_FILE = "ui-token"
LOGIN_CODE_SECONDS = 300  #: a login URL from ``ctl ui`` works once, within this many seconds
START_TIMEOUT = 30.0
_TOKEN_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_")


class UiStartError(OaiodError):
    """The status page could not start (its port is taken…); the daemon runs on without it."""


def load_token(path: Path) -> str:
    """The page's token from ``path``, made (0600, in a 0700 folder if it makes one) when missing or unsafe."""
    try:
        info = path.lstat()
        if stat.S_ISREG(info.st_mode) and info.st_uid == os.getuid() and stat.S_IMODE(info.st_mode) == 0o600:
            token = path.read_text(encoding="ascii").strip()
            if len(token) >= 32 and set(token) <= _TOKEN_CHARS:
                return token
        log.warning("status page token file %s was not a 0600 file of ours holding a token; made a new one", path)
    except FileNotFoundError:
        pass
    except (OSError, UnicodeDecodeError) as exc:
        log.warning("status page token file %s unreadable (%s); made a new one", path, exc)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    token = secrets.token_urlsafe(32)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        os.write(fd, token.encode("ascii") + b"\n")
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    return token


class LoginCodes:
    """One-time login codes: each works once, within :data:`LOGIN_CODE_SECONDS`."""

    def __init__(self) -> None:
        self._codes: dict[str, float] = {}
        self._lock = threading.Lock()

    def new(self) -> str:
        code = secrets.token_urlsafe(24)
        with self._lock:
            now = time.monotonic()
            self._codes = {known: until for known, until in self._codes.items() if until > now}
            self._codes[code] = now + LOGIN_CODE_SECONDS
        return code

    def use(self, code: str) -> bool:
        with self._lock:
            until = self._codes.pop(code, None)
        return until is not None and until > time.monotonic()


class UiServer:
    """The status page of ``daemon`` on ``127.0.0.1:port``; :attr:`url` is valid after :meth:`start`."""

    def __init__(self, daemon: Any, port: int = 0) -> None:
        self.daemon = daemon
        self.requested_port = port
        self.port = 0
        self.token_file = Path(daemon.config.paths.state_dir) / TOKEN_FILE
        self.codes = LoginCodes()
        self.stopping = threading.Event()
        self._server: Any = None
        self._thread: threading.Thread | None = None
        self._socket: socket.socket | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def login_url(self) -> str:
        """A URL that logs a browser in once (see the module docstring)."""
        return f"{self.url}login?code={self.codes.new()}"

    def start(self) -> UiServer:
        """Bind, serve in a thread, return once uvicorn runs. Raises :class:`UiStartError`."""
        import uvicorn

        from oaiod.daemon.ui.app import create_app

        token = load_token(self.token_file)
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        try:
            sock.bind(("127.0.0.1", self.requested_port))
            sock.listen(16)
        except OSError as exc:
            sock.close()
            raise UiStartError(f"cannot listen on 127.0.0.1:{self.requested_port}: {exc.strerror or exc}") from None
        self.port = sock.getsockname()[1]
        app = create_app(self, token)
        config = uvicorn.Config(
            app, log_config=None, access_log=False, lifespan="off", ws="none", timeout_graceful_shutdown=2
        )
        server = uvicorn.Server(config)
        self._server, self._socket = server, sock
        # uvicorn installs signal handlers only in the main thread: the daemon keeps its own
        self._thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="oaiod-ui", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + START_TIMEOUT
        while not server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise UiStartError("the status page did not start; see the log")
            time.sleep(0.01)
        log.info("status page on %s (open it with: %s)", self.url, self.daemon.config.ctl("ui"))
        return self

    def stop(self) -> None:
        """Stop serving (open event streams end within a second); safe to call twice."""
        self.stopping.set()
        server, thread = self._server, self._thread
        if server is not None:
            server.should_exit = True
        if thread is not None:
            thread.join(10)
        if self._socket is not None:
            self._socket.close()
        self._server = self._thread = self._socket = None
