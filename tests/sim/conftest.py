"""Fixtures of the randomized runs: an isolated HOME for the daemons (as tests/daemon does), and the daemon
test helpers on the import path (``Cluster``, ``DaemonProcess``)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "daemon"))


@pytest.fixture(autouse=True)
def isolated_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh HOME with XDG folders; short paths keep the daemons' Unix socket names under 104 bytes."""
    home = tmp_path_factory.mktemp("h")
    runtime = home / "run"
    runtime.mkdir(mode=0o700)
    for key, sub in (
        ("XDG_STATE_HOME", ".local/state"),
        ("XDG_DATA_HOME", ".local/share"),
        ("XDG_CONFIG_HOME", ".config"),
        ("XDG_CACHE_HOME", ".cache"),
    ):
        monkeypatch.setenv(key, str(home / sub))
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(runtime))
    for key in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "OAIOD_CONFIG"):
        monkeypatch.delenv(key, raising=False)
    return home
