"""A Koofr-API server on loopback over a folder: the part of the API that the published client's ``DigiApi``
and rclone's ``koofr`` remote call, so both can be run against one store (Digi Storage itself cannot be reached
from the test machines). It runs in a subprocess (:func:`start_koofr`): it holds a whole upload in memory, which
must not count against the memory bounds the conformance suite measures in the test process.

What it serves, and nothing more: a log-in by ``GET /token`` (``X-Koofr-Email`` / ``X-Koofr-Password``, what the
published client does) or HTTP basic auth on every call (what rclone 1.60 does); one mount, ``DIGIstorage``,
primary; per path ``info``, ``list``, ``folder``, ``remove``, ``copy``, ``move``, and ``get`` / ``put`` of
contents. Paths are taken from the mount's root with or without a leading ``/`` (the published client sends
them without). Answers follow the shapes of Koofr's Go client (github.com/koofr/go-koofrclient); whatever a
real Digi Storage does beyond that is not modelled.
"""

from __future__ import annotations

import base64
import email.parser
import email.policy
import http.server
import json
import os
import posixpath
import secrets
import shutil
import subprocess
import sys
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MOUNT_ID = "m-digistorage"


@dataclass
class KoofrStore:
    email: str
    password: str
    root: Path  #: the mount's content: a path's file or folder under here
    log: Path  #: one line per logged-in request: method, path, auth kind (token or basic)
    tokens: set[str] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)


def _norm(path: str) -> str:
    return posixpath.normpath("/" + path).strip("/") if path.strip("/") else ""


