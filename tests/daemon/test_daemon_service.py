"""Service files: rendered unit and plist match packaging/, are valid, and `service … --dry-run` changes nothing."""

from __future__ import annotations

import ctypes
import os
import plistlib
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from oaiod.daemon import service
from oaiod.daemon.cli import main
from oaiod.daemon.config import instance_name

ROOT = Path(__file__).resolve().parents[2]
UNIT = ROOT / "packaging/systemd/oaiod.service"
PLIST = ROOT / "packaging/launchd/org.oaio.oaiod.plist"


def test_packaged_files_are_the_rendered_templates() -> None:
    """packaging/ is what `service install` writes with default paths (regenerate with render_* if this fails)."""
    assert UNIT.read_text() == service.render_systemd_unit(None, ["/usr/bin/oaiod"])
    logs = Path("/Users/USER/Library/Logs/oaiod")
    assert PLIST.read_bytes() == service.render_launchd_plist(None, ["/usr/local/bin/oaiod"], logs)


def test_unit_has_the_required_settings() -> None:
    text = UNIT.read_text()
    for line in (
        "Type=notify",
        "WatchdogSec=60",
        "Restart=on-failure",
        "ExecStart=/usr/bin/oaiod run",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "ProtectSystem=strict",
        "ReadWritePaths=%h",
        "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6",
        "MemoryDenyWriteExecute=yes",
        "NoNewPrivileges=yes",
        "WantedBy=default.target",
    ):
        assert line in text.splitlines(), line
    for raw in text.splitlines():  # syntax: comments, [sections] and Key=Value only
        assert not raw or raw.startswith(("#", "[")) or ("=" in raw and raw.split("=", 1)[0].isidentifier()), raw


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")
def test_systemd_analyze_verify(tmp_path: Path) -> None:
    """System-mode verify (a user manager needs a session bus this sandbox lacks); ExecStart must exist."""
    unit = tmp_path / "oaiod.service"
    unit.write_text(service.render_systemd_unit(tmp_path / "my config.toml", ["/bin/true"]))
    done = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr


def test_plist_is_valid_and_starts_run() -> None:
    data = plistlib.loads(PLIST.read_bytes())
    assert data["Label"] == "org.oaio.oaiod"
    assert data["ProgramArguments"][-1] == "run"
    assert data["KeepAlive"] == {"SuccessfulExit": False}
    other = plistlib.loads(service.render_launchd_plist(Path("/etc/o.toml"), ["/x/oaiod"]))
    assert other["ProgramArguments"] == ["/x/oaiod", "--config", "/etc/o.toml", "run"]
    assert other["Label"].startswith("org.oaio.oaiod.")


def test_exec_start_quotes_odd_paths() -> None:
    unit = service.render_systemd_unit(Path("/home/a/my 100% $conf.toml"), ["/opt/o d/oaiod"])
    assert 'ExecStart="/opt/o d/oaiod" --config "/home/a/my 100%% $$conf.toml" run' in unit


def test_install_dry_run_says_what_and_changes_nothing(isolated_home: Path) -> None:
    result = CliRunner().invoke(main, ["service", "install", "--dry-run"])
    assert result.exit_code == 0, result.output
    unit_path = isolated_home / ".config/systemd/user/oaiod.service"
    assert f"would write {unit_path}:" in result.output
    assert "    Type=notify" in result.output
    assert "would run: systemctl --user daemon-reload" in result.output
    assert "would run: systemctl --user enable --now oaiod.service" in result.output
    assert not unit_path.exists()
    other = CliRunner().invoke(main, ["--config", "/etc/oaiod/b.toml", "service", "uninstall", "--dry-run"])
    assert other.exit_code == 0 and "disable --now oaiod-" in other.output and "would remove" in other.output


