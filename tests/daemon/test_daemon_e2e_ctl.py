"""``oaiod ctl`` as a user runs it (``python -m oaiod.daemon.cli --config … ctl …`` subprocesses) against a real
daemon syncing with a real hub: status, ls, add, share, unshare, users, versions, restore, a held mass deletion
and confirm-delete, history, conflicts, log, sync --wait, pause/resume, stop — tables for people, ``--json`` for
scripts — and exit code 3 once no daemon runs. ``share`` right after ``add`` works, online and after an outage."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from daemon_helpers import wait_for
from e2e_helpers import Cluster, HoldProxy, first_cycles, server_tree, wait_committed, write_tree

pytestmark = pytest.mark.integration


def ctl(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "oaiod.daemon.cli", "--config", str(config), "ctl", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=300)


def ctl_json(config: Path, *args: str) -> Any:
    done = ctl(config, *args, "--json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_ctl_commands_against_a_running_daemon_and_without_one(cluster: Cluster) -> None:
    a = cluster.start("dev-a")
    first_cycles(a)
    cfg = a.config_file
    status = ctl_json(cfg, "status")
    assert status["state"] in ("idle", "syncing") and status["device_id"] == "dev-a" and status["queued"] == []
    assert "last sync" in ctl(cfg, "status").stdout
    if "PYTHONMALLOC" not in os.environ:  # `oaiod run` re-executed itself (same PID) with glibc's malloc
        assert b"PYTHONMALLOC=malloc" in Path(f"/proc/{a.proc.pid}/environ").read_bytes().split(b"\0")

    work = cluster.base / "work"
    write_tree(work, {f"f{i}.txt": f"version 1 of {i}" for i in range(6)})
    added = ctl_json(cfg, "add", str(work), "--wait")
    assert added["registered"] is True, added
    oid = added["oaio_id"]
    wait_committed(cluster, oid, work)
    assert any(row["oaio_id"] == oid and row["path"] == str(work) for row in ctl_json(cfg, "ls"))
    table = ctl(cfg, "ls")
    assert table.returncode == 0 and "folder" in table.stdout  # a table for people

    shared = ctl(cfg, "share", oid, "bob", "--right", "r")
    assert shared.returncode == 0 and "shared" in shared.stdout
    assert {r["username"]: r["access_right"] for r in ctl_json(cfg, "users", oid)}["bob"] == "r"
    assert ctl(cfg, "unshare", oid, "bob").returncode == 0
    assert {r["username"]: r["access_right"] for r in ctl_json(cfg, "users", oid)}["bob"] == "x"

    (work / "f0.txt").write_text("version 2 of 0")
    wait_committed(cluster, oid, work)
    versions = ctl_json(cfg, "versions", oid)
    assert len(versions) >= 2
    oldest = versions[1]["stamp"]  # newest first: the version before the change
    restored = cluster.base / "restored"
    done = ctl(cfg, "restore", oid, "--stamp", oldest, "--to", str(restored), "--wait")
    assert done.returncode == 0, done.stderr
    assert (restored / "f0.txt").read_text() == "version 1 of 0" and (work / "f0.txt").read_text() == "version 2 of 0"

    for i in range(1, 6):  # 5 of 6 files: a mass deletion, held until confirmed
        (work / f"f{i}.txt").unlink()
    wait_for(lambda: any(h["oaio_id"] == oid for h in a.call("status")["engine"]["held"]), 120, "the held deletion")
    assert len(server_tree(cluster, oid)) == 6
    assert ctl(cfg, "confirm-delete", oid, "--wait").returncode == 0
    wait_committed(cluster, oid, work)
    actions = {row["action"] for row in ctl_json(cfg, "history")}
    assert {"added", "changed", "deleted", "held", "confirm"} <= actions, actions  # per file; no version totals
    assert isinstance(ctl_json(cfg, "conflicts"), list)
    assert ctl(cfg, "log", "-n", "5").stdout.count("\n") == 5

    assert ctl_json(cfg, "sync", "--wait")["cycle"] >= 1
    assert ctl(cfg, "pause").stdout.strip() == "paused" and ctl_json(cfg, "status")["state"] == "paused"
    assert ctl(cfg, "sync").returncode == 1  # refused while paused, with the reason
    assert ctl(cfg, "resume").returncode == 0 and ctl_json(cfg, "status")["state"] != "paused"

    assert ctl(cfg, "stop").returncode == 0
    assert a.proc.wait(60) == 0
    for args in (("status",), ("ls", "--json"), ("add", str(work))):
        done = ctl(cfg, *args)
        assert done.returncode == 3 and "no oaiod daemon is running" in done.stderr, (args, done.stderr)


def test_share_right_after_add_online_and_after_an_outage(cluster: Cluster) -> None:
    """``ctl add DIR && ctl share ID bob`` as a user types it: the share waits for the cycle that registers the
    folder. While the server is unreachable (a fault proxy between daemon and hub drops every request unanswered)
    ``add`` says so and ``share`` fails saying why; once the server is back ``share`` registers it, then shares."""
    proxy = HoldProxy(cluster.hub.url)
    try:
        a = cluster.start("dev-a", url=proxy.url)
        first_cycles(a)
        cfg = a.config_file

        work = cluster.base / "projects"
        write_tree(work, {f"src/m{i}.py": f"module {i}" for i in range(20)})
        added = ctl_json(cfg, "add", str(work))  # no --wait: answers within 2 s, registered or being registered
        assert set(added) == {"oaio_id", "registered", "detail"}, added
        shared = ctl(cfg, "share", added["oaio_id"], "bob", "--right", "U")
        assert shared.returncode == 0, shared.stderr
        assert _rights(cfg, added["oaio_id"]) == {"alice": "C", "bob": "U"}
        wait_committed(cluster, added["oaio_id"], work)

        proxy.down = True
        later = cluster.base / "later"
        write_tree(later, {"a.txt": "a", "b.txt": "b"})
        offline = ctl_json(cfg, "add", str(later), "--wait")
        assert offline["registered"] is False and "server is unreachable" in offline["detail"], offline
        text = ctl(cfg, "add", str(later))  # the same folder again: the same object, the reason for people
        assert text.returncode == 0 and f"as {offline['oaio_id']}; not registered on the server yet" in text.stdout
        refused = ctl(cfg, "share", offline["oaio_id"], "bob", "--right", "r")
        assert refused.returncode == 1, refused.stdout
        assert "is not registered on the server yet: the server is unreachable" in refused.stderr, refused.stderr
        assert "registered at the next sync cycle" in refused.stderr

        proxy.down = False
        shared = ctl(cfg, "share", offline["oaio_id"], "bob", "--right", "r")
        assert shared.returncode == 0, shared.stderr
        assert _rights(cfg, offline["oaio_id"]) == {"alice": "C", "bob": "r"}
        wait_committed(cluster, offline["oaio_id"], later)
    finally:
        cluster.stop_all()
        proxy.close()


def _rights(config: Path, oaio_id: str) -> dict[str, str]:
    """Who holds a right on the object (``users`` lists everybody, ``x`` for no right)."""
    rows = ctl_json(config, "users", oaio_id)
    return {row["username"]: row["access_right"] for row in rows if row["access_right"] != "x"}
