"""Folder types end to end (issue 14 §4): ``ctl add --mode``, ``ctl mode``, ``ctl ls``/``ctl status`` saying what
a receive-only folder keeps back, and ``ctl revert`` (local changes to the trash) against real daemons and a hub."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from daemon_helpers import wait_for
from e2e_helpers import Cluster, first_cycles, object_id_of, root_of, server_tree, tree, wait_converged, write_tree

pytestmark = pytest.mark.integration


def ctl(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "oaiod.daemon.cli", "--config", str(config), "ctl", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=300, env={**os.environ, "COLUMNS": "80"})


def ctl_json(config: Path, *args: str) -> Any:
    done = ctl(config, *args, "--json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_receive_only_and_send_only_folders_with_ctl(cluster: Cluster) -> None:
    a, b = cluster.start("dev-a"), cluster.start("dev-b")
    first_cycles(a, b)
    write_tree(root_of(a), {"doc.txt": "base", "other.txt": "other"})
    wait_converged([a, b], {"doc.txt", "other.txt"})
    root_id = object_id_of(b)
    done = ctl(b.config_file, "mode", root_id, "receive-only", "--wait")
    assert done.returncode == 0 and "receive-only now (was send-receive)" in done.stdout, done.stderr
    bad = ctl(b.config_file, "mode", root_id, "sideways")
    assert bad.returncode != 0 and "send-only" in bad.stderr

    (root_of(b) / "doc.txt").write_text("edited on b")
    before = server_tree(cluster, root_id)

    def noted() -> bool:
        ctl_json(b.config_file, "sync", "--wait")
        rows = [row for row in ctl_json(b.config_file, "ls") if row["oaio_id"] == root_id]
        return bool(rows) and rows[0]["mode_note"].startswith("local changes not sent: 1 files")

    wait_for(noted, 120, "the local change listed as not sent")
    assert server_tree(cluster, root_id) == before  # never pushed
    listed = ctl(b.config_file, "ls").stdout
    assert "receive-only" in listed and "local changes not sent: 1 files" in listed
    assert all(len(line) <= 80 for line in listed.splitlines())
    status = ctl(b.config_file, "status").stdout
    assert "local changes not sent: 1 files" in status and "differ from the server by their mode" in status

    write_tree(root_of(a), {"new.txt": "from a"})  # the server's changes still arrive
    wait_for(lambda: (root_of(b) / "new.txt").exists(), 120, "a's new file on b")
    reverted = ctl(b.config_file, "revert", root_id, "--wait")
    assert reverted.returncode == 0 and "local changes in: oaiod ctl trash" in reverted.stdout, reverted.stderr
    assert (root_of(b) / "doc.txt").read_text() == "base"
    trashed = [Path(row["stored"]).read_text() for row in ctl_json(b.config_file, "trash") if row["path"] == "doc.txt"]
    assert trashed == ["edited on b"]
    assert tree(root_of(b)) == tree(root_of(a))

    inbox = cluster.base / "inbox"
    write_tree(inbox, {"x.txt": "x"})
    refused = ctl(a.config_file, "add", str(inbox), "--mode", "receive-only")
    assert refused.returncode == 1 and "nothing to receive" in refused.stderr, (refused.stdout, refused.stderr)
    assert all(row["path"] != str(inbox) for row in ctl_json(a.config_file, "ls"))

    work = cluster.base / "outbox"
    write_tree(work, {"report.txt": "sent from a"})
    added = ctl_json(a.config_file, "add", str(work), "--mode", "send-only", "--wait")
    assert added["registered"] is True, added
    rows = {row["oaio_id"]: row for row in ctl_json(a.config_file, "ls")}
    assert rows[added["oaio_id"]]["mode"] == "send-only"
    assert set(server_tree(cluster, added["oaio_id"])) == {"report.txt"}  # a send-only folder pushes
    nothing = ctl(a.config_file, "override", added["oaio_id"], "--wait")
    assert nothing.returncode == 0 and "nothing to override" in nothing.stdout, nothing.stderr
