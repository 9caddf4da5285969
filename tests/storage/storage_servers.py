"""Real servers for the storage tests, all on 127.0.0.1 with random ports, and a fault proxy.

* :func:`start_webdav` — wsgidav + cheroot in a thread, one user with a password (basic auth).
* :func:`start_moto` — moto's S3 server in a subprocess (its request handling buffers whole bodies, so it stays
  out of the process whose memory the tests measure). With ``auth`` it checks IAM credentials, so wrong keys are
  refused; moto 5.0's signature check rejects every percent-encoded key (``ä``, ``+``, ``,``), so the suite
  runs against a server without auth and uses an authenticating one only to see wrong keys refused.
* :class:`FaultProxy` — a TCP proxy that answers the first N connections with ``503 Service Unavailable`` and
  then forwards bytes untouched: the transient failure that the retry wrapper must absorb, injected at the
  transport instead of by patching a library.
* :func:`read_only_folder` — a folder where writes fail with a permission error even for root.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

WEBDAV_USER = "alice"
WEBDAV_PASSWORD = "wonder-land-secret"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, timeout: float = 20.0, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode} before listening on {port}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {timeout} s")


@dataclass
class WebDavServer:
    url: str
    root: Path
    port: int
    server: object

    def stop(self) -> None:
        self.server.stop()  # type: ignore[attr-defined]


def start_webdav(root: Path) -> WebDavServer:
    """A wsgidav server for ``root`` on a random loopback port, user :data:`WEBDAV_USER`."""
    from cheroot import wsgi
    from wsgidav.wsgidav_app import WsgiDAVApp

    config = {
        "host": "127.0.0.1",
        "port": 0,
        "provider_mapping": {"/": str(root)},
        "simple_dc": {"user_mapping": {"*": {WEBDAV_USER: {"password": WEBDAV_PASSWORD}}}},
        "http_authenticator": {"accept_basic": True, "accept_digest": False, "default_to_digest": False},
        "verbose": 0,
        "logging": {"enable": False},
        "dir_browser": {"enable": False},
    }
    app = WsgiDAVApp(config)
    server = wsgi.Server(("127.0.0.1", 0), app, numthreads=8)
    server.prepare()
    port = server.bind_addr[1]
    threading.Thread(target=server.serve, name="webdav-server", daemon=True).start()
    wait_for_port(port)
    return WebDavServer(url=f"http://127.0.0.1:{port}", root=root, port=port, server=server)


@dataclass
class MotoServer:
    url: str
    port: int
    proc: subprocess.Popen
    access_key_id: str = ""
    secret_access_key: str = ""

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def start_moto(log_path: Path, *, auth: bool = False) -> MotoServer:
    """moto's S3 (and IAM) server in a subprocess; with ``auth``, IAM auth is enforced after the setup calls."""
    port = free_port()
    env = {**os.environ, "MOTO_ALLOW_NONEXISTENT_REGION": "true"}
    if auth:
        env["INITIAL_NO_AUTH_ACTION_COUNT"] = "3"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
        )
    server = MotoServer(url=f"http://127.0.0.1:{port}", port=port, proc=proc, access_key_id="test",
                        secret_access_key="test")  # fmt: skip
    try:
        wait_for_port(port, proc=proc)
        if auth:
            _create_s3_user(server)
    except BaseException:
        server.stop()
        raise
    return server


def _create_s3_user(server: MotoServer) -> None:
    """Spend the unauthenticated calls on an IAM user with full S3 rights and its access key."""
    import boto3

    iam = boto3.client(
        "iam", endpoint_url=server.url, region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x"
    )
    iam.create_user(UserName="oaiod")
    policy = '{"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}'
    iam.put_user_policy(UserName="oaiod", PolicyName="s3", PolicyDocument=policy)
    key = iam.create_access_key(UserName="oaiod")["AccessKey"]
    server.access_key_id = key["AccessKeyId"]
    server.secret_access_key = key["SecretAccessKey"]


class FaultProxy:
    """Forwards TCP connections to ``target_port``, answering the first ``failures`` of them with a 503."""

    def __init__(self, target_port: int, failures: int = 1) -> None:
        self.target_port = target_port
        self.failures_left = failures
        self.faults = 0
        self._lock = threading.Lock()
        self._sock = socket.create_server(("127.0.0.1", 0))
        self.port = self._sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._closed = False
        threading.Thread(target=self._accept, name="fault-proxy", daemon=True).start()

    def _accept(self) -> None:
        while not self._closed:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            with self._lock:
                fail = self.failures_left > 0
                if fail:
                    self.failures_left -= 1
                    self.faults += 1
            target = self._fail if fail else self._forward
            threading.Thread(target=target, args=(conn,), daemon=True).start()

    @staticmethod
    def _fail(conn: socket.socket) -> None:
        with conn:
            conn.settimeout(5)
            data = b""
            with contextlib.suppress(OSError):
                while b"\r\n\r\n" not in data and len(data) < 65536:
                    chunk = conn.recv(65536)
                    if not chunk:
                        break
                    data += chunk
                conn.sendall(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")

    def _forward(self, conn: socket.socket) -> None:
        try:
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
        except OSError:
            conn.close()
            return
        threading.Thread(target=self._pipe, args=(upstream, conn), daemon=True).start()
        self._pipe(conn, upstream)

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        try:
            while chunk := src.recv(1 << 20):
                dst.sendall(chunk)
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                dst.shutdown(socket.SHUT_WR)
            with contextlib.suppress(OSError):
                src.close()

    def close(self) -> None:
        self._closed = True
        self._sock.close()


@contextlib.contextmanager
def read_only_folder(path: Path) -> Iterator[Path]:
    """``path`` as a folder where creating files fails with a permission error.

    Not root: mode 0555. Root ignores modes, so a read-only tmpfs is mounted there instead; a RuntimeError says
    when neither works.
    """
    path.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        path.chmod(0o555)
        try:
            yield path
        finally:
            path.chmod(0o755)
        return
    mount, umount = shutil.which("mount"), shutil.which("umount")
    if not (mount and umount):
        raise RuntimeError("running as root without mount(8): cannot make a read-only folder")
    result = subprocess.run([mount, "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(path)], capture_output=True)
    if result.returncode:
        raise RuntimeError(f"running as root and cannot mount a read-only tmpfs: {result.stderr.decode().strip()}")
    try:
        yield path
    finally:
        subprocess.run([umount, str(path)], check=False)
