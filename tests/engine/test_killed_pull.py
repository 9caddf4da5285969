"""A pull killed (``kill -9``) after its renames and before its index rows (design §3, §8 invariant 3; sim seed 12):
files the user deletes before the daemon restarts stay deleted, on every device.

The kill is real: the device's engine runs in a forked child of the test, which sends itself SIGKILL at the first
index-row write after a download was renamed into place, so no ``finally`` of the engine runs; the hub keeps
serving from the test process. The restarted engine is a fresh one on the same folder and state database, with
the daemon's sweep of stale temp files after it, as ``oaiod run`` does."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from oaiod.daemon.wiring import remove_stale_temp_files
from oaiod.engine.pull import INSTALL
from oaiod.engine.rows import RowWriter
from tests.engine.conftest import Device, converge, tree, write

pytestmark = pytest.mark.integration


def _sync_killed_after_rename(make_device: Any, name: str, renamed: Path | Callable[[], bool]) -> int:
    """Run one cycle of device ``name`` in a child killed once ``renamed`` is in place (or says so); returns its wait
    status."""
    installed = renamed if callable(renamed) else renamed.exists
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        try:
            child: Device = make_device("alice", name)
            real = RowWriter.flush

            def killed_before_rows(self: RowWriter) -> None:
                if installed():
                    os.kill(os.getpid(), signal.SIGKILL)
                real(self)

            RowWriter.flush = killed_before_rows  # type: ignore[method-assign]
            child.sync()
        finally:
            os._exit(3)  # the kill never came
    deadline = time.monotonic() + 300  # a safety net against a hung child, not a time limit of the test
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return status
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
        time.sleep(0.05)


def test_files_installed_before_a_kill_and_deleted_since_are_not_downloaded_again(make_device: Any) -> None:
    a, b = make_device("alice", "a"), make_device("alice", "b")
    write(a.root / "docs" / "replaced.txt", "v1")
    write(a.root / "kept.txt", "k")
    converge(a, b)
    write(a.root / "docs" / "new.txt", "new on a")  # a plain download on b
    write(a.root / "docs" / "replaced.txt", "v2 from a")  # a download replacing b's file
    converge(a)
    b.engine.close()
    b.engine.repo.close()

    status = _sync_killed_after_rename(make_device, "b", b.root / "docs" / "new.txt")
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL, status
    assert (b.root / "docs" / "new.txt").read_bytes() == b"new on a"
    assert (b.root / "docs" / "replaced.txt").read_bytes() == b"v2 from a"
    (b.root / "docs" / "new.txt").unlink()  # the user deletes both before the daemon restarts
    (b.root / "docs" / "replaced.txt").unlink()

    restarted = make_device("alice", "b")
    assert not [entry for entry in restarted.engine.repo.journal() if entry.op == INSTALL]  # settled at start
    remove_stale_temp_files(restarted.engine.roots(), time.time())
    converge(restarted, a)
    converge(a, restarted)
    assert a.tree() == restarted.tree() == {"kept.txt": b"k"}


def test_downloads_a_kill_left_in_their_temp_files_are_fetched_again(make_device: Any) -> None:
    """The other side of the rule: a target missing while its temp file is still there was never installed (the
    kill came first, or a power cut took the rename back): it is downloaded, not taken as deleted."""
    a, b = make_device("alice", "a"), make_device("alice", "b")
    write(a.root / "docs" / "kept.txt", "k")  # the folder is there: its downloads are renamed one by one
    converge(a, b)
    write(a.root / "docs" / "first.txt", "1")
    write(a.root / "docs" / "second.txt", "2")
    converge(a)
    b.engine.close()
    b.engine.repo.close()

    pid = os.fork()
    if pid == 0:
        try:
            child: Device = make_device("alice", "b")
            from oaiod.engine import localfs

            real = localfs.install_fetched

            def killed_at_first_rename(*args: Any, **kwargs: Any) -> str:
                os.kill(os.getpid(), signal.SIGKILL)
                return real(*args, **kwargs)

            localfs.install_fetched = killed_at_first_rename  # type: ignore[assignment]
            child.sync()
        finally:
            os._exit(3)
    _, status = os.waitpid(pid, 0)
    assert os.WIFSIGNALED(status), status
    assert not (b.root / "docs" / "first.txt").exists() and not (b.root / "docs" / "second.txt").exists()

    restarted = make_device("alice", "b")
    remove_stale_temp_files(restarted.engine.roots(), time.time())
    converge(restarted, a)
    assert a.tree() == restarted.tree() == {"docs/kept.txt": b"k", "docs/first.txt": b"1", "docs/second.txt": b"2"}


def _copies(root: Path) -> dict[str, bytes]:
    return {path: data for path, data in tree(root).items() if "conflicted copy" in path}


def _killed(status: int) -> None:
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL, status


def test_a_conflicted_copy_of_the_servers_side_made_before_a_kill_is_not_made_again(make_device: Any) -> None:
    """A first sync finds a file here and a different one on the server at the same path (no base): the server's
    side is installed as a conflicted copy. Killed before the index rows, the restarted engine must not make a
    second copy of the same content: the journal says the copy was made, so the server's content is the base."""
    a = make_device("alice", "a")
    write(a.root / "notes.txt", "the server's side")
    converge(a)
    b_root = a.root.parents[2] / "dev-b" / "home" / "oaio_root"  # where make_device puts b
    write(b_root / "notes.txt", "written here before the first sync")
    b = make_device("alice", "b")
    b.sync()  # adopts the user's client root object for its folder: the merge is the next cycle's
    assert not _copies(b_root)
    b.engine.close()
    b.engine.repo.close()

    _killed(_sync_killed_after_rename(make_device, "b", lambda: bool(_copies(b_root))))
    assert list(_copies(b_root).values()) == [b"the server's side"]

    restarted = make_device("alice", "b")
    remove_stale_temp_files(restarted.engine.roots(), time.time())
    converge(restarted, a)
    converge(a, restarted)
    assert a.tree() == restarted.tree()
    assert tree(b_root)["notes.txt"] == b"written here before the first sync"
    assert list(_copies(b_root).values()) == [b"the server's side"]  # one copy, not two


