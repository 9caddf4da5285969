"""Local writes: never outside a root or through a symlink, replace only what is still as indexed, trash."""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

import pytest

from oaiod.engine import localfs
from oaiod.engine.localfs import LocalChanged, UnsafePath
from oaiod.state.repo import FileStat


def _stat(path: Path) -> FileStat:
    st = path.lstat()
    return FileStat(st.st_size, st.st_mtime_ns, st.st_ino)


@pytest.mark.parametrize("rel", ["../x", "/etc/passwd", "a/../../x", "a//b", "", "a\\b", "C:/x", "a/./b"])
def test_hostile_paths_are_refused(tmp_path: Path, rel: str) -> None:
    with pytest.raises(UnsafePath):
        localfs.make_parents(tmp_path / "root", rel)


def test_symlinked_parent_is_refused(tmp_path: Path) -> None:
    root, outside = tmp_path / "root", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    (root / "link").symlink_to(outside)
    with pytest.raises(UnsafePath, match="symlink"):
        localfs.make_parents(root, "link/evil.txt")
    temp = root / ".oaiod-tmp-x"
    temp.write_text("evil")
    with pytest.raises(UnsafePath):
        localfs.install(root, "link/evil.txt", temp, None)
    assert list(outside.iterdir()) == []


def test_install_replaces_only_when_still_as_indexed(tmp_path: Path) -> None:
    target = tmp_path / "a" / "f.txt"
    target.parent.mkdir()
    target.write_text("old")
    indexed = _stat(target)
    temp = localfs.temp_beside(target)
    temp.write_text("new")
    localfs.install(tmp_path, "a/f.txt", temp, indexed)
    assert target.read_text() == "new"
    (trashed,) = (tmp_path / ".oaiod" / "trash").rglob("f.txt")
    assert trashed.read_text() == "old"
    # a user edit after indexing: the download is dropped, the edit kept
    indexed = _stat(target)
    os.utime(target, ns=(1, 1))
    temp = localfs.temp_beside(target)
    temp.write_text("newer")
    with pytest.raises(LocalChanged):
        localfs.install(tmp_path, "a/f.txt", temp, indexed)
    assert target.read_text() == "new" and not temp.exists()


