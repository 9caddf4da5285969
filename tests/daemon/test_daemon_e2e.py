"""End to end: a real hub (the ``hub`` fixture, loopback HTTP, Local storage in a tmp folder) and real daemon
processes (``python -m oaiod.daemon.cli --config … run``: one config, root and device id each) converge on
created, modified, renamed and deleted files and folders; a device that was offline catches up; concurrent edits
of one file keep both sides as a conflicted copy. Change propagation A → B is measured and printed (never
asserted). Crashes, sharing, interop, ctl and bulk data have their own modules (``test_daemon_e2e_*.py``)."""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from pathlib import Path

import pytest
from daemon_helpers import DaemonProcess, wait_for
from e2e_helpers import (
    Cluster,
    first_cycles,
    object_id_of,
    report,
    root_of,
    tree,
    wait_committed,
    wait_converged,
    write_tree,
)

pytestmark = pytest.mark.integration


def test_two_daemons_converge_and_propagation_is_measured(cluster: Cluster) -> None:
    a, b = cluster.start("dev-a"), cluster.start("dev-b")
    ra, rb = root_of(a), root_of(b)
    first_cycles(a, b)

    (ra / "hello.txt").write_text("hello from a")
    (ra / "docs").mkdir()
    (ra / "docs" / "note.md").write_text("# note")
    wait_converged([a, b], {"hello.txt", "docs/note.md"})

    (rb / "hello.txt").write_text("changed on b")
    wait_for(lambda: (ra / "hello.txt").read_text() == "changed on b", 120, "modification on a")

    (ra / "docs" / "note.md").rename(ra / "docs" / "renamed.md")
    (ra / "docs").rename(ra / "papers")
    wait_converged([a, b], {"hello.txt", "papers/renamed.md"})
    assert not (rb / "docs").exists()

    (rb / "hello.txt").unlink()
    wait_converged([a, b], {"papers/renamed.md"})
    assert any(p.name == "hello.txt" for p in (ra / ".oaiod").rglob("*")), "deleted file kept in a's trash"

    times = []
    for i in range(5):  # measured, not asserted: the target (median < 2 s) is checked by bench/daemon_propagation.py
        target = rb / f"p{i}.txt"
        started = time.monotonic()
        (ra / f"p{i}.txt").write_text(f"round {i}")
        wait_for(lambda t=target: t.exists(), 120, "propagation")
        times.append(time.monotonic() - started)
    report(
        f"e2e propagation A→B of a small file, {len(times)} rounds: median {statistics.median(times):.2f} s, "
        f"max {max(times):.2f} s"
    )
    status = a.call("status")
    assert status["state"] in ("idle", "syncing") and status["device_id"] == "dev-a"


def test_offline_device_catches_up(cluster: Cluster) -> None:
    """b is stopped while a creates, modifies, renames (file and folder) and deletes; b changed a file meanwhile."""
    a, b = cluster.start("dev-a"), cluster.start("dev-b")
    ra, rb = root_of(a), root_of(b)
    first_cycles(a, b)
    start = {f"proj/src/m{i}.py": f"module {i}" for i in range(12)}
    start |= {f"photos/p{i}.jpg": bytes([i]) * 5000 for i in range(6)}
    start |= {"readme.txt": "v1", "todo.txt": "v1"}
    write_tree(ra, start)
    wait_converged([a, b], set(start))

    assert b.stop() == 0
    (ra / "readme.txt").write_text("v2 from a")
    (ra / "proj" / "src").rename(ra / "proj" / "lib")  # a folder rename (12 files)
    (ra / "photos" / "p0.jpg").rename(ra / "photos" / "first.jpg")
    for i in (1, 2):
        (ra / "photos" / f"p{i}.jpg").unlink()  # 2 of 6: under the mass-deletion threshold
    write_tree(ra, {"new/deep/er.txt": "new while b was away", "new/big.bin": b"\x01" * 300_000})
    (rb / "todo.txt").write_text("edited on b while its daemon was down")
    root_id = object_id_of(a)
    wait_committed(cluster, root_id, ra)

    b2 = cluster.start("dev-b")
    expect = {f"proj/lib/m{i}.py" for i in range(12)} | {"photos/first.jpg", "photos/p3.jpg", "photos/p4.jpg"}
    expect |= {"photos/p5.jpg", "readme.txt", "todo.txt", "new/deep/er.txt", "new/big.bin"}
    final = wait_converged([a, b2], expect)
    assert (ra / "readme.txt").read_text() == "v2 from a"
    assert (ra / "todo.txt").read_text() == "edited on b while its daemon was down"
    assert (rb / "new" / "big.bin").read_bytes() == b"\x01" * 300_000
    assert final == tree(ra)


