"""A failed object is stored with its kind, shown in ``status()`` and backed off by it (oaiod.state.backoff): a
storage host that refuses an object's files waits long, and is tried again at once after a local change to that
object or when asked (``ctl sync``: ``retry_failed``), not every 10 s.

A real engine against a real hub with Local storage. The refusal is real too: the object's folder on the storage
host becomes a symlink leading out of it, which Local refuses as a permission failure (a key never leaves its root).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path

import pytest

from oaiod.daemon.cli import render_status
from oaiod.daemon.ctl import present
from oaiod.state.models import ObjectRow
from tests.engine.conftest import Device, write

pytestmark = pytest.mark.integration


def _waits(next_try: str) -> float:
    when = dt.datetime.strptime(next_try, "%Y%m%d%H%M%S%f").replace(tzinfo=dt.UTC)
    return (when - dt.datetime.now(dt.UTC)).total_seconds()


def _refuse_storage(storage_root: Path, oaio_id: str, aside: Path) -> Callable[[], None]:
    """Make the storage host refuse ``oaio_id``'s keys; returns what puts it right again."""
    folder = storage_root / oaio_id
    folder.rename(aside)
    folder.symlink_to(aside)

    def repair() -> None:
        folder.unlink()
        aside.rename(folder)

    return repair


def _root_object(device: Device) -> ObjectRow:
    (row,) = [row for row in device.engine.repo.objects() if row.kind == "root"]
    return row


def _failed_push(device: Device, storage_root: Path, tmp_path: Path) -> tuple[str, Callable[[], None]]:
    write(device.root / "a.txt", "first")
    assert device.sync().errors == []
    oaio_id = _root_object(device).oaio_id
    repair = _refuse_storage(storage_root, oaio_id, tmp_path / "elsewhere")
    write(device.root / "b.txt", "second")
    report = device.sync()
    assert len(report.errors) == 1 and report.errors[0].startswith(oaio_id), report
    return oaio_id, repair


def test_a_refused_object_is_stored_and_shown_with_its_kind_and_waits_long(
    make_device: Callable[..., Device],
    storage_root: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    alice = make_device("alice", "a")
    oaio_id, repair = _failed_push(alice, storage_root, tmp_path)

    (error,) = present.status(alice.engine.status())["errors"]
    assert (error["key"], error["kind"]) == (f"obj:{oaio_id}", "permission"), error
    assert error["message"].startswith("push: ") and "symlink" in error["message"]
    assert 29 * 60 < _waits(error["next_try"]) <= 30 * 60  # not 10 s: nothing changes by itself that soon
    monkeypatch.setenv("COLUMNS", "400")  # `ctl status` for people: one line per failed item, its kind first
    render_status({"state": "error", "engine": present.status(alice.engine.status())})
    assert f"permission: {oaio_id}: push: " in capsys.readouterr().out

    repair()
    assert alice.sync().errors == []  # still waiting: not tried again, and nothing pushed
    assert alice.engine.repo.backing_off(f"obj:{oaio_id}") and alice.engine.repo.get_object(oaio_id).local_dirty

    write(alice.root / "c.txt", "third")  # a local change to that object: tried again at once
    report = alice.sync()
    assert report.errors == [] and report.pushed == 1
    assert present.status(alice.engine.status())["errors"] == []
    bob = make_device("alice", "b")
    bob.sync()
    assert bob.tree() == {"a.txt": b"first", "b.txt": b"second", "c.txt": b"third"}


def test_ctl_sync_tries_a_backed_off_object_again_without_a_local_change(
    make_device: Callable[..., Device], storage_root: Path, tmp_path: Path
) -> None:
    alice = make_device("alice", "a")
    oaio_id, repair = _failed_push(alice, storage_root, tmp_path)
    assert alice.sync().errors == []  # backed off: the next cycle leaves it alone
    alice.engine.retry_failed()
    again = alice.sync()
    assert (
        len(again.errors) == 1 and present.status(alice.engine.status())["errors"][0]["attempts"] == 2
    )  # tried, refused again
    repair()
    alice.engine.retry_failed()
    assert alice.sync().pushed == 1 and present.status(alice.engine.status())["errors"] == []
    assert (storage_root / oaio_id).is_dir() and not (storage_root / oaio_id).is_symlink()
