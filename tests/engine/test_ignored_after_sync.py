"""A synced file that becomes ignored (``ignore_patterns`` of one device, or a new ``.oaioignore`` line) stays on
the server and on the other devices as it was: the device that ignores it no longer uploads or deletes it; a
remote change reaches it only while the local file is as synced (else the local file is kept and reported);
un-ignored, it syncs again from what is on disk, and one deleted meanwhile comes back (design §6)."""

from __future__ import annotations

import shutil

import pytest

from oaiod.daemon.ctl import present
from tests.engine.conftest import Device, converge, tree, write

pytestmark = pytest.mark.integration


def _restart(make_device, device: Device, **settings) -> Device:
    """The same device (root, state, id) with another config: what a daemon restart with new settings does."""
    device.engine.close()
    device.engine.repo.close()
    return make_device(device.user, device.name, **settings)


def _server_files(device: Device) -> list[str]:
    (root,) = [o for o in device.api.stampz(None).objects if o.client_values.get("_name") == "oaiod-root"]
    return root.client_values["_file_paths"]


def test_ignored_after_sync_stays_everywhere_and_comes_back(make_device) -> None:
    a, b = make_device("alice", "a"), make_device("alice", "b")
    write(a.root / "keep.txt", "keep")
    write(a.root / "notes.log", "notes v1")
    write(a.root / "edit.log", "edit v1")
    write(a.root / "build" / "out.bin", "out v1")
    converge(a, b)
    synced = b.tree()

    a = _restart(make_device, a, ignore_patterns=("*.log", "build/"))
    write(a.root / "notes.log", "notes: a's edit while ignored")
    (a.root / "build" / "out.bin").unlink()
    write(a.root / "fresh.log", "never synced")
    converge(a, b)
    assert b.tree() == synced  # nothing a did to ignored files left a
    assert sorted(_server_files(b)) == sorted(synced)
    assert not (a.root / "build" / "out.bin").exists() and (a.root / "notes.log").read_text().startswith("notes: a")

    write(b.root / "edit.log", "edit v2 from b")  # unchanged on a: downloaded there
    write(b.root / "notes.log", "notes v2 from b")  # changed on a too: a keeps its own
    converge(b, a)
    assert (a.root / "edit.log").read_text() == "edit v2 from b"
    assert (a.root / "notes.log").read_text() == "notes: a's edit while ignored"
    kept = [c for c in present.rows(a.engine.conflicts()) if c["kind"] == "ignored"]
    assert [c["path"] for c in kept] == ["notes.log"]
    assert (b.root / "notes.log").read_text() == "notes v2 from b"
    assert "fresh.log" not in b.tree()
    for device in (a, b):  # settled: the frozen rows cause no transfer, every pull completed
        report = device.sync()
        assert (report.uploads, report.downloads, report.pushed, report.errors) == (0, 0, 0, [])
        assert not any(row.remote_dirty for row in device.engine.repo.objects())

    a = _restart(make_device, a)  # un-ignored: a's files sync again from what is on disk
    converge(a, b)
    assert a.tree() == b.tree()
    files = b.tree()
    assert files["notes.log"] == b"notes: a's edit while ignored"  # the local edit kept while ignored wins now
    assert files["build/out.bin"] == b"out v1"  # deleted on a while ignored: restored, never deleted on the server
    assert files["fresh.log"] == b"never synced" and files["edit.log"] == b"edit v2 from b"
    trashed = [p.read_text() for p in (b.root / ".oaiod" / "trash").rglob("notes.log")]
    assert trashed == ["notes v2 from b"]  # b's version, replaced by a's, is in b's trash