def test_headless_machine_gets_instructions(isolated_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("USER", "alice")
    problem = service.user_bus_problem()  # the test HOME's runtime dir has no bus socket
    if shutil.which("systemctl") is None:
        assert "does not run systemd" in problem
        return
    assert "loginctl enable-linger alice" in problem and "XDG_RUNTIME_DIR" in problem
    result = CliRunner().invoke(main, ["service", "install"])
    assert result.exit_code == 1
    assert "loginctl enable-linger alice" in result.output
    assert (isolated_home / ".config/systemd/user/oaiod.service").exists()  # written, ready once the bus exists


def test_python_sqlite_and_inotify_work_under_memory_deny_write_execute(tmp_path: Path) -> None:
    """What MemoryDenyWriteExecute=yes enforces, via prctl(PR_SET_MDWE) in the child (Linux >= 6.3)."""
    libc = ctypes.CDLL(None, use_errno=True)

    def deny_write_execute() -> None:
        if libc.prctl(65, 1, 0, 0, 0) != 0:  # PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN
            raise OSError(ctypes.get_errno(), "PR_SET_MDWE")

    probe = libc.prctl(66, 0, 0, 0, 0)  # PR_GET_MDWE
    if probe < 0:
        pytest.skip("kernel without PR_SET_MDWE")
    code = f"""
import mmap, sqlite3, time, pathlib, ctypes
from watchdog.observers import Observer
from watchdog.events import FileSystemEventHandler
import oaiod.daemon.process, oaiod.hub.server
try:
    mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
    raise SystemExit("W+X memory was allowed: MDWE not in force")
except PermissionError:
    pass
seen = []
class H(FileSystemEventHandler):
    def on_any_event(self, event): seen.append(event)
o = Observer(); o.schedule(H(), {str(tmp_path)!r}, recursive=True); o.start()
pathlib.Path({str(tmp_path)!r}, "x").write_text("1")
for _ in range(100):
    if seen: break
    time.sleep(0.05)
o.stop(); o.join()
db = sqlite3.connect({str(tmp_path / "t.db")!r}); db.execute("pragma journal_mode=wal"); db.execute("create table t(x)")
assert ctypes.CFUNCTYPE(ctypes.c_int)(lambda: 7)() == 7
assert seen
print("ok")
"""
    done = subprocess.run(
        [sys.executable, "-c", code], preexec_fn=deny_write_execute, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr


def _dry_run_on_macos(monkeypatch: pytest.MonkeyPatch, *args: str) -> list[str]:
    """``oaiod [ARGS…] --dry-run`` as on macOS: only the platform name is faked (launchd cannot run here)."""
    with monkeypatch.context() as patch:
        patch.setattr(sys, "platform", "darwin")
        result = CliRunner().invoke(main, [*args, "--dry-run"])
    assert result.exit_code == 0, result.output
    return result.output.splitlines()


def _plist_in(lines: list[str], path: Path) -> dict:
    start = lines.index(f"would write {path}:") + 1
    body = [line[4:] for line in lines[start:] if line.startswith("    ")]
    return plistlib.loads("\n".join(body).encode())


def test_install_dry_run_on_macos_writes_a_launch_agent(isolated_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    lines = _dry_run_on_macos(monkeypatch, "service", "install")
    agent = isolated_home / "Library/LaunchAgents/org.oaio.oaiod.plist"
    plist = _plist_in(lines, agent)
    assert plist["Label"] == "org.oaio.oaiod"
    assert plist["ProgramArguments"] == [*service.executable(), "run"]
    assert plist["RunAtLoad"] is True and plist["KeepAlive"] == {"SuccessfulExit": False}
    logs = isolated_home / "Library/Logs/oaiod"
    assert plist["StandardErrorPath"] == str(logs / "org.oaio.oaiod.err.log")
    uid = os.getuid()
    assert f"would create {logs}" in lines  # launchd would not create the log folder itself
    assert f"would run: launchctl bootout gui/{uid} {agent}" in lines
    assert f"would run: launchctl bootstrap gui/{uid} {agent}" in lines
    assert not any("systemctl" in line for line in lines)
    assert not (isolated_home / "Library").exists()  # a dry run changes nothing


def test_service_dry_runs_on_macos_with_a_config(isolated_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = isolated_home / "work.toml"
    label = f"org.oaio.oaiod.{instance_name(config)}"
    agent = isolated_home / f"Library/LaunchAgents/{label}.plist"
    plist = _plist_in(_dry_run_on_macos(monkeypatch, "--config", str(config), "service", "install"), agent)
    assert plist["Label"] == label
    assert plist["ProgramArguments"] == [*service.executable(), "--config", str(config), "run"]
    removed = _dry_run_on_macos(monkeypatch, "--config", str(config), "service", "uninstall")
    assert removed == [f"would run: launchctl bootout gui/{os.getuid()} {agent}", f"would remove {agent}"]
    status = _dry_run_on_macos(monkeypatch, "--config", str(config), "service", "status")
    assert status == [f"{agent}: not installed", f"would run: launchctl print gui/{os.getuid()}/{label}"]
