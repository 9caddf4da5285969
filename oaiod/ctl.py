"""The control protocol: JSON lines over the owner-only Unix socket; the daemon serves it, ``oaiod ctl`` calls it.

One request per connection line: ``{"cmd": NAME, "args": {...}}``. A plain command answers one line,
``{"ok": true, "result": ...}`` or ``{"ok": false, "error": TEXT}``. A streaming command (``log -f``,
``sync --wait``) first answers any number of ``{"ok": true, "stream": ITEM}`` lines, then the final line.

The socket lives in a 0700 folder and is created 0600; on Linux a peer of another uid is refused
(``SO_PEERCRED``) even if the permissions were loosened. Requests are untrusted: a line is at most
:data:`MAX_LINE` bytes, ``cmd`` must name a known command and ``args`` must be an object.

Errors of this boundary::

    OaiodError
    └── CtlError             the control connection failed
        ├── NoDaemon         nothing listens on the socket (``oaiod ctl`` exits with code 3)
        └── CommandFailed    the daemon answered ``ok: false``; ``str()`` is its reason
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import datetime
import json
import logging
import os
import selectors
import socket
import stat
import struct
import threading
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path, PurePath
from typing import Any

from oaiod import model
from oaiod.errors import OaiodError, ValidationError

log = logging.getLogger(__name__)

MAX_LINE = 1024 * 1024
HEARTBEAT = object()  #: a streaming handler yields this to let the server check that the client is still there
Handler = Callable[[dict[str, Any]], Any]  #: returns a JSON value, or a :class:`Stream` for streaming commands


class CtlError(OaiodError):
    """The control connection failed."""


class NoDaemon(CtlError):
    """No daemon listens on the control socket."""


class CommandFailed(CtlError):
    """The daemon refused or failed the command."""


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
    return uid


class CtlServer:
    """Serves control requests on a Unix socket; one thread accepts, one thread per connection answers."""

    def __init__(self, path: Path, handlers: Mapping[str, Handler]) -> None:
        self.path = path
        self.handlers = handlers
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
            conn.sendall(_encode({"ok": False, "error": str(exc)}))
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
                        raise CommandFailed(str(message.get("error", "unknown error")))
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


# -- the daemon's side: one handler per ctl command --------------------------------------------------------------


def jsonable(value: Any) -> Any:
    """``value`` as plain JSON types: dataclasses become objects, paths and stamps strings, sets lists."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {str(key): jsonable(item) for key, item in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [jsonable(item) for item in value]
    if isinstance(value, Path | PurePath):
        return str(value)
    if isinstance(value, datetime.datetime | datetime.date):
        return value.isoformat()
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if hasattr(value, "__dict__"):
        return {key: jsonable(item) for key, item in vars(value).items() if not key.startswith("_")}
    return str(value)


def _arg(args: Mapping[str, Any], name: str, check: Callable[[Any, str], Any] | None = None, default: Any = ...) -> Any:
    """One request argument, validated; a missing or bad one is a :class:`CommandFailed` naming it."""
    if name not in args:
        if default is ...:
            raise CommandFailed(f"missing argument {name!r}")
        return default
    value = args[name]
    if check is None:
        return value
    try:
        return check(value, name)
    except ValidationError as exc:
        raise CommandFailed(str(exc)) from None


def _flag(value: Any, name: str) -> bool:
    if not isinstance(value, bool):
        raise ValidationError(name, "must be true or false")
    return value


