"""The engine's ctl operations: status, versions and restore, gc, rebuild-index, remove, values of data objects."""

from __future__ import annotations

import pytest

from oaiod.daemon.ctl import present
from oaiod.model import OaiObject, now_stamp
from tests.engine.conftest import converge, tree, write

pytestmark = pytest.mark.integration


def test_versions_restore_and_gc(make_device, storage_root, tmp_path) -> None:
    a = make_device("alice", "a", keep_versions=1)
    for version in range(3):
        write(a.root / "f.txt", f"v{version}")
        converge(a)
    root_id = next(r.oaio_id for r in a.engine.repo.objects() if r.kind == "root")
    versions = present.versions(a.engine.versions(root_id))
    assert len(versions) >= 3 and versions[0]["stamp"] > versions[-1]["stamp"]
    first_with_file = [v for v in versions if v["files"] == 1][-1]
    restored_to = tmp_path / "restored"
    seen: list[tuple[str, int, int]] = []  # what ctl restore --wait and ctl activity show while it runs
    real_start = a.engine.progress.start

    def start(path: str, total: int, files: int = 1, **kwargs: bool) -> None:
        seen.append((path, total, files))
        real_start(path, total, files, **kwargs)

    a.engine.progress.start = start
    assert a.engine.restore(root_id, first_with_file["stamp"], restored_to) == ["f.txt"]
    assert seen == [("f.txt", 2, 1)] and a.engine.progress.queued_downloads == 0
    assert (restored_to / "f.txt").read_text() == "v0"
    # restore over the live folder: the current file goes to the trash, the old one is pushed as a new version
    a.engine.restore(root_id, first_with_file["stamp"])
    converge(a)
    assert tree(a.root) == {"f.txt": b"v0"}
    stamps_before = {p.name for p in (storage_root / root_id).iterdir()}
    result = a.engine.gc()
    stamps_after = {p.name for p in (storage_root / root_id).iterdir()}
    assert result["versions"] >= 1 and len(stamps_after) < len(stamps_before)
    row = a.engine.repo.get_object(root_id)
    assert row.client_stamp in stamps_after
    status = present.status(a.engine.status())
    assert status["state"] == "idle" and status["held"] == [] and status["errors"] == []


def test_rebuild_index_keeps_user_files(make_device) -> None:
    a, b = make_device("alice", "a"), make_device("alice", "b")
    write(a.root / "same.txt", "same")
    write(a.root / "differs.txt", "server side")
    converge(a, b)
    write(b.root / "differs.txt", "local edit, never synced")
    b.engine.rebuild_index()
    converge(b, a)
    assert (b.root / "differs.txt").read_text() == "local edit, never synced"
    assert a.tree() == b.tree() and any("conflicted copy" in path for path in a.tree())


def test_remove_and_data_object_values(make_device, tmp_path) -> None:
    a, b = make_device("alice", "a"), make_device("alice", "b")
    folder = tmp_path / "extra"
    write(folder / "e.txt", "e")
    oaio_id = a.engine.add_folder(folder)
    stamp = now_stamp()
    data = OaiObject(
        oaio_id=f"app⫻alice﹫x⁄prefs⁄{stamp}",
        client_stamp=stamp,
        client_values={"k": 1, "_name": "prefs"},
        csh_id="Local",
        username="alice",
        device_id="x",
        app_id="app",
        csh_access_right="C",
    )
    a.api.register(data)
    converge(a, b)
    assert (b.root / "extra" / "e.txt").read_text() == "e"
    b.engine.set_values(data.oaio_id, {"k": 2})
    converge(b, a)
    assert a.engine.repo.get_object(data.oaio_id).synced_values["k"] == 2
    a.engine.delete(oaio_id)  # for everybody (``ctl remove`` stops it here only: test_removed_folder.py)
    converge(a, b)
    assert b.engine.repo.get_object(oaio_id) is None and (b.root / "extra" / "e.txt").exists()
    assert (folder / "e.txt").exists()