def test_concurrent_edits_make_a_conflict_copy_and_lose_nothing(cluster: Cluster) -> None:
    """Both daemons paused (``ctl pause``), the file edited on both, a resumed and committed first, then b."""
    a, b = cluster.start("dev-a"), cluster.start("dev-b")
    ra, rb = root_of(a), root_of(b)
    first_cycles(a, b)
    (ra / "report.txt").write_text("base")
    wait_converged([a, b], {"report.txt"})
    root_id = object_id_of(a)
    versions = len(a.call("versions", oaio_id=root_id))

    a.call("pause")
    b.call("pause")
    (ra / "report.txt").write_text("edited on a")
    (rb / "report.txt").write_text("edited on b")
    a.call("resume")
    wait_for(lambda: len(a.call("versions", oaio_id=root_id)) > versions, 120, "a's edit committed")
    b.call("resume")

    def both_kept(files: dict[str, str]) -> bool:
        return len(files) == 2 and "report.txt" in files

    final = wait_converged([a, b], both_kept)
    copy = next(name for name in final if name != "report.txt")
    assert copy.startswith("report (conflicted copy from dev-b ") and copy.endswith(").txt")
    assert (ra / "report.txt").read_text() == (rb / "report.txt").read_text() == "edited on a"
    assert (ra / copy).read_text() == "edited on b"
    conflicts = b.call("conflicts")
    assert any(copy.split("/")[-1] in str(row) for row in conflicts), conflicts
    listed = subprocess.run(
        [sys.executable, "-m", "oaiod.daemon.cli", "--config", str(b.config_file), "ctl", "conflicts", "--json"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert listed.returncode == 0 and "conflicted copy" in listed.stdout


def test_embedded_defaults_sync_oaio_root(isolated_home: Path) -> None:
    """`oaiod run` without a config: in-process hub (Hub storage), a generated user and password, ~/oaio_root."""
    config_file = isolated_home / "unused.toml"  # DaemonProcess needs a path; the daemon gets none (see env)
    config_file.write_text("")
    proc = DaemonProcess.__new__(DaemonProcess)
    from oaiod.daemon.config import load_config
    from oaiod.daemon.ctl.protocol import CtlClient

    proc.config_file, proc.config = config_file, load_config(None)
    proc.client = CtlClient(proc.config.paths.socket, timeout=60)
    proc.stderr_file = isolated_home / "embedded.stderr"
    proc._stderr = proc.stderr_file.open("w")
    proc.proc = subprocess.Popen([sys.executable, "-m", "oaiod.daemon.cli", "run"], stderr=proc._stderr)
    try:
        proc.ready()
        wait_for(lambda: proc.call("status")["last_sync"], 120, "the first cycle")
        (isolated_home / "oaio_root" / "note.txt").write_text("hello")
        wait_for(lambda: "(1 files)" in proc.config.log_file.read_text(), 120, "the file committed")
        status = proc.call("status")
        assert status["server"].startswith("http://127.0.0.1:") and status["state"] in ("idle", "syncing")
        password = proc.config.paths.embedded_password_file
        assert password.stat().st_mode & 0o777 == 0o600
        hub_files = [path for path in proc.config.paths.hub_data_dir.iterdir() if path.name.startswith("hub.sqlite3")]
        assert len(hub_files) == 3 and proc.config.log_file.exists()  # the database, its WAL and shm; the log
        assert {path.stat().st_mode & 0o777 for path in [*hub_files, proc.config.log_file]} == {0o600}
        assert proc.config.paths.hub_url_file.read_text().strip() == status["server"]
    finally:
        assert proc.stop() == 0
