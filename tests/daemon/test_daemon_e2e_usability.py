"""Issue 14 against real daemons on a real hub: what a person (or a script) relies on when using ``oaiod ctl``.

``sync --wait`` returns only once everything written before the call is committed, however long the watcher's
quiet period; ``ctl status`` exits non-zero while the daemon is in ``error``/``offline``; …
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from e2e_helpers import Cluster, first_cycles, object_id_of, server_tree, tree, write_tree

pytestmark = pytest.mark.integration


def ctl(
    config: Path, *args: str, stdin: str | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "oaiod.daemon.cli", "--config", str(config), "ctl", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=300, input=stdin, cwd=cwd)


def oaiod(*args: str) -> subprocess.CompletedProcess[str]:
    """The ``oaiod`` command as typed (``python -m oaiod.cli``), arguments exactly as given."""
    return subprocess.run([sys.executable, "-m", "oaiod.cli", *args], capture_output=True, text=True, timeout=300)


def ctl_json(config: Path, *args: str) -> Any:
    done = ctl(config, *args, "--json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_sync_wait_returns_once_everything_written_before_it_is_committed(cluster: Cluster) -> None:
    """A long debounce (5 s) and a file written just before the call: a single cycle asked for at once saw none of
    it (the watcher still held the paths), and the big file was still in the engine's quiet period."""
    a = cluster.start("dev-a", debounce=5.0)
    first_cycles(a)
    root = Path(a.config.client.root)
    oid = object_id_of(a)
    write_tree(root, {f"many/f{i:03}.txt": f"file {i}" for i in range(300)})
    (root / "big.bin").write_bytes(os.urandom(20 * 2**20))
    done = ctl_json(a.config_file, "sync", "--wait")
    assert done["cycle"] >= 1 and "still_changing" not in done
    assert server_tree(cluster, oid) == tree(root)  # at once: no polling after --wait


def test_status_exit_codes_say_whether_syncing_works(cluster: Cluster) -> None:
    """Issue 14: a 0644 password file left the daemon in ``error`` while ``ctl status`` exited 0; and ``status
    --json`` without a daemon printed nothing on stdout. Codes: 0 works, 3 no daemon, 4 offline, 5 error."""
    config = cluster.config("dev-e")
    cluster.password_file("alice").chmod(0o644)
    try:
        broken = cluster.start("dev-e")
        done = ctl(config, "status")
        assert done.returncode == 5, done.stdout
        assert "chmod 600" in done.stdout and "server.password_file" in done.stdout
        answer = json.loads(ctl(config, "status", "--json").stdout)
        assert answer["state"] == "error" and "readable by others" in answer["last_error"]
        why = [line for line in broken.stderr().splitlines() if "cannot start syncing" in line]
        assert len(why) == 1 and "chmod 600" in why[0], broken.stderr()  # one line, with what to do
        assert "Traceback" not in broken.stderr()
    finally:
        cluster.password_file("alice").chmod(0o600)
    assert ctl(config, "reload").returncode == 0  # fixed: the daemon syncs after a reload
    assert ctl(config, "status").returncode == 0

    offline = cluster.start("dev-o", url="http://127.0.0.1:9/")  # nothing listens on the discard port
    _wait_state(offline.config_file, "offline")
    shown = ctl(offline.config_file, "status")
    assert shown.returncode == 4 and shown.stdout.startswith("Offline since "), shown.stdout
    from daemon_helpers import wait_for

    wait_for(lambda: offline.stderr().count("next try in") >= 3, 120, "three failed cycles", 0.5)
    warnings = [line for line in offline.stderr().splitlines() if " WARNING " in line or " ERROR " in line]
    assert len([line for line in warnings if "offline: the server is unreachable" in line]) == 1, warnings
    assert not [line for line in warnings if "http://" in line], warnings  # no raw requests, no retry chatter
    assert " alembic" not in offline.stderr()  # library set-up lines stay out of the log

    assert ctl(offline.config_file, "stop").returncode == 0
    offline.proc.wait(60)
    gone = ctl(offline.config_file, "status", "--json")
    assert gone.returncode == 3
    assert json.loads(gone.stdout)["state"] == "not running" and "no oaiod daemon is running" in gone.stderr


def _wait_state(config: Path, state: str) -> None:
    from daemon_helpers import wait_for

    wait_for(lambda: json.loads(ctl(config, "status", "--json").stdout)["state"] == state, 120, state, 0.5)