def test_install_refuses_an_unexpected_new_file(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("user's")
    temp = tmp_path / ".oaiod-tmp-1"
    temp.write_text("remote")
    with pytest.raises(LocalChanged):
        localfs.install(tmp_path, "f", temp, None)
    assert (tmp_path / "f").read_text() == "user's"


def test_trash_and_purge(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "f").write_text("x")
    moved = localfs.trash_if_unchanged(tmp_path, "d/f", _stat(tmp_path / "d" / "f"))
    assert moved is not None and moved.read_text() == "x" and not (tmp_path / "d").exists()
    old = tmp_path / ".oaiod" / "trash" / "2000-01-01"
    old.mkdir(parents=True)
    assert localfs.purge_trash(tmp_path, 30, today=dt.date.today()) == 1
    assert moved.exists()


def test_batch_folders_check_each_folder_once_and_refuse_symlinks_and_files(tmp_path: Path) -> None:
    root, outside = tmp_path / "root", tmp_path / "outside"
    outside.mkdir()
    folders = localfs.BatchFolders(root)
    assert folders.parent_of("a/b/c.txt") == f"{root}/a/b" and (root / "a" / "b").is_dir()
    assert folders.parent_of("top.txt") == str(root)
    temps = {folders.temp_for("a/b/c.txt") for _ in range(3)} | {localfs.BatchFolders(root).temp_for("a/b/c.txt")}
    assert len(temps) == 4 and all(t.startswith(f"{root}/a/b/.oaiod-tmp-") for t in temps)  # fresh, beside it
    (root / "link").symlink_to(outside)
    (root / "plain").write_text("a file, not a folder")
    for rel, reason in (("link/x.txt", "symlink"), ("link/deep/x.txt", "symlink"), ("plain/x.txt", "not a folder")):
        with pytest.raises(UnsafePath, match=reason):
            folders.parent_of(rel)
    with pytest.raises(UnsafePath):
        folders.parent_of("a/../../x")
    # checked once per batch: a folder swapped for a symlink after its temp file was written there is caught at
    # the rename (the temp file is not found through the symlink), and nothing lands outside
    temp = folders.temp_for("a/b/d.txt")
    Path(temp).write_text("downloaded")
    (root / "a" / "b").rename(root / "a" / "moved")
    (root / "a" / "b").symlink_to(outside)
    assert folders.parent_of("a/b/d.txt") == f"{root}/a/b"
    with pytest.raises(localfs.LocalFsError, match="cannot rename"):
        localfs.install_fetched(root, "a/b/d.txt", temp, None)
    assert list(outside.iterdir()) == []


def test_install_fetched_renames_within_the_checked_folder_only(tmp_path: Path) -> None:
    temp = localfs.BatchFolders(tmp_path).temp_for("a/f.txt")
    Path(temp).write_text("new")
    with pytest.raises(UnsafePath):  # a target outside the temp file's folder
        localfs.install_fetched(tmp_path, "b/f.txt", temp, None)
    with pytest.raises(UnsafePath):
        localfs.install_fetched(tmp_path, "a/..", temp, None)
    (tmp_path / "a" / "f.txt").write_text("the user's")
    with pytest.raises(LocalChanged):  # not indexed, but there now: kept
        localfs.install_fetched(tmp_path, "a/f.txt", temp, None)
    assert (tmp_path / "a" / "f.txt").read_text() == "the user's" and Path(temp).exists()
    indexed = _stat(tmp_path / "a" / "f.txt")
    assert localfs.install_fetched(tmp_path, "a/f.txt", temp, indexed) == f"{tmp_path}/a/f.txt"
    assert (tmp_path / "a" / "f.txt").read_text() == "new" and not Path(temp).exists()
    (trashed,) = (tmp_path / ".oaiod" / "trash").rglob("f.txt")
    assert trashed.read_text() == "the user's"


def test_set_executable_only_when_still_as_indexed(tmp_path: Path) -> None:
    path = tmp_path / "run.sh"
    path.write_text("#!/bin/sh\n")
    path.chmod(0o644)
    indexed = _stat(path)
    localfs.set_executable(tmp_path, "run.sh", True, indexed)
    assert path.stat().st_mode & 0o111 == 0o111 & ~localfs.UMASK and _stat(path) == indexed
    os.utime(path, ns=(1, 1))
    with pytest.raises(LocalChanged):
        localfs.set_executable(tmp_path, "run.sh", False, indexed)
    assert path.stat().st_mode & 0o100


@pytest.mark.parametrize("kind", ["file", "symlink", "folder"])
def test_install_fetched_never_replaces_what_appeared(tmp_path: Path, kind: str) -> None:
    """A download expected to be new is renamed only if nothing is at its name by then: the check and the rename
    are one call, so a file the user saved (or a symlink planted) a moment before stays as it is."""
    temp = localfs.BatchFolders(tmp_path).temp_for("d/f.txt")
    Path(temp).write_text("remote")
    target = tmp_path / "d" / "f.txt"
    if kind == "file":
        target.write_text("user's")
    elif kind == "symlink":
        target.symlink_to(tmp_path / "outside")
    else:
        target.mkdir()
    with pytest.raises(LocalChanged, match="appeared"):
        localfs.install_fetched(tmp_path, "d/f.txt", temp, None)
    assert Path(temp).read_text() == "remote"  # left to the caller, which discards it
    assert not (tmp_path / "outside").exists()
    if kind == "file":
        assert target.read_text() == "user's"


def test_new_folders_are_staged_and_published_whole(tmp_path: Path) -> None:
    """A missing folder is made as a temp folder beside its place (nested new folders inside it), its files get
    their own names there; publish renames it into place with one call. A folder in ``keep_out`` is made as
    usual; one that appeared meanwhile (even a symlink) is never replaced: the staged folder is dropped."""
    root = tmp_path / "root"
    (root / "old").mkdir(parents=True)
    folders = localfs.BatchFolders(root, stage_new_folders=True, keep_out=frozenset({"kept"}))
    paths = {rel: folders.temp_for(rel) for rel in ("new/a.txt", "new/deep/b.txt", "old/c.txt", "kept/d.txt", "x/e")}
    staged_new = folders.staged_in("new/deep/b.txt")
    assert staged_new is not None and staged_new == folders.staged_in("new/a.txt")
    assert paths["new/a.txt"] == f"{staged_new}/a.txt" and paths["new/deep/b.txt"] == f"{staged_new}/deep/b.txt"
    assert folders.staged_in("old/c.txt") is None and folders.staged_in("kept/d.txt") is None
    assert Path(paths["old/c.txt"]).name.startswith(".oaiod-tmp-") and (root / "kept").is_dir()
    assert not (root / "new").exists() and not (root / "x").exists()
    for temp in paths.values():
        Path(temp).write_text("downloaded")
    (root / "x").symlink_to(tmp_path)  # appeared meanwhile at the place of the staged x/
    placed = folders.publish()
    assert placed == [str(root / "new")] and (root / "new" / "deep" / "b.txt").read_text() == "downloaded"
    assert folders.staged_in("x/e") in folders.dropped and not Path(paths["x/e"]).exists()
    assert (root / "x").is_symlink() and not (tmp_path / "e").exists()
    assert [p.name for p in root.iterdir() if p.name.startswith(".oaiod-tmp-")] == []


def test_an_unpublished_stage_is_removed(tmp_path: Path) -> None:
    folders = localfs.BatchFolders(tmp_path, stage_new_folders=True)
    Path(folders.temp_for("n/f")).write_text("x")
    folders.abandon()
    assert list(tmp_path.iterdir()) == [] and folders.publish() == []
