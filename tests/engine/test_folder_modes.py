"""Folder types (issue 14 §4): send-only and receive-only folders, two devices on a real hub; nothing is lost."""

from __future__ import annotations

from pathlib import Path

import pytest

from oaiod.engine import modes, trash
from oaiod.errors import ValidationError
from tests.engine.conftest import Device, converge, write

pytestmark = pytest.mark.integration


def _root_id(device: Device) -> str:
    row = device.engine.client_root.row()
    assert row is not None
    return row.oaio_id


def _trashed(device: Device) -> dict[str, bytes]:
    return {entry.path: Path(entry.stored).read_bytes() for entry in trash.entries(device.engine.roots())}


def _server_versions(device: Device, oaio_id: str) -> int:
    return len(device.engine.versions(oaio_id))


def test_send_only_pushes_its_changes_and_keeps_the_servers_out_until_override(make_device) -> None:
    a, b = make_device("alice", "a"), make_device("alice", "b")
    write(a.root / "shared.txt", "base")
    write(a.root / "other.txt", "other")
    converge(a, b)
    oaio_id = _root_id(a)
    assert a.engine.set_mode(oaio_id, "send-only") == "send-receive"
    write(b.root / "shared.txt", "edited on b")  # the server's change: not applied on a
    write(b.root / "from-b.txt", "new on b")
    converge(b)
    a.sync()
    assert a.tree() == {"shared.txt": b"base", "other.txt": b"other"}
    assert a.engine.mode_notes()[oaio_id].startswith("server has changes not applied here: 2 files")
    write(a.root / "mine.txt", "new on a")  # a's own change is still pushed, on top of the server's version
    a.sync()
    converge(b)
    assert b.tree() == {
        "shared.txt": b"edited on b",
        "from-b.txt": b"new on b",
        "other.txt": b"other",
        "mine.txt": b"new on a",
    }
    assert a.tree() == {"shared.txt": b"base", "other.txt": b"other", "mine.txt": b"new on a"}
    assert "2 files" in a.engine.mode_notes()[oaio_id]
    before = _server_versions(a, oaio_id)
    assert "2 server changes" in a.engine.override(oaio_id)
    a.sync()
    converge(b)
    assert b.tree() == a.tree() == {"shared.txt": b"base", "other.txt": b"other", "mine.txt": b"new on a"}
    assert oaio_id not in a.engine.mode_notes()
    assert _server_versions(a, oaio_id) == before + 1  # what override replaced stays in the older versions
    assert _trashed(b)["shared.txt"] == b"edited on b"  # b's replaced file went to its trash, as any pull does


def test_leaving_send_only_merges_the_servers_changes(make_device) -> None:
    a, b = make_device("alice", "a"), make_device("alice", "b")
    write(a.root / "doc.txt", "base")
    converge(a, b)
    oaio_id = _root_id(a)
    a.engine.set_mode(oaio_id, "send-only")
    write(b.root / "doc.txt", "from b")
    converge(b, a)
    assert a.tree() == {"doc.txt": b"base"}
    a.engine.set_mode(oaio_id, "send-receive")
    converge(a, b)
    assert a.tree() == b.tree() == {"doc.txt": b"from b"}


def test_receive_only_applies_the_server_and_never_sends(make_device) -> None:
    a, b = make_device("alice", "a"), make_device("alice", "b")
    write(a.root / "doc.txt", "base")
    write(a.root / "both.txt", "base")
    converge(a, b)
    oaio_id = _root_id(b)
    b.engine.set_mode(oaio_id, "receive-only")
    write(b.root / "local.txt", "only here")
    write(b.root / "both.txt", "b's edit")
    (b.root / "doc.txt").unlink()
    b.sync()
    assert b.engine.mode_notes()[oaio_id].startswith("local changes not sent: 3 files")
    write(a.root / "both.txt", "a's edit")  # a change on the server to a file changed here too
    write(a.root / "new.txt", "new on a")
    converge(a, b, a)
    assert a.tree() == {"doc.txt": b"base", "both.txt": b"a's edit", "new.txt": b"new on a"}
    here = b.tree()
    assert here["both.txt"] == b"a's edit" and here["new.txt"] == b"new on a" and here["local.txt"] == b"only here"
    (copy,) = [path for path in here if "conflicted copy" in path]
    assert here[copy] == b"b's edit"  # the local edit kept as a conflicted copy, not sent
    assert "doc.txt" not in here
    reverted = b.engine.revert(oaio_id)
    assert {"doc.txt", "local.txt", copy} <= set(reverted)
    assert b.tree() == a.tree()
    assert _trashed(b)["local.txt"] == b"only here" and _trashed(b)[copy] == b"b's edit"
    assert oaio_id not in b.engine.mode_notes()
    converge(a, b)
    assert b.tree() == a.tree()


