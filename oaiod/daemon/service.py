"""Install the daemon as a per-user service: a systemd user unit on Linux, a launchd agent on macOS.

The unit and the plist are rendered from the templates below (so the wheel carries exactly what ``service
install`` writes); ``packaging/`` holds the same files rendered with the defaults, for packagers. Every action
returns the lines it printed, and ``dry_run`` only says what it would do.

Without a user bus (a headless server, an ssh session without lingering) ``systemctl --user`` cannot work;
we say what to do instead of failing obscurely.

Errors: :class:`ServiceError` (``OaiodError``) with a message for a person.
"""

from __future__ import annotations

import os
import plistlib
import shlex
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from oaiod.daemon.config import instance_name
from oaiod.errors import OaiodError

UNIT_NAME = "oaiod"
LAUNCHD_LABEL = "org.oaio.oaiod"

SYSTEMD_TEMPLATE = """\
# oaiod user service: keeps your folders in sync (systemctl --user status {unit}).
# Installed by: oaiod service install   (remove with: oaiod service uninstall)
[Unit]
Description=oaiod folder sync daemon{description}
Documentation=https://pypi.org/project/oaiod/
Wants=network-online.target
After=network-online.target

[Service]
Type=notify
NotifyAccess=main
ExecStart={exec_start}
ExecReload=/bin/kill -HUP $MAINPID
Restart=on-failure
RestartSec=5
WatchdogSec=60
TimeoutStopSec=120
# Hardening that still lets the daemon read and write every synced folder under your home:
# the rest of the file system is read-only, /tmp is private, no privilege gain, no kernel tweaks.
# Python, sqlite and inotify need nothing more (MemoryDenyWriteExecute is fine: CPython has no JIT and
# ctypes/libffi trampolines work without writable+executable memory; tested by tests/daemon).
NoNewPrivileges=yes
PrivateTmp=yes
ProtectSystem=strict
ReadWritePaths=%h
ProtectKernelTunables=yes
ProtectKernelModules=yes
ProtectKernelLogs=yes
ProtectControlGroups=yes
ProtectClock=yes
ProtectHostname=yes
RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6
RestrictNamespaces=yes
RestrictRealtime=yes
RestrictSUIDSGID=yes
LockPersonality=yes
MemoryDenyWriteExecute=yes
SystemCallArchitectures=native
UMask=0077

[Install]
WantedBy=default.target
"""


class ServiceError(OaiodError):
    """A service could not be installed, removed or queried; the message says what to do."""


def executable() -> list[str]:
    """How to start this oaiod: the ``oaiod`` script next to this Python, else ``python -m oaiod.cli``."""
    script = Path(sys.executable).with_name("oaiod")
    if script.exists():
        return [str(script)]
    found = shutil.which("oaiod")
    return [found] if found else [sys.executable, "-m", "oaiod.cli"]


def command_line(config: Path | None, exe: Sequence[str] | None = None) -> list[str]:
    args = list(exe or executable())
    if config is not None:
        args += ["--config", str(Path(config).expanduser().absolute())]
    return [*args, "run"]


def unit_name(config: Path | None) -> str:
    """``oaiod`` for the default config, ``oaiod-<instance>`` for another, so both can be installed."""
    return UNIT_NAME if config is None else f"{UNIT_NAME}-{instance_name(config)}"


def render_systemd_unit(config: Path | None, exe: Sequence[str] | None = None) -> str:
    exec_start = " ".join(_systemd_quote(arg) for arg in command_line(config, exe))
    description = "" if config is None else f" ({Path(config).expanduser().absolute()})"
    return SYSTEMD_TEMPLATE.format(unit=unit_name(config), exec_start=exec_start, description=description)


def _systemd_quote(arg: str) -> str:
    """Quote for ExecStart=: double quotes, with ``\\``, ``"``, ``%`` and ``$`` escaped."""
    escaped = arg.replace("\\", "\\\\").replace('"', '\\"').replace("%", "%%").replace("$", "$$")
    return f'"{escaped}"' if escaped != arg or " " in arg or not arg else arg


def launchd_log_dir() -> Path:
    """Where the agent's stdout/stderr go; launchd does not create missing folders, ``install`` does."""
    return Path.home() / "Library" / "Logs" / "oaiod"


def render_launchd_plist(config: Path | None, exe: Sequence[str] | None = None, log_dir: Path | None = None) -> bytes:
    label = LAUNCHD_LABEL if config is None else f"{LAUNCHD_LABEL}.{instance_name(config)}"
    logs = log_dir or launchd_log_dir()
    plist = {
        "Label": label,
        "ProgramArguments": command_line(config, exe),
        "RunAtLoad": True,
        "KeepAlive": {"SuccessfulExit": False},  # restart after a crash, not after `oaiod ctl stop`
        "ProcessType": "Background",
        "ThrottleInterval": 10,
        "ExitTimeOut": 120,
        "StandardOutPath": str(logs / f"{label}.out.log"),
        "StandardErrorPath": str(logs / f"{label}.err.log"),
        "Umask": 0o077,
    }
    return plistlib.dumps(plist, sort_keys=False)


# -- install / uninstall / status --------------------------------------------------------------------------------


