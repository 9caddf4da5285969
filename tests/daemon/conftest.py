"""Fixtures of the daemon tests: every test gets its own HOME and XDG folders, so per-instance paths,
sockets and the embedded defaults never touch the real user's files."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def isolated_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh HOME with XDG state/data/runtime folders; short paths keep Unix socket names under 104 bytes."""
    home = tmp_path_factory.mktemp("h")
    runtime = home / "run"
    runtime.mkdir(mode=0o700)
    env = {
        "HOME": str(home),
        "XDG_STATE_HOME": str(home / ".local/state"),
        "XDG_DATA_HOME": str(home / ".local/share"),
        "XDG_CONFIG_HOME": str(home / ".config"),
        "XDG_CACHE_HOME": str(home / ".cache"),
        "XDG_RUNTIME_DIR": str(runtime),
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    for key in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "OAIOD_CONFIG"):
        monkeypatch.delenv(key, raising=False)
    assert os.environ["HOME"] == str(home)
    return home
