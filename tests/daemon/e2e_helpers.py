"""End-to-end helpers: a hub with daemon processes of several users and devices, tree comparison, and a fault
proxy that holds the commit point (``upload/``) so a test can kill a daemon exactly there.

Every daemon is a real process (``python -m oaiod.daemon.cli --config … run``) on the ``hub`` fixture over
loopback HTTP, with Local storage in the test's tmp folder (the same folder for every user and the published
client). Nothing here sleeps to assert: tests poll with generous timeouts.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import signal
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from daemon_helpers import DaemonProcess, wait_for, write_config

from oaiod.engine.ignore import TEMP_PREFIX

CONFIG = """
[server]
url = "{url}"
username = "{user}"
password_file = "{password_file}"
csh_id = "Local"
[client]
root = "{root}"
device_id = "{device}"
[sync]
interval = {interval}
debounce = {debounce}
[limits]
upload = {upload}
download = {download}
[log]
level = "{log_level}"
"""

MEASUREMENTS: list[str] = []  #: lines printed in the terminal summary (tests/daemon/conftest.py)


def report(line: str) -> None:
    """A measured number: printed now (visible with ``-s``) and again in pytest's terminal summary."""
    print(line)
    MEASUREMENTS.append(line)


@dataclass
class Cluster:
    """Daemons of the hub's users (alice, bob, carol), each device with its own config, root and state."""

    hub: Any
    base: Path
    storage: Path
    started: list[DaemonProcess] = field(default_factory=list)

    def password_file(self, user: str) -> Path:
        path = self.base / f"{user}.pw"
        if not path.exists():
            fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
            os.write(fd, self.hub.users[user].encode() + b"\n")
            os.close(fd)
        return path

    def config(self, device: str, user: str = "alice", **options: Any) -> Path:
        """Write the config of ``device`` (``url``, ``upload``, ``download``, ``interval``, ``log_level``,
        ``debounce``)."""
        values = {"upload": 0, "download": 0, "interval": 20, "log_level": "DEBUG", "url": self.hub.url}
        values["debounce"] = 0.3
        values.update(options)
        text = CONFIG.format(
            user=user, password_file=self.password_file(user), root=self.base / device, device=device, **values
        )
        return write_config(self.base / f"{device}.toml", text)

    def start(self, device: str, user: str = "alice", **options: Any) -> DaemonProcess:
        """Start (or, with an existing config and no options, restart) the daemon of ``device``."""
        config = self.base / f"{device}.toml"
        if options or not config.exists():
            config = self.config(device, user, **options)
        proc = DaemonProcess(config, real=True)
        self.started.append(proc)
        return proc.ready()

    def stop_all(self) -> None:
        """SIGTERM every daemon at once, then wait: each stop may wait up to 2 s for its long poll."""
        for proc in self.started:
            if proc.proc.poll() is None:
                proc.proc.send_signal(signal.SIGTERM)
        for proc in self.started:
            try:
                proc.proc.wait(60)
            finally:
                proc.close()


def root_of(proc: DaemonProcess) -> Path:
    return proc.config.client.root


_HASHES: dict[tuple[str, int, int, int], str] = {}  # (path, size, mtime_ns, inode) -> sha256: cheap polling


def tree(root: Path) -> dict[str, str]:
    """Relative path -> sha256 of every file under ``root`` except oaiod's state folder ``.oaiod/``.

    Temp files of downloads (``.oaiod-tmp-*``) anywhere else are included, so a converged tree has none.
    """
    found = {}
    paths = []
    for folder, dirs, files in os.walk(root):  # a folder renamed away while walked is skipped (rglob raised)
        dirs[:] = [name for name in dirs if not (folder == str(root) and name == ".oaiod")]
        paths += [Path(folder, name) for name in files]
    for path in sorted(paths):
        rel = path.relative_to(root).as_posix()
        try:
            info = path.lstat()
            if not path.is_file() or path.is_symlink():
                continue
            key = (str(path), info.st_size, info.st_mtime_ns, info.st_ino)
            if key not in _HASHES:
                digest = hashlib.sha256()
                with path.open("rb") as stream:
                    while chunk := stream.read(1 << 20):
                        digest.update(chunk)
                _HASHES[key] = digest.hexdigest()
            found[rel] = _HASHES[key]
        except FileNotFoundError:  # renamed or deleted while we looked: the next poll sees it
            continue
    return found