def _is_macos() -> bool:
    return sys.platform == "darwin"


def systemd_unit_path(config: Path | None) -> Path:
    base = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    return base / "systemd" / "user" / f"{unit_name(config)}.service"


def launchd_plist_path(config: Path | None) -> Path:
    label = LAUNCHD_LABEL if config is None else f"{LAUNCHD_LABEL}.{instance_name(config)}"
    return Path.home() / "Library" / "LaunchAgents" / f"{label}.plist"


def user_bus_problem() -> str | None:
    """Why ``systemctl --user`` cannot work here (with what to do), or None when it can."""
    if shutil.which("systemctl") is None:
        return "systemctl is not installed: this system does not run systemd; start `oaiod run` another way"
    runtime = os.environ.get("XDG_RUNTIME_DIR", "")
    if not runtime or not (Path(runtime) / "bus").exists():
        user = os.environ.get("USER") or os.environ.get("LOGNAME") or "$USER"
        return (
            "no systemd user bus in this session (XDG_RUNTIME_DIR"
            + (f"={runtime}" if runtime else " is unset")
            + f"). On a headless machine run once: sudo loginctl enable-linger {user}; then log in again "
            "(or export XDG_RUNTIME_DIR=/run/user/$(id -u)) and repeat this command"
        )
    return None


def _run(cmd: list[str], lines: list[str], dry_run: bool, *, check: bool = True) -> subprocess.CompletedProcess[str]:
    lines.append(("would run: " if dry_run else "running: ") + shlex.join(cmd))
    if dry_run:
        return subprocess.CompletedProcess(cmd, 0, "", "")
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)
    if check and done.returncode != 0:
        raise ServiceError(f"{shlex.join(cmd)} failed: {(done.stderr or done.stdout).strip()}")
    return done


def _write(path: Path, content: bytes, lines: list[str], dry_run: bool) -> None:
    if dry_run:
        lines.append(f"would write {path}:")
        lines.extend("    " + line for line in content.decode().splitlines())
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(content)
    os.replace(tmp, path)
    lines.append(f"wrote {path}")


def _make_folder(path: Path, lines: list[str], dry_run: bool) -> None:
    if path.is_dir():
        return
    lines.append(f"{'would create' if dry_run else 'created'} {path}")
    if not dry_run:
        path.mkdir(parents=True, mode=0o700)


def install(config: Path | None, *, dry_run: bool = False) -> list[str]:
    """Write the service file and start it now and at every login."""
    lines: list[str] = []
    if _is_macos():
        path = launchd_plist_path(config)
        _write(path, render_launchd_plist(config), lines, dry_run)
        _make_folder(launchd_log_dir(), lines, dry_run)
        _run(["launchctl", "bootout", f"gui/{os.getuid()}", str(path)], lines, dry_run, check=False)
        _run(["launchctl", "bootstrap", f"gui/{os.getuid()}", str(path)], lines, dry_run)
        return lines
    path = systemd_unit_path(config)
    _write(path, render_systemd_unit(config).encode(), lines, dry_run)
    problem = user_bus_problem()
    if problem and not dry_run:
        lines.append(f"the unit is written, but it cannot be started: {problem}")
        raise ServiceError("\n".join(lines))
    if problem:
        lines.append(f"note: {problem}")
    _run(["systemctl", "--user", "daemon-reload"], lines, dry_run)
    _run(["systemctl", "--user", "enable", "--now", f"{unit_name(config)}.service"], lines, dry_run)
    return lines


def uninstall(config: Path | None, *, dry_run: bool = False) -> list[str]:
    """Stop the service and remove its file."""
    lines: list[str] = []
    if _is_macos():
        path = launchd_plist_path(config)
        _run(["launchctl", "bootout", f"gui/{os.getuid()}", str(path)], lines, dry_run, check=False)
    else:
        path = systemd_unit_path(config)
        if user_bus_problem() is None or dry_run:
            _run(
                ["systemctl", "--user", "disable", "--now", f"{unit_name(config)}.service"], lines, dry_run, check=False
            )
    if dry_run:
        lines.append(f"would remove {path}")
    elif path.exists():
        path.unlink()
        lines.append(f"removed {path}")
        if not _is_macos() and user_bus_problem() is None:
            _run(["systemctl", "--user", "daemon-reload"], lines, dry_run, check=False)
    else:
        lines.append(f"{path} is not installed")
    return lines


def status(config: Path | None, *, dry_run: bool = False) -> list[str]:
    """Whether the service file exists and what the service manager says about it."""
    lines: list[str] = []
    path = launchd_plist_path(config) if _is_macos() else systemd_unit_path(config)
    lines.append(f"{path}: {'installed' if path.exists() else 'not installed'}")
    if _is_macos():
        label = path.stem
        done = _run(["launchctl", "print", f"gui/{os.getuid()}/{label}"], lines, dry_run, check=False)
    else:
        problem = user_bus_problem()
        if problem and not dry_run:
            lines.append(problem)
            return lines
        done = _run(["systemctl", "--user", "is-active", f"{unit_name(config)}.service"], lines, dry_run, check=False)
    if not dry_run:
        lines.append((done.stdout or done.stderr).strip() or f"exit status {done.returncode}")
    return lines
