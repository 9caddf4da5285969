"""The control protocol: JSON lines over the owner-only Unix socket; the daemon serves it, ``oaiod ctl`` calls it.

One request per connection line: ``{"cmd": NAME, "args": {...}}``. A plain command answers one line,
``{"ok": true, "result": ...}`` or ``{"ok": false, "error": TEXT, "kind": KIND}`` (KIND: the failure's
:class:`~oaiod.errors.FailureKind`, so a program — :mod:`oaiod.client` — tells "unknown object" from "refused"
without reading the text). A streaming command (``log -f``,
``sync --wait``) first answers any number of ``{"ok": true, "stream": ITEM}`` lines, then the final line.

The socket lives in a 0700 folder and is created 0600; on Linux a peer of another uid is refused
(``SO_PEERCRED``) even if the permissions were loosened. Requests are untrusted: a line is at most
:data:`MAX_LINE` bytes, ``cmd`` must name a known command and ``args`` must be an object.

Errors of this boundary::

    OaiodError
    └── CtlError             the control connection failed
        ├── NoDaemon         nothing listens on the socket (``oaiod ctl`` exits with code 3)
        └── CommandFailed    the daemon answered ``ok: false``; ``str()`` is its reason, ``failure`` its kind
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import selectors
import socket
import stat
import struct
import threading
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from oaiod.errors import FailureKind, OaiodError, failure_kind

log = logging.getLogger(__name__)

MAX_LINE = 1024 * 1024
HEARTBEAT = object()  #: a streaming handler yields this to let the server check that the client is still there
Handler = Callable[[dict[str, Any]], Any]  #: returns a JSON value, or a :class:`Stream` for streaming commands


class CtlError(OaiodError):
    """The control connection failed."""


class NoDaemon(CtlError):
    """No daemon listens on the control socket."""


class CommandFailed(CtlError):
    """The daemon refused or failed the command; ``failure`` says what kind of failure it was (from the answer)."""

    def __init__(self, message: str, kind: FailureKind | str = FailureKind.INVALID) -> None:
        super().__init__(message)
        self.failure = FailureKind(kind) if kind in FailureKind._value2member_map_ else FailureKind.INVALID


class Stream:
    """A streaming answer: ``items`` yields JSON values (or :data:`HEARTBEAT`), ``result()`` gives the last line."""

    def __init__(self, items: Iterator[Any], result: Callable[[], Any]) -> None:
        self.items = items
        self.result = result


def _encode(message: Mapping[str, Any]) -> bytes:
    return json.dumps(message, separators=(",", ":"), default=str).encode() + b"\n"


# -- server ------------------------------------------------------------------------------------------------------


def prepare_socket_dir(path: Path) -> None:
    """Create the socket's folder 0700 (or tighten it if it is ours); refuse one owned by another user."""
    folder = path.parent
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    info = folder.stat()
    if info.st_uid != os.getuid():
        raise CtlError(f"control socket folder {folder} belongs to another user")
    if stat.S_IMODE(info.st_mode) != 0o700:
        folder.chmod(0o700)


def _remove_stale(path: Path) -> None:
    """Remove a socket left by a dead daemon; a live one answering there is an error (the lock should prevent it)."""
    if not path.exists() and not path.is_symlink():
        return
    if not stat.S_ISSOCK(path.lstat().st_mode):
        raise CtlError(f"{path} exists and is not a socket; remove it")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(str(path))
    except OSError:
        path.unlink()
        return
    finally:
        probe.close()
    raise CtlError(f"another daemon answers on {path}")


def peer_uid(conn: socket.socket) -> int | None:
    """The uid of the connected peer (Linux ``SO_PEERCRED``); None where the OS does not tell."""
    if not hasattr(socket, "SO_PEERCRED"):
        return None
    creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    _pid, uid, _gid = struct.unpack("3i", creds)
    return int(uid)


