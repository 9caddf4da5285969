"""Fixtures of the daemon tests: every test gets its own HOME and XDG folders, so per-instance paths,
sockets and the embedded defaults never touch the real user's files."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

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


@pytest.fixture
def cluster(hub: Any, tmp_path: Path) -> Iterator[Any]:
    """Daemon processes of the hub's users on Local storage in ``tmp_path`` (see ``e2e_helpers.Cluster``)."""
    from e2e_helpers import Cluster

    storage = tmp_path / "csh-local"
    storage.mkdir()
    hub.service.set_storage("Local", {"root_folder": str(storage)})
    group = Cluster(hub, tmp_path, storage)
    try:
        yield group
    finally:
        group.stop_all()


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Numbers the end-to-end tests measured (never asserted): e.g. change propagation time."""
    from e2e_helpers import MEASUREMENTS

    if MEASUREMENTS:
        terminalreporter.section("oaiod end-to-end measurements")
        for line in MEASUREMENTS:
            terminalreporter.write_line(line)