def test_remove_stops_syncing_here_and_delete_asks_first(cluster: Cluster) -> None:
    """Issue 14 §6: ``ctl remove`` never deletes on the server; ``ctl delete`` does, confirmed; ``--right C`` is
    not offered and ``share --help`` explains the rights."""
    a = cluster.start("dev-a")
    first_cycles(a)
    cfg = a.config_file
    work = cluster.base / "work"
    write_tree(work, {"a.txt": "a", "b.txt": "b"})
    oid = ctl_json(cfg, "add", str(work), "--wait")["oaio_id"]

    removed = ctl(cfg, "remove", oid, "--wait")
    assert removed.returncode == 0 and "no longer synced on this device" in removed.stdout, removed.stderr
    assert server_tree(cluster, oid) == {"a.txt": _sha("a"), "b.txt": _sha("b")}  # still on the server
    assert (work / "a.txt").exists()

    assert ctl_json(cfg, "add", str(work), "--wait")["oaio_id"] == oid  # synced again: the same object
    refused = ctl(cfg, "delete", oid, stdin="")  # not a terminal, no --yes
    assert refused.returncode == 1 and "confirmation needed" in refused.stderr and "--yes" in refused.stderr
    assert server_tree(cluster, oid)
    asked = _on_a_terminal(cfg, ["delete", "work"], answer="n")  # a person at a terminal says no
    assert "Delete " in asked and "for everybody" in asked and "nothing deleted" in asked, asked
    assert server_tree(cluster, oid)
    deleted = ctl(cfg, "delete", oid, "--yes", "--wait")
    assert deleted.returncode == 0 and "deleted on the server" in deleted.stdout, deleted.stderr
    assert server_tree(cluster, oid) == {} and (work / "a.txt").exists()

    assert ctl(cfg, "share", oid, "bob", "--right", "C").returncode == 2  # not a choice
    helped = " ".join(ctl(cfg, "share", "--help").stdout.split())
    assert all(f"{right} {name}:" in helped for right, name in (("r", "read"), ("U", "update"), ("D", "delete")))
    assert "C the creator's own right; it cannot be granted" in helped


def _on_a_terminal(config: Path, args: list[str], answer: str) -> str:
    """``ctl ARGS`` with a pseudo-terminal as stdin (so it may ask), ``answer`` typed; what it printed."""
    import pty

    leader, follower = pty.openpty()
    command = [sys.executable, "-m", "oaiod.daemon.cli", "--config", str(config), "ctl", *args]
    with subprocess.Popen(command, stdin=follower, stdout=follower, stderr=follower) as proc:
        os.close(follower)
        os.write(leader, answer.encode() + b"\n")
        out = b""
        while True:
            try:
                chunk = os.read(leader, 4096)
            except OSError:  # EIO: the process closed the terminal
                break
            if not chunk:
                break
            out += chunk
        proc.wait(60)
    os.close(leader)
    return out.decode(errors="replace")


def _sha(text: str) -> str:
    import hashlib

    return hashlib.sha256(text.encode()).hexdigest()


def test_objects_by_path_name_or_prefix_config_after_ctl_and_hints_that_paste(cluster: Cluster) -> None:
    """Issue 14 §2: OBJ is a path (the folder or anything inside it, relative too), a name or a unique prefix; ids
    still work. ``--config``/``-c NAME`` work after ``ctl``; a hint the daemon prints names the config and runs
    as pasted; ``ctl ls`` fits 80 columns."""
    import shlex

    from oaiod.daemon.config import config_dir

    named = config_dir() / "laptop.toml"  # -c laptop
    named.parent.mkdir(parents=True, exist_ok=True)
    named.write_text(cluster.config("dev-a").read_text())
    from daemon_helpers import DaemonProcess

    a = DaemonProcess(named, real=True)
    cluster.started.append(a)
    a.ready()
    first_cycles(a)
    cfg = a.config_file
    work, other = cluster.base / "projects" / "work", cluster.base / "projects" / "worship"
    write_tree(work, {"docs/x.txt": "x"})
    write_tree(other, {"y.txt": "y"})
    oid = ctl_json(cfg, "add", str(work), "--wait")["oaio_id"]
    ctl_json(cfg, "add", str(other), "--wait")

    expected = ctl_json(cfg, "users", oid)
    for handle in (str(work), str(work / "docs" / "x.txt"), "work", oid):
        assert ctl_json(cfg, "users", handle) == expected, handle
    done = ctl(cfg, "users", "docs/x.txt", "--json", cwd=work)  # relative to where ctl runs
    assert done.returncode == 0 and json.loads(done.stdout) == expected, done.stderr
    assert ctl_json(cfg, "versions", str(work)) == ctl_json(cfg, "versions", oid)  # the folder: its object's
    file_rows = ctl_json(cfg, "versions", str(work / "docs" / "x.txt"))  # a file inside: that file's versions
    assert file_rows and {"stamp", "size", "when", "deleted"} <= set(file_rows[0]), file_rows
    ambiguous = ctl(cfg, "versions", "wor")
    assert ambiguous.returncode == 1 and "starts 2 objects" in ambiguous.stderr
    assert "is not inside a synced folder" in ctl(cfg, "users", str(cluster.base)).stderr

    for args in (("ctl", "--config", str(cfg), "status", "--json"), ("ctl", "-c", "laptop", "status", "--json")):
        shown = oaiod(*args)
        assert shown.returncode == 0 and json.loads(shown.stdout)["device_id"] == "dev-a", (args, shown.stderr)
    assert oaiod("-c", "laptop", "ctl", "status").returncode == 0

    assert ctl(cfg, "pause").returncode == 0
    refused = ctl(cfg, "sync")
    hint = refused.stderr.strip().rsplit("run: ", 1)[-1]
    assert refused.returncode == 1 and hint == f"oaiod --config {shlex.quote(str(named))} ctl resume", refused.stderr
    assert oaiod(*shlex.split(hint)[1:]).returncode == 0  # pasted as printed
    assert ctl_json(cfg, "status")["state"] != "paused"

    from rich.console import Console

    from oaiod.daemon import cli

    console = Console(width=80, record=True, file=open(os.devnull, "w"))  # noqa: SIM115
    original = cli._console
    cli._console = lambda: console
    try:
        cli.render_ls(ctl_json(cfg, "ls"))
    finally:
        cli._console = original
    text = console.export_text()
    assert max(len(line) for line in text.splitlines()) <= 80, text
    assert "work" in text and "worship" in text and "synced (root)" in text, text


