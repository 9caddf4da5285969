"""``oaiod ctl exclude`` and ``ctl trash`` against two real daemons and a real hub (issue 14 §3, §4): the excluded
folder leaves one device after a confirmation (refused without a terminal unless ``--yes``) for its trash, stays on
the other and the server, takes no change from either side, and comes back with ``exclude remove``; a file deleted
on one device comes back from the other's trash with ``ctl trash restore``; ``ctl filestatus``, and ``ctl versions``
and ``ctl restore`` of one file."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from daemon_helpers import wait_for
from e2e_helpers import Cluster, first_cycles, root_of, tree, wait_converged, write_tree

pytestmark = pytest.mark.integration


def ctl(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "oaiod.daemon.cli", "--config", str(config), "ctl", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)


def test_a_folder_excluded_on_one_device_leaves_it_alone(cluster: Cluster) -> None:
    a, b = cluster.start("dev-a"), cluster.start("dev-b")
    first_cycles(a, b)
    ra, rb = root_of(a), root_of(b)
    write_tree(ra, {"videos/v1.mp4": "v1", "videos/raw/v2.mp4": "v2", "doc.txt": "doc"})
    wait_converged([a, b], {"videos/v1.mp4", "videos/raw/v2.mp4", "doc.txt"})

    refused = ctl(b.config_file, "exclude", "add", str(rb / "videos"))
    assert refused.returncode != 0 and "--yes" in refused.stderr and "2 file(s)" in refused.stderr, refused
    assert (rb / "videos" / "v1.mp4").exists()  # nothing happened

    done = ctl(b.config_file, "exclude", "add", str(rb / "videos"), "--yes", "--wait")
    assert done.returncode == 0, done.stderr
    assert not (rb / "videos").exists()
    listed = json.loads(ctl(b.config_file, "exclude", "list", "--json").stdout)
    assert listed == [{"folder": str(rb), "path": "videos"}]
    trashed = json.loads(ctl(b.config_file, "trash", "--json").stdout)
    assert {row["path"] for row in trashed} == {"videos/v1.mp4", "videos/raw/v2.mp4"}
    assert "videos/v1.mp4" in ctl(b.config_file, "trash").stdout

    (ra / "videos" / "v3.mp4").write_text("v3")
    (rb / "doc.txt").write_text("doc, edited on b")
    wait_for(lambda: (ra / "doc.txt").read_text() == "doc, edited on b", 120, "b's edit on a")
    assert ctl(b.config_file, "sync", "--wait").returncode == 0
    assert not (rb / "videos").exists()
    assert set(tree(ra)) == {"videos/v1.mp4", "videos/raw/v2.mp4", "videos/v3.mp4", "doc.txt"}

    back = ctl(b.config_file, "exclude", "remove", str(rb / "videos"), "--wait")
    assert back.returncode == 0, back.stderr
    wait_converged([a, b], {"videos/v1.mp4", "videos/raw/v2.mp4", "videos/v3.mp4", "doc.txt"})
    assert json.loads(ctl(b.config_file, "exclude", "list", "--json").stdout) == []

    status = json.loads(ctl(b.config_file, "filestatus", str(rb / "doc.txt"), "--json").stdout)
    assert status["state"] == "up to date", status
    changes = json.loads(ctl(a.config_file, "versions", str(ra / "doc.txt"), "--json").stdout)
    assert [row["size"] for row in changes] == [len("doc, edited on b"), len("doc")], changes
    done = ctl(a.config_file, "restore", str(ra / "doc.txt"), "--stamp", changes[-1]["stamp"], "--wait")
    assert done.returncode == 0, done.stderr
    wait_for(lambda: (rb / "doc.txt").read_text() == "doc", 120, "the restored doc.txt on b")

    (ra / "doc.txt").unlink()
    wait_for(lambda: not (rb / "doc.txt").exists(), 120, "the deletion on b")
    done = ctl(b.config_file, "trash", "restore", str(rb / "doc.txt"), "--wait")
    assert done.returncode == 0 and "restored" in done.stdout, done.stderr
    wait_for(lambda: (ra / "doc.txt").exists() and (ra / "doc.txt").read_text() == "doc", 120, "doc back")