class CtlServer:
    """Serves control requests on a Unix socket; one thread accepts, one thread per connection answers."""

    def __init__(
        self, path: Path, handlers: Mapping[str, Handler], describe: Callable[[OaiodError], str] = str
    ) -> None:
        self.path = path
        self.handlers = handlers
        self.describe = describe  #: a failure as the client's one-line error (for people: no raw HTTP errors)
        self._sock: socket.socket | None = None
        self._stop = threading.Event()
        self._threads: set[threading.Thread] = set()
        self._conns: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._acceptor: threading.Thread | None = None

    def start(self) -> None:
        prepare_socket_dir(self.path)
        _remove_stale(self.path)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old_umask = os.umask(0o177)  # the socket is born 0600: no window where others could connect
        try:
            sock.bind(str(self.path))
        finally:
            os.umask(old_umask)
        os.chmod(self.path, 0o600)
        sock.listen(16)
        sock.setblocking(False)
        self._sock = sock
        self._acceptor = threading.Thread(target=self._accept_loop, name="oaiod-ctl-accept", daemon=True)
        self._acceptor.start()
        log.info("control socket listening on %s", self.path)

    def close(self) -> None:
        """Stop accepting, end open connections, join every thread, remove the socket file."""
        self._stop.set()
        if self._acceptor is not None:
            self._acceptor.join()
        with self._lock:
            for conn in self._conns:
                with contextlib.suppress(OSError):
                    conn.shutdown(socket.SHUT_RDWR)
            threads = list(self._threads)
        for thread in threads:
            thread.join(10)
        if self._sock is not None:
            self._sock.close()
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()

    def _accept_loop(self) -> None:
        assert self._sock is not None
        with selectors.DefaultSelector() as selector:
            selector.register(self._sock, selectors.EVENT_READ)
            while not self._stop.is_set():
                if not selector.select(0.2):
                    continue
                try:
                    conn, _ = self._sock.accept()
                except OSError:
                    continue
                conn.setblocking(True)
                thread = threading.Thread(target=self._serve, args=(conn,), name="oaiod-ctl-conn", daemon=True)
                with self._lock:
                    self._threads.add(thread)
                    self._conns.add(conn)
                thread.start()

    def _serve(self, conn: socket.socket) -> None:
        try:
            uid = peer_uid(conn)
            if uid is not None and uid != os.getuid():
                log.warning("refused a control connection from uid %d", uid)
                conn.sendall(_encode({"ok": False, "error": "permission denied: not the daemon's user"}))
                return
            with conn.makefile("rb") as reader:
                line = reader.readline(MAX_LINE + 1)
            if line:
                self._answer(conn, line)
        except OSError as exc:  # the client went away; nothing to tell anyone
            log.debug("control connection ended: %s", exc)
        finally:
            with self._lock:
                self._conns.discard(conn)
                self._threads.discard(threading.current_thread())
            conn.close()

    def _answer(self, conn: socket.socket, line: bytes) -> None:
        try:
            cmd, args = parse_request(line, self.handlers)
            answer = self.handlers[cmd](args)
            if isinstance(answer, Stream):
                self._stream(conn, answer)
                return
            conn.sendall(_encode({"ok": True, "result": answer}))
        except OaiodError as exc:
            log.debug("control command failed: %s", exc)
            kind = exc.failure if isinstance(exc, CommandFailed) else failure_kind(exc)
            conn.sendall(_encode({"ok": False, "error": self.describe(exc), "kind": kind.value}))
        except OSError:
            raise
        except Exception as exc:  # a bug in a handler: log it, tell the client, keep the daemon up
            log.exception("control command failed")
            conn.sendall(_encode({"ok": False, "error": f"internal error: {type(exc).__name__}: {exc}"}))

    def _stream(self, conn: socket.socket, stream: Stream) -> None:
        for item in stream.items:
            if self._stop.is_set():
                break
            if item is HEARTBEAT:
                if _peer_closed(conn):
                    return
                continue
            conn.sendall(_encode({"ok": True, "stream": item}))
        conn.sendall(_encode({"ok": True, "result": stream.result()}))


def _peer_closed(conn: socket.socket) -> bool:
    """True when the client closed its end (readable with nothing to read)."""
    with selectors.DefaultSelector() as selector:
        selector.register(conn, selectors.EVENT_READ)
        if not selector.select(0):
            return False
    try:
        return conn.recv(1, socket.MSG_PEEK) == b""
    except OSError:
        return True


def parse_request(line: bytes, handlers: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """``(cmd, args)`` from one request line; anything malformed raises :class:`CommandFailed`."""
    if len(line) > MAX_LINE:
        raise CommandFailed(f"request longer than {MAX_LINE} bytes")
    try:
        request = json.loads(line)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CommandFailed(f"request is not JSON: {exc}") from None
    if not isinstance(request, dict) or set(request) - {"cmd", "args"}:
        raise CommandFailed('request must be an object with "cmd" and "args"')
    cmd, args = request.get("cmd"), request.get("args", {})
    if not isinstance(cmd, str) or cmd not in handlers:
        raise CommandFailed(f"unknown command {str(cmd)[:40]!r}; known: {', '.join(sorted(handlers))}")
    if not isinstance(args, dict):
        raise CommandFailed('"args" must be an object')
    return cmd, args


# -- client ------------------------------------------------------------------------------------------------------


class CtlClient:
    """Talks to one daemon's control socket; every call opens its own connection."""

    def __init__(self, path: Path, timeout: float | None = 30.0) -> None:
        self.path = path
        self.timeout = timeout

    def call(self, cmd: str, **args: Any) -> Any:
        """The result of a plain command; :class:`CommandFailed` with the daemon's reason on ``ok: false``."""
        stream = self.stream(cmd, **args)
        for _item in stream:
            pass
        return stream.result

    def stream(self, cmd: str, **args: Any) -> StreamReader:
        """Iterate over a streaming command's items; ``.result`` holds the final result afterwards."""
        return StreamReader(self._connect(), _encode({"cmd": cmd, "args": args}), self.timeout)

    def _connect(self) -> socket.socket:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(str(self.path))
        except (FileNotFoundError, ConnectionRefusedError, NotADirectoryError) as exc:
            sock.close()
            raise NoDaemon(f"no oaiod daemon is running (nothing listens on {self.path}: {exc.strerror})") from None
        except OSError as exc:
            sock.close()
            raise CtlError(f"cannot connect to {self.path}: {exc.strerror or exc}") from None
        return sock


class StreamReader:
    """Reads one answer: yields ``stream`` items; the final line sets :attr:`result` or raises."""

    def __init__(self, sock: socket.socket, request: bytes, timeout: float | None) -> None:
        self._sock = sock
        self._request = request
        self.result: Any = None

    def __iter__(self) -> Iterator[Any]:
        try:
            self._sock.sendall(self._request)
            with self._sock.makefile("rb") as reader:
                while True:
                    line = reader.readline(MAX_LINE + 1)
                    if not line:
                        raise CtlError("the daemon closed the connection without an answer (stopping?)")
                    message = json.loads(line)
                    if not message.get("ok"):
                        raise CommandFailed(str(message.get("error", "unknown error")), str(message.get("kind")))
                    if "stream" in message:
                        yield message["stream"]
                        continue
                    self.result = message.get("result")
                    return
        except TimeoutError:
            raise CtlError("the daemon did not answer in time") from None
        except json.JSONDecodeError as exc:
            raise CtlError(f"unreadable answer from the daemon: {exc}") from None
        except OSError as exc:
            raise CtlError(f"control connection failed: {exc.strerror or exc}") from None
        finally:
            self._sock.close()
