"""``packaging/systemd/oaiod-hub.service``: valid, hardened like the daemon's unit, and every command line and
setting it names is one ``oaiod hub serve`` accepts."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
from pathlib import Path

import click
import pytest

from oaiod.hub.cli import serve

ROOT = Path(__file__).resolve().parents[2]
UNIT = ROOT / "packaging/systemd/oaiod-hub.service"


def settings(text: str) -> dict[str, str]:
    """``Key=Value`` lines of the unit (each key once in this unit)."""
    found: dict[str, str] = {}
    for raw in text.splitlines():
        if raw and not raw.startswith(("#", "[")):
            key, _, value = raw.partition("=")
            assert key.isidentifier() and key not in found, raw  # syntax: comments, [sections], Key=Value
            found[key] = value
    return found


def test_unit_has_the_required_settings() -> None:
    text = UNIT.read_text()
    assert text.splitlines()[0].startswith("# oaiod hub")
    for line in (
        "[Unit]",
        "[Service]",
        "[Install]",
        "Type=exec",
        "User=oaiod-hub",
        "Restart=on-failure",
        "EnvironmentFile=-/etc/oaiod/hub.env",
        "StateDirectory=oaiod-hub",
        "ProtectSystem=strict",
        "ProtectHome=yes",
        "NoNewPrivileges=yes",
        "CapabilityBoundingSet=",
        "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6",
        "MemoryDenyWriteExecute=yes",
        "UMask=0077",
        "WantedBy=multi-user.target",
    ):
        assert line in text.splitlines(), line
    assert int(settings(text)["LimitNOFILE"]) >= 65536  # a long-poll socket per device


def test_exec_start_is_a_serve_command_on_the_state_directory() -> None:
    found = settings(UNIT.read_text())
    program, *args = shlex.split(found["ExecStart"])
    assert program == "/usr/bin/oaiod" and args[:2] == ["hub", "serve"]
    context = serve.make_context("serve", args[2:])  # raises on an option serve does not take
    assert context.params["data_dir"] == Path("/var/lib") / found["StateDirectory"]


def test_documented_environment_variables_are_serve_options() -> None:
    named = set(re.findall(r"\b(OAIOD_HUB_[A-Z_]+)=", UNIT.read_text()))
    known = {param.envvar for param in serve.params if isinstance(param, click.Option) and param.envvar}
    assert named and named <= known, named - known


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")
def test_systemd_analyze_verify(tmp_path: Path) -> None:
    """System-mode verify; ExecStart must name a program that exists here."""
    unit = tmp_path / "oaiod-hub.service"
    unit.write_text(UNIT.read_text().replace("ExecStart=/usr/bin/oaiod ", "ExecStart=/bin/true "))
    done = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and not done.stderr.strip(), done.stderr