def test_new_oaioignore_line_seen_by_the_watcher(make_device) -> None:
    """Only dirty paths (no rescan): a changed ``.oaioignore`` makes the next cycle look at the whole root."""
    a, b = make_device("alice", "a"), make_device("alice", "b")
    write(a.root / "build" / "out.bin", "out")
    write(a.root / "src.txt", "src")
    converge(a, b)
    write(a.root / ".oaioignore", "build/\n")
    a.engine.mark_dirty(a.root, [".oaioignore"])
    a.engine.sync_cycle()
    shutil.rmtree(a.root / "build")
    write(a.root / "build" / "new.bin", "new, ignored")
    a.engine.mark_dirty(a.root, ["build/out.bin", "build/new.bin", "build"])
    report = a.engine.sync_cycle()
    assert report.errors == []
    converge(b)
    assert tree(b.root) == {"build/out.bin": b"out", "src.txt": b"src", ".oaioignore": b"build/\n"}
    assert sorted(_server_files(a)) == [".oaioignore", "build/out.bin", "src.txt"]


def test_remote_file_at_an_ignored_path_in_the_way_keeps_the_local_one(make_device) -> None:
    """b adds files where a has ignored, never synced files: a keeps its own (reported when they differ) instead of
    trying the download at every cycle, and b's stay on the server."""
    a, b = make_device("alice", "a", ignore_patterns=("*.log",)), make_device("alice", "b")
    write(a.root / "mine.log", "a's log")
    write(a.root / "same.log", "same")
    write(a.root / "x.txt", "x")
    converge(a, b)
    assert "mine.log" not in b.tree()
    write(b.root / "mine.log", "b's log")
    write(b.root / "same.log", "same")
    converge(b, a)
    assert (a.root / "mine.log").read_text() == "a's log" and (b.root / "mine.log").read_text() == "b's log"
    assert [c["path"] for c in present.rows(a.engine.conflicts()) if c["kind"] == "ignored"] == ["mine.log"]
    for device in (a, b):
        report = device.sync()
        assert (report.uploads, report.downloads, report.pushed, report.errors) == (0, 0, 0, [])
    write(b.root / "same.log", "same, changed on b")  # a's copy was as the server's: this change reaches a
    converge(b, a)
    assert (a.root / "same.log").read_text() == "same, changed on b"
    assert sorted(_server_files(a)) == ["mine.log", "same.log", "x.txt"]


def test_executable_bit_changed_on_the_server_for_an_ignored_file(make_device) -> None:
    a, b = make_device("alice", "a"), make_device("alice", "b")
    write(a.root / "tool.sh", "echo tool")
    write(a.root / "run.sh", "echo run")
    converge(a, b)
    a = _restart(make_device, a, ignore_patterns=("*.sh",))
    write(a.root / "run.sh", "echo run, edited on a")
    converge(a)
    for name in ("tool.sh", "run.sh"):  # same content, new mtime (a chmod alone changes no indexed stat)
        write(b.root / name, (b.root / name).read_bytes()).chmod(0o755)
    converge(b, a)
    assert (a.root / "tool.sh").stat().st_mode & 0o100  # unchanged on a: the server's bit arrives
    assert not (a.root / "run.sh").stat().st_mode & 0o100 and (a.root / "run.sh").read_text().endswith("on a")
    assert [c["path"] for c in present.rows(a.engine.conflicts()) if c["kind"] == "ignored"] == ["run.sh"]
    report = a.sync()
    assert (report.uploads, report.downloads, report.pushed, report.errors) == (0, 0, 0, [])
    assert not any(row.remote_dirty for row in a.engine.repo.objects())  # every pull completed


def test_a_stale_manifests_file_is_hashed_from_storage(make_device) -> None:
    """``_fetch_hash`` (a server file whose manifest is stale, at an ignored path): downloaded beside its target,
    hashed by the backend on the way, measured, and removed; nothing else is left in the folder."""
    import hashlib

    from oaiod.engine.index import _fetch_hash

    a = make_device("alice", "a")
    write(a.root / "data.bin", "payload v1")
    converge(a)
    (remote,) = [o for o in a.api.stampz(None).objects if o.client_values.get("_name") == "oaiod-root"]
    before = sorted(p.name for p in a.root.iterdir())
    got = _fetch_hash(a.engine.ctx, remote, "data.bin", a.root, True)
    assert got.sha256 == hashlib.sha256(b"payload v1").hexdigest()
    assert (got.size, got.mtime_ns, got.executable) == (len(b"payload v1"), 0, True)
    assert sorted(p.name for p in a.root.iterdir()) == before