def temp_files(root: Path) -> list[str]:
    """Download temp files left in the user's folders (oaiod's own ``.oaiod/`` excluded)."""
    return [
        p.relative_to(root).as_posix()
        for p in root.rglob(f"{TEMP_PREFIX}*")
        if not p.relative_to(root).as_posix().startswith(".oaiod/")
    ]


def wait_converged(
    procs: Iterable[DaemonProcess],
    expect: set[str] | Callable[[dict[str, str]], bool] | None = None,
    timeout: float = 180.0,
    folders: Iterable[Path] = (),
) -> dict[str, str]:
    """Wait until every daemon's root (or every folder in ``folders``) holds the same files, byte for byte, and
    ``expect`` holds (the set of paths, or a predicate on the tree); returns the tree. A daemon that died fails at
    once with its stderr."""
    procs = list(procs)
    dirs = list(folders) or [root_of(proc) for proc in procs]

    def check() -> dict[str, str] | None:
        for proc in procs:
            if proc.proc.poll() is not None:
                raise AssertionError(f"daemon {proc.config.client.device_id} exited: {proc.stderr()[-3000:]}")
        trees = [tree(folder) for folder in dirs]
        if any(t != trees[0] for t in trees[1:]):
            return None
        if expect is not None and not (expect(trees[0]) if callable(expect) else set(trees[0]) == expect):
            return None
        return trees[0] or {"": ""}

    what = f"convergence of {', '.join(str(d) for d in dirs)}"
    try:
        return wait_for(check, timeout, what, interval=0.25)
    except AssertionError:
        for folder in dirs:
            print(f"--- {folder}: {sorted(tree(folder))[:50]}")
        raise


def local_path(proc: DaemonProcess, oaio_id: str) -> Path:
    """Where ``proc`` keeps the object ``oaio_id`` (waits for it to appear in ``ctl ls``)."""

    def find() -> str | None:
        return next((row["path"] for row in proc.call("ls") if row["oaio_id"] == oaio_id and row.get("path")), None)

    return Path(wait_for(find, 120, f"{oaio_id} on {proc.config.client.device_id}", interval=0.25))


def first_cycles(*procs: DaemonProcess) -> None:
    wait_for(lambda: all(p.call("status")["last_sync"] for p in procs), 120, "the first cycles")


def object_id_of(proc: DaemonProcess, kind: str = "root", path: Path | None = None) -> str:
    """The id of the object of ``kind`` (or at ``path``) that ``ctl ls`` lists."""

    def find() -> str | None:
        for row in proc.call("ls"):
            if (path is None and row.get("kind") == kind) or (path is not None and row.get("path") == str(path)):
                return row["oaio_id"]
        return None

    return wait_for(find, 120, f"the {kind} object in ctl ls")


def server_tree(cluster: Cluster, oaio_id: str, user: str = "alice") -> dict[str, str]:
    """``path -> sha256`` of the newest version of an object on the hub, from oaiod's manifest (design §1)."""
    from oaiod.secrets import Secret
    from oaiod.server_api import OaioServerApi

    api = OaioServerApi(cluster.hub.url, user, Secret(cluster.hub.users[user]), device_id="e2e-check", app_id="e2e")
    try:
        obj = next((o for o in api.stampz().objects if o.oaio_id == oaio_id), None)
    finally:
        api.close()
    if obj is None:
        return {}
    files = (obj.client_values.get("_oaiod") or {}).get("files") or {}
    return {path: entry[2] for path, entry in files.items()}


def wait_committed(cluster: Cluster, oaio_id: str, root: Path, user: str = "alice", timeout: float = 120) -> None:
    """Wait until the hub's newest version of ``oaio_id`` holds exactly the files under ``root``."""

    def check() -> bool:
        return server_tree(cluster, oaio_id, user) == tree(root)

    try:
        wait_for(check, timeout, f"{root} committed")
    except AssertionError:
        remote, local = server_tree(cluster, oaio_id, user), tree(root)
        print("only on the server:", sorted(remote.keys() - local.keys()))
        print("only local:", sorted(local.keys() - remote.keys()))
        print("different:", sorted(k for k in remote.keys() & local.keys() if remote[k] != local[k]))
        raise


