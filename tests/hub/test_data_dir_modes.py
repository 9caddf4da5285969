"""The hub's database files are private (0600) whatever the umask and the data folder's mode; an open data folder
is logged as a warning. A real hub on SQLite, over loopback; the daemon's log file beside it."""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from oaiod.daemon.logs import PrivateRotatingFileHandler
from oaiod.hub.server import HubServer
from tests.hub.objects import new_object

pytestmark = pytest.mark.integration


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def open_umask() -> Iterator[None]:
    """The common umask 022: files are born 0644 unless the code asks otherwise."""
    old = os.umask(0o022)
    yield
    os.umask(old)


def database_files(data_dir: Path) -> list[Path]:
    return sorted(path for path in data_dir.iterdir() if path.name.startswith("hub.sqlite3"))


def test_database_files_are_private_in_an_open_data_folder(
    tmp_path: Path,
    open_umask: None,
    hub_factory: Callable[..., HubServer],
    hub_session: Callable[..., Any],
    caplog: pytest.LogCaptureFixture,
) -> None:
    data_dir = tmp_path / "hub"
    data_dir.mkdir(mode=0o755)
    data_dir.chmod(0o755)
    with caplog.at_level(logging.WARNING, logger="oaiod.hub"):
        hub = hub_factory(data_dir=data_dir)
    alice = hub_session(hub, "alice")
    assert alice.post("register/", json=new_object("alice", "doc")).ok  # writes: the WAL and its index exist
    names = [path.name for path in database_files(data_dir)]
    assert names == ["hub.sqlite3", "hub.sqlite3-shm", "hub.sqlite3-wal"]
    assert {path.name: mode(path) for path in database_files(data_dir)} == dict.fromkeys(names, 0o600)
    warnings = [record.getMessage() for record in caplog.records if record.levelno == logging.WARNING]
    assert any(f"{data_dir} is mode 755" in line and "chmod 700" in line for line in warnings), warnings


def test_database_files_made_readable_before_are_made_private(
    tmp_path: Path, open_umask: None, hub_factory: Callable[..., HubServer], caplog: pytest.LogCaptureFixture
) -> None:
    data_dir = tmp_path / "hub"
    hub = hub_factory(data_dir=data_dir)
    hub.stop()
    assert mode(data_dir) == 0o700
    for path in database_files(data_dir):
        path.chmod(0o644)  # as an older hub left them
    with caplog.at_level(logging.WARNING, logger="oaiod.hub"):
        hub_factory(data_dir=data_dir, users=False)
    assert database_files(data_dir) and all(mode(path) == 0o600 for path in database_files(data_dir))
    assert not [record for record in caplog.records if record.levelno == logging.WARNING]  # a 0700 folder is fine


def test_the_daemon_log_files_are_private(tmp_path: Path, open_umask: None) -> None:
    log_file = tmp_path / "oaiod.log"
    log_file.write_text("from an older daemon\n")
    log_file.chmod(0o644)
    handler = PrivateRotatingFileHandler(log_file, maxBytes=200, backupCount=2, encoding="utf-8")
    try:
        record = logging.LogRecord("oaiod", logging.INFO, __file__, 1, "x" * 150, None, None)
        for _ in range(5):  # rotates: each new file is made by the handler
            handler.emit(record)
    finally:
        handler.close()
    files = sorted(tmp_path.iterdir())
    assert [path.name for path in files] == ["oaiod.log", "oaiod.log.1", "oaiod.log.2"]
    assert {path.name: mode(path) for path in files} == {path.name: 0o600 for path in files}
