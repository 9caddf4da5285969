"""End to end: a real hub (the ``hub`` fixture, loopback HTTP, Local storage in a tmp folder) and two real
daemon processes (``python -m oaiod.daemon_cli --config … run``: two configs, two roots, two device ids, one
user) converge on created, modified, renamed and deleted files and folders; a daemon killed with SIGKILL in
the middle of an upload converges after a restart."""

from __future__ import annotations

import hashlib
import os
import signal
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from daemon_helpers import DaemonProcess, wait_for, write_config

pytestmark = pytest.mark.integration

CONFIG = """
[server]
url = "{url}"
username = "alice"
password_file = "{password_file}"
csh_id = "Local"
[client]
root = "{root}"
device_id = "{device}"
[sync]
interval = 20
debounce = 0.3
[limits]
upload = {upload}
[log]
level = "DEBUG"
"""


@pytest.fixture
def make_daemon(hub: Any, tmp_path: Path) -> Iterator[Callable[..., DaemonProcess]]:
    storage = tmp_path / "csh-local"
    storage.mkdir()
    hub.service.set_storage("Local", {"root_folder": str(storage)})
    password_file = tmp_path / "alice.pw"
    fd = os.open(password_file, os.O_WRONLY | os.O_CREAT, 0o600)
    os.write(fd, hub.users["alice"].encode() + b"\n")
    os.close(fd)
    started: list[DaemonProcess] = []

    def make(device: str, upload: int = 0) -> DaemonProcess:
        text = CONFIG.format(
            url=hub.url, password_file=password_file, root=tmp_path / device, device=device, upload=upload
        )
        proc = DaemonProcess(write_config(tmp_path / f"{device}.toml", text), real=True).ready()
        started.append(proc)
        return proc

    yield make
    for proc in started:
        proc.stop()


def tree(root: Path) -> dict[str, str]:
    """Relative path -> sha256 of every synced file (oaiod's own folders and conflicted copies included)."""
    found = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        if path.is_file() and not rel.startswith(".oaiod"):
            found[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
    return found


def converged(a: DaemonProcess, b: DaemonProcess, expect: set[str]) -> bool:
    ta, tb = tree(a.config.client.root), tree(b.config.client.root)
    return ta == tb and set(ta) == expect


def test_two_daemons_converge(make_daemon: Callable[..., DaemonProcess]) -> None:
    a = make_daemon("dev-a")
    b = make_daemon("dev-b")
    ra, rb = a.config.client.root, b.config.client.root
    wait_for(lambda: a.call("status")["last_sync"] and b.call("status")["last_sync"], 120, "first cycles")

    (ra / "hello.txt").write_text("hello from a")
    (ra / "docs").mkdir()
    (ra / "docs" / "note.md").write_text("# note")
    wait_for(lambda: converged(a, b, {"hello.txt", "docs/note.md"}), 120, "created files on b")

    (rb / "hello.txt").write_text("changed on b")
    wait_for(lambda: (ra / "hello.txt").read_text() == "changed on b", 120, "modification on a")

    (ra / "docs" / "note.md").rename(ra / "docs" / "renamed.md")
    (ra / "docs").rename(ra / "papers")
    wait_for(lambda: converged(a, b, {"hello.txt", "papers/renamed.md"}), 120, "renames on b")

    (rb / "hello.txt").unlink()
    wait_for(lambda: converged(a, b, {"papers/renamed.md"}), 120, "deletion on a")
    assert any(p.name == "hello.txt" for p in (ra / ".oaiod").rglob("*")), "deleted file kept in a's trash"

    status = a.call("status")
    assert status["state"] in ("idle", "syncing") and status["device_id"] == "dev-a"
    assert a.call("ls")


def test_kill_9_during_upload_then_restart_converges(make_daemon: Callable[..., DaemonProcess]) -> None:
    a = make_daemon("dev-a", upload=1_000_000)  # 1 MB/s: the 6 MB upload takes a few seconds
    b = make_daemon("dev-b")
    wait_for(lambda: a.call("status")["last_sync"] and b.call("status")["last_sync"], 120, "first cycles")
    data = os.urandom(6 * 1024 * 1024)
    (a.config.client.root / "big.bin").write_bytes(data)
    wait_for(lambda: (a.call("status")["engine"].get("current") or {}).get("path"), 120, "the upload to start")
    config_file = a.config_file
    a.stop(signal.SIGKILL)
    (a.config.client.root / "small.txt").write_text("written while a was down")
    a2 = DaemonProcess(config_file, real=True).ready()
    try:
        want = {"big.bin", "small.txt"}
        wait_for(lambda: converged(a2, b, want), 180, "convergence after the restart")
        assert (b.config.client.root / "big.bin").read_bytes() == data
    finally:
        a2.stop()


def test_embedded_defaults_sync_oaio_root(isolated_home: Path) -> None:
    """`oaiod run` without a config: in-process hub (Hub storage), a generated user and password, ~/oaio_root."""
    config_file = isolated_home / "unused.toml"  # DaemonProcess needs a path; the daemon gets none (see env)
    config_file.write_text("")
    proc = DaemonProcess.__new__(DaemonProcess)
    from oaiod.config import load_config
    from oaiod.ctl import CtlClient

    proc.config_file, proc.config = config_file, load_config(None)
    proc.client = CtlClient(proc.config.paths.socket, timeout=60)
    proc.stderr_file = isolated_home / "embedded.stderr"
    proc._stderr = proc.stderr_file.open("w")
    import subprocess
    import sys

    proc.proc = subprocess.Popen([sys.executable, "-m", "oaiod.daemon_cli", "run"], stderr=proc._stderr)
    try:
        proc.ready()
        wait_for(lambda: proc.call("status")["last_sync"], 120, "the first cycle")
        (isolated_home / "oaio_root" / "note.txt").write_text("hello")
        wait_for(lambda: "(1 files)" in proc.config.log_file.read_text(), 120, "the file committed")
        status = proc.call("status")
        assert status["server"].startswith("http://127.0.0.1:") and status["state"] in ("idle", "syncing")
        password = proc.config.paths.embedded_password_file
        assert password.stat().st_mode & 0o777 == 0o600
        assert proc.config.paths.hub_url_file.read_text().strip() == status["server"]
    finally:
        assert proc.stop() == 0
