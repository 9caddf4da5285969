"""Revision 0002 upgrades a database of 0001 in place (rows kept, files not ignored) and the excluded folders."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from oaiod import migrate
from oaiod.state import StateRepo


def test_upgrade_from_0001_keeps_rows(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite3"
    migrate.upgrade("daemon", f"sqlite:///{path}", "0001")
    with sqlite3.connect(path) as connection:
        connection.execute(
            "insert into objects (oaio_id, client_stamp, server_stamp, client_values, server_values, username,"
            " device_id, app_id, csh_access_right, kind, status, synced_stamp, synced_values, local_dirty,"
            " remote_dirty, hold_reason, delete_confirmed) values"
            " ('o1', '', '', '{}', '{}', '', '', '', 'C', 'folder', 'active', '', '{}', 0, 0, '', 0)"
        )
        connection.execute(
            "insert into files (oaio_id, path, present, size, mtime_ns, inode, sha256, executable, synced_sha256,"
            " synced_stamp, synced_executable) values ('o1', 'a.txt', 1, 1, 2, 3, 'x', 0, 'x', '', 0)"
        )
    repo = StateRepo(tmp_path)  # upgrades to the newest revision
    assert list(repo.iter_scan_rows("o1")) == [("a.txt", 1, 2, 3, 1, 0, 0)]
    assert repo.ignored_files("o1") == []
    repo.close()


def test_excluded_folders(tmp_path: Path) -> None:
    repo = StateRepo(tmp_path)
    repo.exclude_folder("/r/proj", "o1", "removed with `ctl remove`")
    repo.exclude_folder("/r/proj", "o2", "no longer shared with you")  # the newest reason wins
    (row,) = repo.excluded_folders()
    assert (row.path, row.oaio_id, row.reason) == ("/r/proj", "o2", "no longer shared with you")
    assert repo.include_folder("/r/proj") and not repo.include_folder("/r/proj")
    assert repo.excluded_folders() == []
    repo.close()