def _count(value: Any, name: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= 100_000:
        raise ValidationError(name, "must be a whole number between 0 and 100000")
    return value


def _local_path(value: Any, name: str) -> Path:
    if not isinstance(value, str) or not value or "\0" in value:
        raise ValidationError(name, "must be a path")
    path = Path(value).expanduser()
    if not path.is_absolute():
        raise ValidationError(name, "must be an absolute path (the CLI makes it absolute)")
    return path


QUEUE_GRACE = 2.0  #: seconds a state-changing command waits for its result before answering "queued"


def daemon_handlers(daemon: Any) -> dict[str, Handler]:
    """The command table the daemon serves; ``daemon`` is an :class:`oaiod.daemon.Daemon`.

    Three kinds of command (design §6): reads and server-side calls (status, ls, users, share…) answer at once,
    even during a sync cycle; commands that change the engine's state (add, remove, confirm-delete, restore,
    rebuild-index) are queued to run between cycles and answer their result when it comes within
    :data:`QUEUE_GRACE`, else ``{"queued": …}`` — with ``wait: true`` they stream progress until the result.
    """

    def scheduler() -> Any:
        daemon.ready.wait(600)  # commands sent while the daemon starts wait for it
        if daemon.scheduler is None:
            daemon.engine()  # raises with the reason
        return daemon.scheduler

    def queued(what: str, func: Callable[[Any], Any], args: Mapping[str, Any], *, resync: bool = True) -> Any:
        def operation() -> Any:
            result = func(daemon.engine())
            daemon.rewatch()
            if resync and daemon.scheduler is not None:
                daemon.scheduler.trigger(what, force=True)
            return jsonable(result)

        wait = _arg(args, "wait", _flag, False)
        return _answer_future(daemon, what, scheduler().submit(what, operation), wait)

    def read(func: Callable[[Any], Any]) -> Any:
        daemon.ready.wait(600)
        return jsonable(func(daemon.engine()))

    def in_main(what: str, func: Callable[[], Any], args: Mapping[str, Any]) -> Any:
        return _answer_future(daemon, what, daemon.call_in_main(func), _arg(args, "wait", _flag, False))

    def rebuild(args: Mapping[str, Any]) -> Any:
        daemon.ready.wait(600)
        handle = daemon.handle
        if daemon.scheduler is not None and hasattr(getattr(handle, "engine", None), "rebuild_index"):
            return _answer_future(
                daemon,
                "ctl rebuild-index",
                daemon.scheduler.submit("ctl rebuild-index", daemon.forget_index),
                _arg(args, "wait", _flag, False),
            )
        return in_main("ctl rebuild-index", daemon.rebuild_index, args)  # no engine: no cycle to wait for

    def right(value: Any, name: str) -> str:
        return model.validate_access_right(value, name, allow_none=False)

    obj = lambda args: _arg(args, "oaio_id", model.validate_oaio_id)  # noqa: E731
    user = lambda args: _arg(args, "user", model.validate_username)  # noqa: E731

    def add(args: Mapping[str, Any]) -> Any:
        path = _arg(args, "path", _local_path)
        return queued(f"ctl add {path}", lambda e: e.add_folder(path), args)

    def remove(args: Mapping[str, Any]) -> Any:
        oaio_id = obj(args)
        return queued(f"ctl remove {oaio_id}", lambda e: e.remove(oaio_id), args)

    def confirm_delete(args: Mapping[str, Any]) -> Any:
        oaio_id = obj(args)
        return queued(f"ctl confirm-delete {oaio_id}", lambda e: e.confirm_delete(oaio_id), args)

    def restore(args: Mapping[str, Any]) -> Any:
        oaio_id, stamp = obj(args), _arg(args, "stamp", model.validate_stamp)
        to = _arg(args, "to", _local_path, None)
        return queued(f"ctl restore {oaio_id} {stamp}", lambda e: e.restore(oaio_id, stamp, to=to), args)

    return {
        "ping": lambda args: {"pid": os.getpid()},
        "status": lambda args: jsonable(daemon.status()),
        "sync": lambda args: _sync(daemon, scheduler(), _arg(args, "wait", _flag, False)),
        "pause": lambda args: scheduler().pause() or "paused",
        "resume": lambda args: scheduler().resume() or "resumed",
        "stop": lambda args: daemon.request_stop() or "stopping",
        "reload": lambda args: in_main("ctl reload", daemon.reload, args),
        "rebuild-index": rebuild,
        "ls": lambda args: read(_listing),
        "add": add,
        "remove": remove,
        # server-side calls only: safe while a cycle runs (the engine takes no lock for them)
        "share": lambda args: read(lambda e: e.share(obj(args), user(args), _arg(args, "right", right))),
        "unshare": lambda args: read(lambda e: e.unshare(obj(args), user(args))),
        "users": lambda args: read(lambda e: e.users(obj(args))),
        "conflicts": lambda args: read(lambda e: e.conflicts()),
        "confirm-delete": confirm_delete,
        "history": lambda args: read(lambda e: e.history()),
        "versions": lambda args: read(lambda e: e.versions(obj(args))),
        "restore": restore,
        "log": lambda args: _log(daemon, _arg(args, "lines", _count, 50), _arg(args, "follow", _flag, False)),
    }


def _answer_future(daemon: Any, what: str, future: concurrent.futures.Future[Any], wait: bool) -> Any:
    """The result when it comes within :data:`QUEUE_GRACE`; else ``{"queued": what}``, or with ``wait`` a stream
    of progress items that ends with the result (or the operation's error)."""
    try:
        return future.result(timeout=QUEUE_GRACE)
    except concurrent.futures.TimeoutError:
        pass
    if not wait:
        return {"queued": what, "detail": "runs when the current sync cycle ends (--wait waits for it)"}

    def items() -> Iterator[Any]:
        while True:
            try:
                future.result(timeout=0.5)
                return
            except concurrent.futures.TimeoutError:
                yield _progress(daemon)
            except Exception:  # raised again by result() below, which the server answers as ok: false
                return

    return Stream(items(), future.result)


def _listing(engine: Any) -> Any:
    """What ``ctl ls`` shows: one row per synced object (the engine's ``objects()`` when it has one)."""
    objects = getattr(engine, "objects", None)
    if callable(objects):
        return objects()
    repo = getattr(engine, "repo", None)
    if repo is None:
        return [{"path": str(root)} for root in engine.roots()]
    return [
        {
            "oaio_id": row.oaio_id,
            "kind": row.kind,
            "path": row.local_root,
            "right": row.csh_access_right,
            "status": row.status,
            "stamp": row.synced_stamp,
            "owner": row.username,
        }
        for row in repo.objects()
    ]


def _sync(daemon: Any, scheduler: Any, wait: bool) -> Any:
    """``ctl sync``: request a cycle now (even while backing off); ``--wait`` streams progress until it ended."""
    if scheduler.paused:
        raise CommandFailed("sync is paused; run: oaiod ctl resume")
    number = scheduler.trigger("ctl sync", force=True)
    if not wait:
        return {"requested": number}
    outcome: list[Any] = []

    def items() -> Iterator[Any]:
        while not outcome:
            done = scheduler.wait_for_cycle(number, 0.5)
            if done is not None:
                outcome.append(done)
                return
            if not scheduler.running:
                raise CommandFailed("the daemon is stopping")
            yield _progress(daemon)

    def result() -> Any:
        done = outcome[0]
        if done.error is not None:
            raise CommandFailed(f"sync failed: {done.error}")
        return {"cycle": done.number, "report": jsonable(done.report)}

    return Stream(items(), result)


def _progress(daemon: Any) -> Any:
    try:
        return {"state": daemon.state(), "progress": jsonable(getattr(daemon.engine(), "progress", None))}
    except OaiodError:
        return {"state": daemon.state(), "progress": None}


def _log(daemon: Any, lines: int, follow: bool) -> Any:
    buffer = daemon.log_buffer
    recent = buffer.since(0)[-lines:] if lines else []
    if not follow:
        return [line for _, line in recent]
    start = recent[0][0] - 1 if recent else buffer.counter

    def items() -> Iterator[Any]:
        for line in daemon.follow_log(start, lambda: False):
            yield HEARTBEAT if line is None else line

    return Stream(items(), lambda: None)