def test_revert_trashes_a_local_edit_before_putting_the_server_version_back(make_device) -> None:
    a, b = make_device("alice", "a"), make_device("alice", "b")
    write(a.root / "doc.txt", "base")
    converge(a, b)
    oaio_id = _root_id(b)
    b.engine.set_mode(oaio_id, "receive-only")
    write(b.root / "doc.txt", "edited here")
    b.sync()
    assert b.engine.revert(oaio_id) == ["doc.txt"]
    assert b.tree() == {"doc.txt": b"base"}
    assert _trashed(b)["doc.txt"] == b"edited here"


def test_wrong_mode_or_action_is_refused(make_device) -> None:
    a = make_device("alice", "a")
    write(a.root / "doc.txt", "base")
    a.sync()
    oaio_id = _root_id(a)
    with pytest.raises(ValidationError, match="must be one of"):
        a.engine.set_mode(oaio_id, "sideways")
    with pytest.raises(ValidationError, match="override is for a send-only folder"):
        a.engine.override(oaio_id)
    with pytest.raises(ValidationError, match="revert is for a receive-only folder"):
        a.engine.revert(oaio_id)
    with pytest.raises(ValidationError, match="not a folder synced here"):
        a.engine.set_mode("nope", "send-only")


def test_the_configs_folder_modes_apply_at_the_first_cycle(make_device, tmp_path: Path) -> None:
    a = make_device("alice", "a")
    write(a.root / "doc.txt", "base")
    converge(a)
    oaio_id = _root_id(a)
    b = make_device("alice", "b", folder_modes={str(tmp_path / "dev-b" / "home" / "oaio_root"): "receive-only"})
    converge(b)
    write(b.root / "mine.txt", "kept here")
    b.sync()
    a.sync()
    assert a.tree() == {"doc.txt": b"base"} and b.tree() == {"doc.txt": b"base", "mine.txt": b"kept here"}
    assert b.engine.mode_notes()[oaio_id].startswith("local changes not sent: 1 files")


def test_send_only_does_not_bring_back_a_file_the_server_deleted_until_override(make_device) -> None:
    a, b = make_device("alice", "a"), make_device("alice", "b")
    write(a.root / "gone.txt", "to delete")
    write(a.root / "doc.txt", "base")
    converge(a, b)
    oaio_id = _root_id(a)
    a.engine.set_mode(oaio_id, "send-only")
    (b.root / "gone.txt").unlink()
    b.sync()
    write(a.root / "doc.txt", "edited on a")  # committed on top of b's deletion
    a.sync()
    converge(b)
    assert b.tree() == {"doc.txt": b"edited on a"}
    assert a.tree() == {"gone.txt": b"to delete", "doc.txt": b"edited on a"}
    assert "1 files" in a.engine.mode_notes()[oaio_id]
    a.engine.override(oaio_id)
    a.sync()
    converge(b)
    assert b.tree() == a.tree() == {"gone.txt": b"to delete", "doc.txt": b"edited on a"}


def test_send_only_keeps_its_edit_of_a_file_the_server_changed_too(make_device) -> None:
    a, b = make_device("alice", "a"), make_device("alice", "b")
    write(a.root / "doc.txt", "base")
    converge(a, b)
    oaio_id = _root_id(a)
    a.engine.set_mode(oaio_id, "send-only")
    write(b.root / "doc.txt", "b first")
    write(a.root / "doc.txt", "a second")
    write(a.root / "a.txt", "only a")
    b.sync()  # b's change reaches the server first: a commits on top of it, doc.txt as the server has it
    report = a.sync()
    assert report.errors == [] and report.pushed == 1
    converge(b)
    assert b.tree() == {"doc.txt": b"b first", "a.txt": b"only a"}
    assert a.tree() == {"doc.txt": b"a second", "a.txt": b"only a"}  # a's edit kept here, not lost
    assert "1 files" in a.engine.mode_notes()[oaio_id]