def test_errors_for_people_and_status_at_80_columns(cluster: Cluster) -> None:
    """Issue 14 §5: no raw ``POST http://…/api/subscribe/ answered 404`` but what failed; no traceback for a wrong
    password, one line saying why; ``ctl status`` starts with one line people understand, fits 80 columns."""
    a = cluster.start("dev-a", user="bob")  # not a supervisor (alice's shares create the users they name)
    first_cycles(a)
    cfg = a.config_file
    work = cluster.base / "work"
    write_tree(work, {"a.txt": "a"})
    ctl_json(cfg, "add", str(work), "--wait")
    refused = ctl(cfg, "share", "work", "zed-unknown", "--right", "r")
    assert refused.returncode == 1 and "no user named 'zed-unknown'" in refused.stderr, refused.stderr
    assert "http" not in refused.stderr and "404" not in refused.stderr

    from daemon_helpers import wait_for
    from rich.console import Console

    from oaiod.daemon import cli

    console = Console(width=80, record=True, file=open(os.devnull, "w"))  # noqa: SIM115
    original = cli._console
    cli._console = lambda: console
    try:  # rendered once the daemon is idle (a cycle the share started may still run)
        cli.render_status(wait_for(lambda: (st := ctl_json(cfg, "status"))["state"] == "idle" and st, 60, "idle"))
    finally:
        cli._console = original
    text = console.export_text()
    assert text.startswith("Up to date (last sync "), text
    assert max(len(line) for line in text.splitlines()) <= 80, text
    assert "device id  dev-a" in text

    wrong = cluster.base / "wrong.pw"
    wrong.write_text("not the password\n")
    wrong.chmod(0o600)
    bad = cluster.config("dev-w")
    bad.write_text(bad.read_text().replace(str(cluster.password_file("alice")), str(wrong)))
    b = cluster.start("dev-w")
    _wait_state(bad, "error")
    shown = ctl(bad, "status")
    assert shown.returncode == 5 and shown.stdout.startswith("Error: the server refused the login"), shown.stdout
    assert "Traceback" not in b.stderr()
    said = [line for line in b.stderr().splitlines() if " ERROR " in line]
    assert said and all("the server refused the login" in line for line in said), said
    assert f"--config {bad}" in said[0] and said[0].rstrip().endswith("s")  # the reload hint names the config


def test_paused_status_counts_what_waits(cluster: Cluster) -> None:
    """Issue 14 §5: while paused, ``ctl status`` says how much waits (the watcher's changed paths), not stale
    transfer counts; resuming sends them."""
    a = cluster.start("dev-a")
    first_cycles(a)
    cfg = a.config_file
    work = cluster.base / "work"
    write_tree(work, {"a.txt": "a"})
    ctl_json(cfg, "add", str(work), "--wait")
    assert ctl(cfg, "pause").returncode == 0
    write_tree(work, {"b.txt": "b", "c.txt": "c"})
    deadline = time.monotonic() + 60
    while (waiting := ctl_json(cfg, "status")["engine"]["waiting_paths"]) < 2 and time.monotonic() < deadline:
        time.sleep(0.3)
    assert waiting >= 2
    shown = ctl(cfg, "status")
    assert shown.stdout.startswith("Paused (changes are recorded: "), shown.stdout
    assert "changed path(s)" in shown.stdout.splitlines()[0]
    assert ctl(cfg, "resume").returncode == 0
    assert ctl(cfg, "sync", "--wait").returncode == 0
    assert ctl_json(cfg, "status")["engine"]["waiting_paths"] == 0
