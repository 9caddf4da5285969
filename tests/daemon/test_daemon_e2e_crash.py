"""``kill -9`` of a daemon process during an upload, a download and the commit, then a restart: the devices
converge, no file is ever corrupt or partially written, and no temp file is left in the user's folders.

How each moment is hit deterministically (no sleeps): uploads and downloads are slowed by the daemon's own
bandwidth limits (``[limits] upload/download`` in its config, 1 MB/s for a 6 MiB file) and the test kills once
``ctl status`` names the transfer; the commit point is held by :class:`e2e_helpers.HoldProxy`, an HTTP proxy
between the daemon and the hub that holds the ``upload/`` request — before the hub sees it, or after the hub
committed but before the daemon hears it — and the test kills while it is held.
"""

from __future__ import annotations

import os
import signal

import pytest
from daemon_helpers import wait_for
from e2e_helpers import (
    Cluster,
    HoldProxy,
    first_cycles,
    object_id_of,
    root_of,
    temp_files,
    wait_converged,
)

pytestmark = pytest.mark.integration
BIG = 6 * 1024 * 1024


def transferring(proc, name: str) -> bool:
    current = proc.call("status")["engine"].get("current") or {}
    return str(current.get("path") or "").endswith(name)


def test_kill_9_during_upload_then_restart_converges(cluster: Cluster) -> None:
    a = cluster.start("dev-a", upload=1_000_000)  # 1 MB/s: the 6 MiB upload takes a few seconds
    b = cluster.start("dev-b")
    first_cycles(a, b)
    data = os.urandom(BIG)
    (root_of(a) / "big.bin").write_bytes(data)
    wait_for(lambda: transferring(a, "big.bin"), 120, "the upload to start")
    a.stop(signal.SIGKILL)
    (root_of(a) / "small.txt").write_text("written while a was down")
    a2 = cluster.start("dev-a")
    wait_converged([a2, b], {"big.bin", "small.txt"})
    assert (root_of(b) / "big.bin").read_bytes() == data
    assert temp_files(root_of(a2)) == temp_files(root_of(b)) == []


def test_kill_9_during_download_then_restart_converges(cluster: Cluster) -> None:
    """b is killed while it downloads a new version of a file it has: the old one stays whole until the new one
    is complete; after the restart the new one arrives and the temp file of the killed download is gone."""
    a = cluster.start("dev-a")
    b = cluster.start("dev-b", download=1_000_000)
    first_cycles(a, b)
    old, new = os.urandom(BIG), os.urandom(BIG)
    (root_of(a) / "big.bin").write_bytes(old)
    wait_converged([a, b], {"big.bin"})
    (root_of(a) / "big.bin").write_bytes(new)
    wait_for(lambda: transferring(b, "big.bin"), 120, "the download to start")
    b.stop(signal.SIGKILL)
    assert (root_of(b) / "big.bin").read_bytes() == old  # never a partial file in place
    b2 = cluster.start("dev-b")
    wait_converged([a, b2], {"big.bin"})
    assert (root_of(b2) / "big.bin").read_bytes() == new
    assert temp_files(root_of(b2)) == []


@pytest.mark.parametrize("held", ["request", "response"], ids=["before-commit-point", "after-commit-point"])
def test_kill_9_during_commit_then_restart_converges(cluster: Cluster, held: str) -> None:
    """a's files are on storage and its ``upload/`` is in flight when it dies: held before the hub saw it (the
    version was never committed: the partial prefix is garbage) or after the hub committed it (a never heard)."""
    proxy = HoldProxy(cluster.hub.url)
    try:
        a = cluster.start("dev-a", url=proxy.url)
        b = cluster.start("dev-b")
        first_cycles(a, b)
        ra = root_of(a)
        (ra / "report.txt").write_text("v1")
        (ra / "keep.txt").write_text("unchanged")
        wait_converged([a, b], {"report.txt", "keep.txt"})
        root_id = object_id_of(a)

        proxy.arm(held)
        (ra / "report.txt").write_text("v2 at the commit point")
        (ra / "new.txt").write_text("new at the commit point")
        assert proxy.held.wait(120), "a's commit never reached the proxy"
        a.stop(signal.SIGKILL)
        proxy.release()

        a2 = cluster.start("dev-a")
        wait_converged([a2, b], {"report.txt", "keep.txt", "new.txt"})
        assert (root_of(b) / "report.txt").read_text() == "v2 at the commit point"
        wait_for(lambda: "'recover'" in str(a2.call("history")), 120, "a's journal recovery in ctl history")
        stamps = {v["stamp"] for v in a2.call("versions", oaio_id=root_id)}
        on_storage = {p.name for p in (cluster.storage / root_id).iterdir()}
        assert on_storage <= stamps, f"uncommitted prefixes left on storage: {sorted(on_storage - stamps)}"
        assert temp_files(root_of(a2)) == temp_files(root_of(b)) == []
    finally:
        proxy.close()