def test_send_only_commit_that_loses_a_race_records_the_servers_version_and_commits_again(make_device) -> None:
    a, b = make_device("alice", "a"), make_device("alice", "b")
    write(a.root / "doc.txt", "base")
    converge(a, b)
    oaio_id = _root_id(a)
    a.engine.set_mode(oaio_id, "send-only")
    write(a.root / "a.txt", "only a")
    write(b.root / "doc.txt", "b meanwhile")
    upload, raced = a.api.upload, []

    def upload_after_b(obj: object) -> object:  # b commits between a's pull and a's commit: a gets a 409
        if not raced:
            raced.append(b.sync())
        return upload(obj)  # type: ignore[arg-type]

    a.api.upload = upload_after_b  # type: ignore[method-assign]
    report = a.sync()
    assert raced and report.errors == [] and report.pushed == 1 and report.conflicts == []
    converge(b)
    assert b.tree() == {"doc.txt": b"b meanwhile", "a.txt": b"only a"}
    assert a.tree() == {"doc.txt": b"base", "a.txt": b"only a"}
    assert "1 files" in a.engine.mode_notes()[oaio_id]


def test_a_folder_not_on_the_server_cannot_be_receive_only(make_device, tmp_path: Path) -> None:
    a = make_device("alice", "a")
    a.sync()
    fresh = tmp_path / "fresh"
    write(fresh / "x.txt", "x")
    with pytest.raises(ValidationError, match="nothing to receive"):
        a.engine.add_folder(fresh, "receive-only")
    assert all(row.local_root != str(fresh) for row in a.engine.objects().objects)  # nothing was added
    oaio_id = a.engine.add_folder(fresh)
    with pytest.raises(ValidationError, match="nothing to receive"):
        a.engine.set_mode(oaio_id, "receive-only")
    a.sync()
    assert a.engine.set_mode(oaio_id, "receive-only") == "send-receive"  # registered now


def test_a_pending_override_outlives_a_restart_and_is_dropped_by_leaving_send_only(make_device) -> None:
    """``ctl override`` is a journal row until a push commits: a daemon restarted before its next cycle still
    overrides; a folder that leaves send-only forgets it (so a later send-only does not override unasked)."""
    a, b = make_device("alice", "a"), make_device("alice", "b")
    write(a.root / "gone.txt", "to delete")
    converge(a, b)
    oaio_id = _root_id(a)
    a.engine.set_mode(oaio_id, "send-only")
    (b.root / "gone.txt").unlink()
    b.sync()
    a.sync()
    assert "1 files" in a.engine.mode_notes()[oaio_id]
    assert "replaces 1 server changes" in a.engine.override(oaio_id)
    a.engine.close()
    a.engine.repo.close()
    a = make_device("alice", "a")  # the same state folder: a restarted daemon
    assert modes.override_pending(a.engine.ctx, oaio_id)
    a.sync()
    converge(b)
    assert b.tree() == a.tree() == {"gone.txt": b"to delete"}
    assert not modes.override_pending(a.engine.ctx, oaio_id)

    (b.root / "gone.txt").unlink()
    b.sync()
    a.sync()
    a.engine.override(oaio_id)
    a.engine.set_mode(oaio_id, "send-receive")
    assert not modes.override_pending(a.engine.ctx, oaio_id)


def test_the_status_counts_match_the_lists_they_stand_for(make_device, tmp_path: Path) -> None:
    """``ctl status`` counts a receive-only folder's local changes with one COUNT query and a send-only folder's
    server changes once per server version: the same numbers as the lists ``ctl revert``/``override`` act on."""
    a = make_device("alice", "a")
    b = make_device("alice", "b", folder_modes={str(tmp_path / "dev-b" / "home" / "oaio_root"): "receive-only"})
    write(a.root / "edit.txt", "base")
    write(a.root / "gone.txt", "base")
    write(a.root / "keep.txt", "base")
    converge(a, b)
    oaio_id = _root_id(a)
    write(b.root / "edit.txt", "changed on b")
    (b.root / "gone.txt").unlink()
    write(b.root / "new.txt", "added on b")
    b.sync()
    row = b.engine.repo.get_object(oaio_id)
    assert row is not None
    local = modes.local_changes(b.engine.ctx, row)
    assert sorted(local) == ["edit.txt", "gone.txt", "new.txt"]
    assert b.engine.repo.count_local_changes(oaio_id) == 3
    assert b.engine.mode_notes()[oaio_id].startswith("local changes not sent: 3 files")

    a.engine.set_mode(oaio_id, "send-only")
    b.engine.set_mode(oaio_id, "send-receive")
    converge(b)
    a.sync()
    assert a.engine.mode_notes()[oaio_id].startswith("server has changes not applied here: 3 files")
    assert a.engine.mode_notes()[oaio_id].startswith("server has changes not applied here: 3 files")  # memo
    write(b.root / "more.txt", "one more")
    b.sync()
    a.sync()  # a newer server version: counted again
    assert a.engine.mode_notes()[oaio_id].startswith("server has changes not applied here: 4 files")