def write_tree(root: Path, files: dict[str, str | bytes]) -> None:
    for rel, content in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)


class Stopwatch:
    def __init__(self) -> None:
        self.started = time.monotonic()

    def seconds(self) -> float:
        return time.monotonic() - self.started


# -- the commit-point fault proxy ---------------------------------------------------------------------------------


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a killed daemon's connection breaks mid-answer: expected here, not worth a traceback


class HoldProxy:
    """An HTTP proxy in front of the hub that passes everything through, except that — once armed — it holds the
    first ``POST …/upload/`` (the commit point, design §4): *before* forwarding it (``mode="request"``: the hub
    never sees it), *before* forwarding it and then forwarding it (``mode="delay"``: another device may commit
    meanwhile, so the held one meets a 409) or *after* the hub answered (``mode="response"``: committed, but the
    daemon never hears it).
    :attr:`held` is set when it holds one; :meth:`release` lets it go (to a daemon that is usually dead by then).

    With :attr:`down` set it drops every request unanswered (the connection closes): the server looks offline.

    Fault injection at the transport, as the project's test rules ask: the daemon runs unchanged.
    """

    def __init__(self, upstream: str) -> None:
        parts = urllib.parse.urlsplit(upstream)
        self.upstream_host, self.upstream_port = parts.hostname or "127.0.0.1", parts.port or 80
        self.mode = ""
        self.down = False
        self.held = threading.Event()
        self._release = threading.Event()
        self._lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:  # quiet
                pass

            def _relay(self) -> None:
                proxy.relay(self)

            do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _relay

        self.server = _QuietServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_port}{parts.path}"
        threading.Thread(target=self.server.serve_forever, name="hold-proxy", daemon=True).start()

    def arm(self, mode: str) -> None:
        assert mode in ("request", "delay", "response")
        with self._lock:
            self.mode = mode

    def _take_hold(self, handler: BaseHTTPRequestHandler) -> str:
        with self._lock:
            if handler.command == "POST" and handler.path.rstrip("/").endswith("/upload") and self.mode:
                mode, self.mode = self.mode, ""
                return mode
        return ""

    def _hold(self) -> None:
        self.held.set()
        self._release.wait(120)

    def relay(self, handler: BaseHTTPRequestHandler) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length else None
        if self.down:
            handler.close_connection = True
            return
        hold = self._take_hold(handler)
        if hold in ("request", "delay"):
            self._hold()
            if hold == "request":
                handler.close_connection = True
                return
        headers = {k: v for k, v in handler.headers.items() if k.lower() not in ("host", "connection", "keep-alive")}
        headers["Host"] = f"{self.upstream_host}:{self.upstream_port}"
        conn = http.client.HTTPConnection(self.upstream_host, self.upstream_port, timeout=120)
        try:
            conn.request(handler.command, handler.path, body=body, headers=headers)
            answer = conn.getresponse()
            data = answer.read()
        finally:
            conn.close()
        if hold == "response":
            self._hold()
            handler.close_connection = True
            return
        send_relayed(handler, answer.status, answer.reason, answer.getheaders(), data)

    def release(self) -> None:
        self._release.set()

    def close(self) -> None:
        self.release()
        self.server.shutdown()
        self.server.server_close()


def send_relayed(
    handler: BaseHTTPRequestHandler, status: int, reason: str, headers: list[tuple[str, str]], data: bytes
) -> None:
    """Answer ``handler`` with an upstream answer read in full: its headers less the hop-by-hop ones and its length."""
    handler.send_response(status, reason)
    for key, value in headers:
        if key.lower() not in ("transfer-encoding", "connection", "keep-alive", "content-length"):
            handler.send_header(key, value)
    handler.send_header("Content-Length", str(len(data)))
    handler.end_headers()
    if handler.command != "HEAD":
        handler.wfile.write(data)
