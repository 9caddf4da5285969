"""The daemon as a real process: lock, ctl socket and protocol, signals, reload, logs.

These run ``tests/daemon/daemon_fake_run.py`` — the real :mod:`oaiod.daemon.process` around a FakeEngine with exactly
the SyncEngine interface — so the shell is tested without a server; the end-to-end tests use the real engine.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from click.testing import CliRunner
from daemon_helpers import DaemonProcess, wait_for, write_config

from oaiod.daemon.cli import main
from oaiod.daemon.ctl.protocol import CommandFailed, CtlClient, NoDaemon

CONFIG = """
[client]
root = "{root}"
device_id = "dev-a"
[sync]
interval = 3600
debounce = 0.1
"""


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    return write_config(tmp_path / "a.toml", CONFIG.format(root=tmp_path / "root"))


@pytest.fixture
def daemon(config_file: Path) -> DaemonProcess:
    proc = DaemonProcess(config_file).ready()
    yield proc
    proc.close()


def test_ctl_status_and_socket_permissions(daemon: DaemonProcess) -> None:
    status = daemon.call("status")
    assert status["state"] in ("idle", "syncing")
    assert status["pid"] == daemon.proc.pid
    assert status["instance"] == daemon.config.paths.instance
    sock = daemon.config.paths.socket
    assert stat.S_ISSOCK(sock.stat().st_mode)
    assert stat.S_IMODE(sock.stat().st_mode) == 0o600
    assert stat.S_IMODE(sock.parent.stat().st_mode) == 0o700
    wait_for(lambda: daemon.call("status")["engine"]["cycles_done"] >= 1, what="the first cycle")
    assert daemon.stop() == 0
    assert not sock.exists()


def test_ctl_protocol_rejects_bad_requests(daemon: DaemonProcess) -> None:
    def raw(line: bytes) -> dict:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
            conn.connect(str(daemon.config.paths.socket))
            conn.sendall(line)
            return json.loads(conn.makefile("rb").readline())

    assert raw(b'{"cmd": "ping", "args": {}}\n')["ok"] is True
    assert "not JSON" in raw(b"hello\n")["error"]
    assert "unknown command" in raw(b'{"cmd": "rm -rf"}\n')["error"]
    assert '"args" must be an object' in raw(b'{"cmd": "ping", "args": []}\n')["error"]
    assert (
        "must be one of" in raw(b'{"cmd": "share", "args": {"oaio_id": "x", "user": "bob", "right": "Z"}}\n')["error"]
    )
    with pytest.raises(CommandFailed, match="no synced object is named 'a/b'"):
        daemon.call("remove", oaio_id="a/b")
    with pytest.raises(CommandFailed, match="missing argument 'oaio_id'"):
        daemon.call("users")
    assert daemon.call("ping")["pid"] == daemon.proc.pid  # still serving


def test_ctl_commands_reach_the_engine(daemon: DaemonProcess, tmp_path: Path) -> None:
    extra = tmp_path / "extra"
    extra.mkdir()
    assert daemon.call("add", path=str(extra))["oaio_id"] == "fake-extra"
    assert str(extra) in daemon.call("status")["watched"]
    daemon.call("share", oaio_id="fake-extra", user="bob", right="U")
    daemon.call("unshare", oaio_id="fake-extra", user="bob")
    daemon.call("confirm-delete", oaio_id="fake-extra")
    daemon.call("restore", oaio_id="fake-extra", stamp="20240101000000000000", to=str(tmp_path / "old"))
    assert daemon.call("users", oaio_id=str(extra)) == [{"user": "bob", "right": "r"}]  # OBJ by its path
    daemon.call("remove", oaio_id="fake-extra")
    calls = daemon.call("status")["engine"]["calls"]
    assert calls == [
        ["add_folder", str(extra)],
        ["share", "fake-extra", "bob", "U"],
        ["unshare", "fake-extra", "bob"],
        ["confirm_delete", "fake-extra"],
        ["restore", "fake-extra", "20240101000000000000", str(tmp_path / "old")],
        ["remove", "fake-extra"],
    ]
    wait_for(lambda: str(extra) not in daemon.call("status")["watched"], what="the removed root to be unwatched")
    assert daemon.call("conflicts")[0]["path"].endswith(".txt")
    assert daemon.call("versions", oaio_id=daemon.config.client.root.name)[0]["stamp"]  # OBJ by its name
    assert daemon.call("ls")[0]["path"] == str(daemon.config.client.root)


def test_sync_wait_streams_until_the_cycle_ended(daemon: DaemonProcess) -> None:
    wait_for(lambda: daemon.call("status")["engine"]["cycles_done"] >= 1, what="the first cycle")
    (daemon.config.paths.state_dir / "slow").write_text("1.0")
    stream = daemon.client.stream("sync", wait=True)
    items = list(stream)
    assert stream.result["cycle"] >= 2
    assert items and all("state" in item for item in items)
    assert daemon.call("status")["engine"]["cycles_done"] >= 2


def test_pause_resume_and_offline_state(daemon: DaemonProcess) -> None:
    assert daemon.call("pause") == "paused"
    assert daemon.call("status")["state"] == "paused"
    with pytest.raises(CommandFailed, match="paused"):
        daemon.call("sync")
    daemon.call("resume")
    (daemon.config.paths.state_dir / "fail-transient").write_text("")
    daemon.call("sync")
    # a forced trigger (resume, then sync) clears the backoff while the last outcome still says offline: wait for
    # the failed cycle that set it
    status = wait_for(
        lambda: (s := daemon.call("status"))["state"] == "offline" and s["next_try"] and s, what="the offline state"
    )
    assert "unreachable" in status["last_error"]
    (daemon.config.paths.state_dir / "fail-transient").unlink()
    daemon.call("sync")  # an explicit sync ignores the backoff
    wait_for(lambda: daemon.call("status")["state"] == "idle", what="recovery")
    assert daemon.call("status")["engine"]["retries"] == 2  # and tells the engine to try backed-off items too


def test_second_instance_is_refused_naming_the_pid(daemon: DaemonProcess, config_file: Path) -> None:
    second = DaemonProcess(config_file)
    assert second.proc.wait(60) == 1
    assert f"already running for this config (PID {daemon.proc.pid}" in second.stderr()
    second.close()
    assert daemon.call("ping")


def test_two_configs_run_side_by_side(daemon: DaemonProcess, tmp_path: Path) -> None:
    other = DaemonProcess(write_config(tmp_path / "b.toml", CONFIG.format(root=tmp_path / "root-b"))).ready()
    try:
        assert other.call("ping")["pid"] != daemon.call("ping")["pid"]
        assert other.config.paths.socket != daemon.config.paths.socket
    finally:
        other.close()


def test_sigterm_stops_gracefully_during_a_cycle(daemon: DaemonProcess) -> None:
    wait_for(lambda: daemon.call("status")["engine"]["cycles_done"] >= 1, what="the first cycle")
    (daemon.config.paths.state_dir / "slow").write_text("1.5")
    daemon.call("sync")
    wait_for(lambda: daemon.call("status")["state"] == "syncing", what="a running cycle")
    assert daemon.stop(signal.SIGTERM) == 0
    cycles = (daemon.config.paths.state_dir / "cycles").read_text().split()
    assert cycles[-1] == "2"  # the running cycle finished before the process ended
    log = daemon.config.log_file.read_text()
    assert "received SIGTERM" in log and "oaiod stopped" in log


def test_ctl_stop(daemon: DaemonProcess) -> None:
    assert daemon.call("stop") == "stopping"
    assert daemon.proc.wait(60) == 0


def test_sighup_reloads_and_keeps_old_config_when_bad(daemon: DaemonProcess, config_file: Path) -> None:
    text = config_file.read_text()
    config_file.write_text(text.replace("debounce = 0.1", 'debounce = "soon"'))
    daemon.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: "config reload refused" in daemon.config.log_file.read_text(), what="the refusal in the log")
    assert 'sync.debounce: must be a number of seconds >= 0, got "soon"' in daemon.config.log_file.read_text()
    assert daemon.call("status")["state"] in ("idle", "syncing")
    with pytest.raises(CommandFailed, match=r"sync\.debounce"):
        daemon.call("reload")
    config_file.write_text(text.replace('level = "INFO"', "") + '\n[log]\nlevel = "DEBUG"\n')
    daemon.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: "config reloaded" in daemon.config.log_file.read_text(), what="the reload")
    assert daemon.call("reload") == "reloaded"
    assert daemon.call("status")["state"] in ("idle", "syncing")


def test_log_and_log_follow(daemon: DaemonProcess) -> None:
    wait_for(lambda: any("oaiod ready" in line for line in daemon.call("log", lines=200)), what="the ready line")
    stream = iter(daemon.client.stream("log", lines=1, follow=True))
    assert next(stream)  # the last line so far: the request is now being served
    daemon.call("pause")
    assert any("sync paused" in next(stream) for _ in range(50))


def test_engine_failure_keeps_daemon_up_and_rebuild_index_repairs(config_file: Path) -> None:
    config = DaemonProcess.__new__(DaemonProcess)
    from oaiod.daemon.config import load_config

    state_dir = load_config(config_file).paths.state_dir
    state_dir.mkdir(parents=True)
    (state_dir / "broken-db").write_text("")
    (state_dir / "state.sqlite3").write_text("garbage")
    config = DaemonProcess(config_file).ready()
    try:
        status = config.call("status")
        assert status["state"] == "error"
        assert "cannot be opened (fake)" in status["last_error"]
        with pytest.raises(CommandFailed, match="not syncing"):
            config.call("conflicts")
        (state_dir / "broken-db").unlink()
        assert "old database kept as state.sqlite3.broken-" in config.call("rebuild-index")
        assert not (state_dir / "state.sqlite3").exists()
        assert config.call("status")["state"] in ("idle", "syncing")
    finally:
        config.close()


def test_sd_notify_over_a_real_datagram_socket(config_file: Path, tmp_path: Path) -> None:
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    path = tmp_path / "notify.sock"
    notify.bind(str(path))
    notify.settimeout(60)
    env = {"NOTIFY_SOCKET": str(path), "WATCHDOG_USEC": "1000000"}
    daemon = DaemonProcess(config_file, env=env)
    try:
        messages: list[str] = []
        while not any("READY=1" in m for m in messages) or not any("WATCHDOG=1" in m for m in messages):
            messages.append(notify.recv(4096).decode())
        ready = next(m for m in messages if "READY=1" in m)
        assert f"MAINPID={daemon.proc.pid}" in ready and "STATUS=" in ready
        daemon.proc.send_signal(signal.SIGTERM)
        while not any("STOPPING=1" in m for m in messages):
            messages.append(notify.recv(4096).decode())
        assert daemon.proc.wait(60) == 0
    finally:
        daemon.close()
        notify.close()


def test_ctl_without_daemon_exits_3(config_file: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(main, ["--config", str(config_file), "ctl", "status"])
    assert result.exit_code == 3, result.output
    assert "no oaiod daemon is running" in result.output
    assert f"oaiod --config {config_file} run" in result.output
    with pytest.raises(NoDaemon):
        CtlClient(Path("/nonexistent/x.sock")).call("ping")
    # and through a real process, as a script would see it
    done = subprocess.run(
        [sys.executable, "-m", "oaiod.daemon.cli", "--config", str(config_file), "ctl", "status", "--json"],
        capture_output=True,
        text=True,
        timeout=120,
        env=os.environ,
    )
    assert done.returncode == 3, done.stderr


def test_cli_against_a_running_daemon(daemon: DaemonProcess, config_file: Path) -> None:
    runner = CliRunner()
    base = ["--config", str(config_file), "ctl"]
    status = runner.invoke(main, [*base, "status", "--json"])
    assert status.exit_code == 0, status.output
    assert json.loads(status.output)["pid"] == daemon.proc.pid

    # a cycle may be running at any moment (the first one, or one the watcher started): the summary line reads
    # "Syncing" then, and "Up to date" once the daemon is idle
    def human_status() -> str:
        human = runner.invoke(main, [*base, "status"])
        assert human.exit_code == 0, human.output
        assert human.output.startswith(("Up to date", "Syncing")), human.output
        return human.output

    wait_for(lambda: human_status().startswith("Up to date"), what="the summary line of an idle daemon")
    assert runner.invoke(main, [*base, "conflicts"]).exit_code == 0
    bad = runner.invoke(main, [*base, "share", "a/b", "bob", "--right", "r"])
    assert bad.exit_code == 1 and "no synced object is named" in bad.output
    waited = runner.invoke(main, [*base, "sync", "--wait", "--json"])
    assert waited.exit_code == 0, waited.output
    assert json.loads(waited.output)["cycle"] >= 1


def test_every_command_has_one_line_help() -> None:
    runner = CliRunner()
    from oaiod.daemon.cli import ctl, service

    for group in (ctl, service):
        for name, command in group.commands.items():
            result = runner.invoke(main, [group.name, name, "--help"])
            assert result.exit_code == 0, (name, result.output)
            help_text = command.help or ""
            assert help_text and "\n" not in help_text.strip(), name


def test_state_changing_commands_are_queued_during_a_long_cycle(daemon: DaemonProcess, tmp_path: Path) -> None:
    """design §6: ctl answers at once during a cycle; add/remove/… run between cycles, --wait waits for them."""
    wait_for(lambda: daemon.call("status")["engine"]["cycles_done"] >= 1, what="the first cycle")
    gate = daemon.config.paths.state_dir / "gate"
    gate.write_text("")  # the next cycle runs until the test removes the gate
    daemon.call("sync")
    wait_for(lambda: daemon.call("status")["state"] == "syncing", what="the long cycle")
    extra = tmp_path / "extra"
    extra.mkdir()
    answer = daemon.call("add", path=str(extra))
    assert answer == {"queued": f"ctl add {extra}", "detail": answer["detail"]}
    assert daemon.call("status")["queued"] == [f"ctl add {extra}"]
    daemon.call("share", oaio_id="fake-extra", user="bob", right="r")  # a server call: done during the cycle
    assert daemon.call("status")["engine"]["calls"] == [["share", "fake-extra", "bob", "r"]]

    waited: dict[str, object] = {}
    client = CtlClient(daemon.config.paths.socket, timeout=60)
    remove = lambda: waited.update(result=client.call("remove", oaio_id="fake-extra", wait=True))  # noqa: E731
    waiter = threading.Thread(target=remove)
    waiter.start()
    wait_for(lambda: len(daemon.call("status")["queued"]) == 2, what="the remove to be queued")
    gate.unlink()
    waiter.join(60)
    assert waited == {"result": None}
    calls = daemon.call("status")["engine"]["calls"]
    assert calls[1:] == [["add_folder", str(extra)], ["remove", "fake-extra"]]
    assert daemon.call("status")["queued"] == []
    assert daemon.call("add", path=str(extra))["oaio_id"] == "fake-extra"  # idle: the result at once, as before


def test_a_watched_root_deleted_and_recreated_is_watched_again(daemon: DaemonProcess) -> None:
    """The daemon's periodic watch check (every 10 s) notices that deleting the root ended watchdog's emitter
    thread (the kernel's IN_DELETE_SELF), watches the new folder and asks for a rescan."""
    root = daemon.config.client.root
    wait_for(lambda: daemon.call("status")["engine"]["cycles_done"] >= 1, what="the first cycle")
    rescans = daemon.call("status")["engine"]["rescans"]
    shutil.rmtree(root)
    root.mkdir()
    wait_for(lambda: daemon.call("status")["engine"]["rescans"] > rescans, 60, "the rescan after the restart")
    assert "watching it again and rescanning" in "\n".join(daemon.call("log", lines=200))
    (root / "after.txt").write_text("seen")
    wait_for(lambda: "after.txt" in daemon.call("status")["engine"]["dirty"].get(str(root), []), 30, "the new file")
    assert daemon.stop() == 0