class KoofrHandler(http.server.BaseHTTPRequestHandler):
    store: KoofrStore

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def _reply(self, status: int, body: Any = None, headers: dict[str, str] | None = None) -> None:
        data = body if isinstance(body, bytes) else json.dumps(body).encode() if body is not None else b""
        self.send_response(status)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.send_header("Content-Type", "application/octet-stream" if isinstance(body, bytes) else "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _auth(self) -> str:
        """``token``, ``basic``, or "" when the request is not logged in."""
        given = self.headers.get("Authorization", "")
        store = self.store
        if given.startswith("Basic "):
            user, _, password = base64.b64decode(given[6:]).decode().partition(":")
            return "basic" if (user, password) == (store.email, store.password) else ""
        token = given.removeprefix("Token ").removeprefix("token=")
        return "token" if token in store.tokens else ""

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() != "chunked":  # rclone streams uploads chunked
            return self.rfile.read(int(self.headers.get("Content-Length") or 0))
        chunks = []
        while size := int(self.rfile.readline().split(b";")[0].strip() or b"0", 16):
            chunks.append(self.rfile.read(size))
            self.rfile.readline()
        self.rfile.readline()  # the empty line after the last chunk (no trailers)
        return b"".join(chunks)

    def _handle(self) -> None:
        url = urllib.parse.urlsplit(self.path)
        query = dict(urllib.parse.parse_qsl(url.query, keep_blank_values=True))
        store = self.store
        if url.path == "/token":
            if (self.headers.get("X-Koofr-Email"), self.headers.get("X-Koofr-Password")) != (
                store.email,
                store.password,
            ):
                return self._reply(401, {"error": "wrong email or password"})
            token = secrets.token_hex(8)
            store.tokens.add(token)
            return self._reply(200, {"token": token}, {"X-Koofr-Token": token})
        auth = self._auth()
        with store.lock, store.log.open("a") as log:
            log.write(f"{self.command} {url.path} {auth or '-'}\n")
        if not auth:
            return self._reply(401, {"error": "not logged in"})
        if url.path == "/api/v2/mounts":
            return self._reply(200, {"mounts": [{"id": MOUNT_ID, "name": "DIGIstorage", "type": "device",
                                                 "isPrimary": True, "online": True}]})  # fmt: skip
        if url.path == f"/api/v2/mounts/{MOUNT_ID}":
            return self._reply(200, {"id": MOUNT_ID, "name": "DIGIstorage", "isPrimary": True})
        prefix, _, action = url.path.rpartition("/files/")
        if prefix not in (f"/api/v2/mounts/{MOUNT_ID}", f"/content/api/v2/mounts/{MOUNT_ID}"):
            return self._reply(404, {"error": f"no route {url.path}"})
        path = _norm(query.get("path", ""))
        with store.lock:
            self._files(action, path, query)

    def _info(self, path: str) -> dict[str, Any] | None:
        target = self.store.root / path
        if target.is_file():
            st = target.stat()
            return {"name": target.name, "type": "file", "size": st.st_size, "modified": st.st_mtime_ns // 1_000_000,
                    "contentType": "application/octet-stream", "hash": ""}  # fmt: skip
        if target.is_dir():
            return {"name": target.name, "type": "dir", "size": 0, "modified": 0, "contentType": "", "hash": ""}
        return None

    def _files(self, action: str, path: str, query: dict[str, str]) -> None:
        root = self.store.root
        target, info = root / path, self._info(path)
        if action == "info":
            return self._reply(200, info) if info else self._reply(404, {"error": "not found"})
        if action == "list":
            if not target.is_dir():
                return self._reply(404, {"error": "not found"})
            return self._reply(
                200, {"files": [self._info(_norm(f"{path}/{child.name}")) for child in sorted(target.iterdir())]}
            )
        if action == "folder":
            new = target / json.loads(self._body() or b"{}").get("name", "")
            if not target.is_dir():
                return self._reply(404, {"error": "parent not found"})
            if new.exists():  # Koofr's answer, which rclone's koofr remote takes as "made meanwhile"
                return self._reply(400, {"error": "exists"})
            new.mkdir()
            return self._reply(201, {})
        if action == "remove":
            if info is None or not path:
                return self._reply(404, {"error": "not found"})
            shutil.rmtree(target) if target.is_dir() else target.unlink()
            return self._reply(200, {})
        if action == "get":
            return self._reply(200, target.read_bytes()) if target.is_file() else self._reply(404, {"error": "no"})
        if action == "put":
            return self._put(path, query)
        if action in ("copy", "move"):
            dest = root / _norm(json.loads(self._body() or b"{}").get("toPath", ""))
            if not target.is_file() or not dest.parent.is_dir():
                return self._reply(404, {"error": "not found"})
            (shutil.move if action == "move" else shutil.copy2)(target, dest)
            return self._reply(200, {})
        return self._reply(404, {"error": f"no action {action}"})

    def _put(self, folder: str, query: dict[str, str]) -> None:
        if not (self.store.root / folder).is_dir():
            return self._reply(404, {"error": "folder not found"})
        message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
            f"Content-Type: {self.headers.get('Content-Type')}\r\n\r\n".encode() + self._body()
        )
        part = next(iter(message.iter_parts()))  # type: ignore[attr-defined]
        name = query.get("filename") or part.get_filename()
        target = self.store.root / folder / name
        if target.exists() and query.get("overwrite") != "true":  # Koofr does not overwrite: a name of its own
            name = f"{target.stem} (1){target.suffix}"
            target = target.with_name(name)
        target.write_bytes(part.get_payload(decode=True) or b"")
        if query.get("modified"):
            os.utime(target, ns=(time.time_ns(), int(query["modified"]) * 1_000_000))
        info = self._info(_norm(f"{folder}/{name}"))
        return self._reply(200, info if query.get("info") == "true" else [{"name": name}])

    do_GET = do_POST = do_PUT = do_DELETE = _handle


@dataclass
class KoofrServer:
    url: str
    root: Path
    log: Path
    proc: subprocess.Popen[bytes]

    def requests(self) -> list[tuple[str, str, str]]:
        """(method, path, auth kind) of every logged-in request so far."""
        lines = self.log.read_text().splitlines() if self.log.exists() else []
        return [(method, path, auth) for method, path, auth in (line.split(" ") for line in lines)]

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


def start_koofr(folder: Path, email_address: str, password: str) -> KoofrServer:
    """The server in a subprocess, its mount's content in ``folder/mount``; the password goes on its stdin."""
    root, log = folder / "mount", folder / "koofr-requests.log"
    root.mkdir(parents=True)
    proc = subprocess.Popen(
        [sys.executable, __file__, str(root), str(log), email_address],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE,
    )  # fmt: skip
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(password.encode() + b"\n")
    proc.stdin.close()
    port = int(proc.stdout.readline() or b"0")
    if not port:
        raise RuntimeError(f"the Koofr server did not start (exit {proc.wait(10)})")
    return KoofrServer(f"http://127.0.0.1:{port}", root, log, proc)


def _serve(root: str, log: str, email_address: str) -> None:
    store = KoofrStore(email_address, sys.stdin.readline().rstrip("\n"), Path(root), Path(log))
    handler = type("Handler", (KoofrHandler,), {"store": store})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    print(server.server_address[1], flush=True)
    server.serve_forever()


if __name__ == "__main__":
    _serve(*sys.argv[1:4])