def test_a_conflict_installed_before_a_kill_and_deleted_since_stays_deleted(make_device: Any) -> None:
    """Both sides changed ``notes.txt``: the local edit goes aside to a conflicted copy and the server's side takes
    the name. Killed before the index rows, the user deletes the server's side before the restart: it stays
    deleted, on every device, and the local edit stays in its copy."""
    a, b = make_device("alice", "a"), make_device("alice", "b")
    write(a.root / "notes.txt", "v1")
    converge(a, b)
    write(a.root / "notes.txt", "v2 from a")
    converge(a)
    write(b.root / "notes.txt", "v2 from b")
    b.engine.close()
    b.engine.repo.close()

    def conflict_installed() -> bool:
        return (b.root / "notes.txt").read_bytes() == b"v2 from a" if (b.root / "notes.txt").exists() else False

    _killed(_sync_killed_after_rename(make_device, "b", conflict_installed))
    assert list(_copies(b.root).values()) == [b"v2 from b"]
    (b.root / "notes.txt").unlink()  # the user deletes the server's side before the daemon restarts

    restarted = make_device("alice", "b")
    remove_stale_temp_files(restarted.engine.roots(), time.time())
    converge(restarted, a)
    converge(a, restarted)
    assert a.tree() == restarted.tree()
    assert "notes.txt" not in a.tree()
    assert list(_copies(a.root).values()) == [b"v2 from b"]


def test_a_download_installed_beside_a_folder_before_a_kill_is_not_installed_again(make_device: Any) -> None:
    """The server's file ``X`` meets a folder ``X`` made here: the file is installed as a conflicted copy beside
    it. Killed before the index rows, the restarted engine must not make a second copy: the journal's temp file is
    gone and a folder holds the path, so the file counts as installed beside it (and deleted from ``X``)."""
    a, b = make_device("alice", "a"), make_device("alice", "b")
    write(a.root / "kept.txt", "k")
    converge(a, b)
    write(a.root / "X", "a file on a")
    converge(a)
    write(b.root / "X" / "inner.txt", "a folder on b")
    b.engine.close()
    b.engine.repo.close()

    _killed(_sync_killed_after_rename(make_device, "b", lambda: bool(_copies(b.root))))
    assert list(_copies(b.root).values()) == [b"a file on a"]

    restarted = make_device("alice", "b")
    remove_stale_temp_files(restarted.engine.roots(), time.time())
    converge(restarted, a)
    converge(a, restarted)
    assert a.tree() == restarted.tree()
    assert restarted.tree()["X/inner.txt"] == b"a folder on b"
    assert list(_copies(a.root).values()) == [b"a file on a"]  # one copy, not two
