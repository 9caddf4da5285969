"""Empty folders sync like files (design §1, issue 10's oracle "folders — empty ones included", issue 14 §1): made,
removed, moved and filled on one device, the same on the others; a folder the user filled meanwhile is never
removed; a hostile ``dirs`` from the server never touches the disk outside the folder."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from engine.conftest import Device, converge, write

from oaiod.engine.manifest import MANIFEST_KEY, remote_dirs


def folders(root: Path) -> set[str]:
    """Every folder under ``root`` (relative), oaiod's own excluded."""
    found = set()
    for top, dirs, _files in os.walk(root):
        dirs[:] = [d for d in dirs if d != ".oaiod"]
        for name in dirs:
            found.add((Path(top) / name).relative_to(root).as_posix())
    return found


def pair(make_device: Callable[..., Device]) -> tuple[Device, Device]:
    a, b = make_device("alice", "a"), make_device("alice", "b")
    write(a.root / "seed.txt", "seed")
    converge(a, b)
    return a, b


def test_an_empty_folder_and_an_empty_tree_reach_the_other_device(make_device: Callable[..., Device]) -> None:
    a, b = pair(make_device)
    (a.root / "empty").mkdir()
    (a.root / "x" / "y" / "z").mkdir(parents=True)
    write(a.root / "full" / "f.txt", "f")
    (a.root / "full" / "inner").mkdir()
    converge(a, b)
    assert folders(b.root) == folders(a.root) == {"empty", "x", "x/y", "x/y/z", "full", "full/inner"}
    assert b.tree() == a.tree()


def test_deleting_an_empty_folder_removes_it_elsewhere_with_the_folders_it_held(
    make_device: Callable[..., Device],
) -> None:
    a, b = pair(make_device)
    (a.root / "x" / "y" / "z").mkdir(parents=True)
    (a.root / "keep" / "sub").mkdir(parents=True)
    converge(a, b)
    (a.root / "x" / "y" / "z").rmdir()  # x/y stays, empty now
    (a.root / "keep" / "sub").rmdir()
    (a.root / "keep").rmdir()
    converge(a, b)
    assert folders(b.root) == folders(a.root) == {"x", "x/y"}


def test_a_folder_filled_on_one_device_while_removed_on_the_other_keeps_its_file(
    make_device: Callable[..., Device],
) -> None:
    a, b = pair(make_device)
    (a.root / "box").mkdir()
    converge(a, b)
    (a.root / "box").rmdir()
    a.sync()
    write(b.root / "box" / "note.txt", "mine")  # before B hears of the removal
    converge(b, a)
    assert (a.root / "box" / "note.txt").read_text() == (b.root / "box" / "note.txt").read_text() == "mine"


def test_moving_an_empty_folder_moves_it_elsewhere(make_device: Callable[..., Device]) -> None:
    a, b = pair(make_device)
    (a.root / "old" / "e").mkdir(parents=True)
    write(a.root / "old" / "f.txt", "f")
    converge(a, b)
    os.rename(a.root / "old", a.root / "new")
    converge(a, b)
    assert folders(b.root) == folders(a.root) == {"new", "new/e"}
    assert b.tree() == a.tree()


def test_a_file_put_in_an_empty_folder_leaves_no_folder_entry(make_device: Callable[..., Device]) -> None:
    a, b = pair(make_device)
    (a.root / "box").mkdir()
    converge(a, b)
    write(b.root / "box" / "f.txt", "f")
    converge(b, a)
    assert (a.root / "box" / "f.txt").read_text() == "f"
    remote = a.engine.repo.get_object(a.engine.client_root.row().oaio_id)
    assert remote is not None
    assert remote_dirs(remote.client_values, remote.client_stamp) == frozenset()
    assert "dirs" not in remote.client_values[MANIFEST_KEY]  # none left: the manifest looks as before dirs existed


def test_a_change_of_only_empty_folders_is_committed_through_dirty_paths(make_device: Callable[..., Device]) -> None:
    """The watcher's path of a new folder (not a rescan) finds it, and the deletion of a folder's last file leaves
    that folder as an empty one to keep."""
    a, b = pair(make_device)
    write(a.root / "d" / "only.txt", "x")
    converge(a, b)
    (a.root / "made").mkdir()
    (a.root / "d" / "only.txt").unlink()
    a.engine.mark_dirty(a.root, ["made", "d/only.txt"])
    assert a.engine.sync_cycle().errors == []
    b.sync()
    assert {"made", "d"} <= folders(b.root)
    assert not (b.root / "d" / "only.txt").exists()


def test_hostile_dirs_from_the_server_are_refused_before_touching_disk(make_device: Callable[..., Device]) -> None:
    a, b = pair(make_device)
    (a.root / "fine").mkdir()
    converge(a, b)
    obj = a.engine.repo.get_object(a.engine.client_root.row().oaio_id)
    assert obj is not None
    for bad in (["../escape"], ["/abs"], ["a/../b"], [5], "notalist"):
        values = dict(obj.client_values)
        values[MANIFEST_KEY] = {**values[MANIFEST_KEY], "dirs": bad}
        assert remote_dirs(values, obj.client_stamp) is None, bad
    assert remote_dirs({**obj.client_values, "_file_paths": ["fine"]}, obj.client_stamp) == frozenset()


@pytest.mark.parametrize("inside", [set(), {"sub"}])
def test_an_empty_folder_added_on_one_device_appears_on_the_others(
    make_device: Callable[..., Device], caplog: Any, inside: set[str]
) -> None:
    """Issue 14 §1: ``ctl add`` of an empty folder made an object with no files, which the other devices never
    placed (and warned about every cycle)."""
    a, b = pair(make_device)
    outside = a.home / "Projects" / "new"
    outside.mkdir(parents=True)
    for name in inside:
        (outside / name).mkdir()
    a.engine.add_folder(outside)
    converge(a, b)
    caplog.clear()
    converge(a, b)
    placed = b.root / "new"
    assert placed.is_dir() and folders(placed) == inside
    assert not [r for r in caplog.records if r.levelname in ("WARNING", "ERROR")], caplog.text


def test_a_file_and_an_empty_folder_of_one_name_end_as_the_file(make_device: Callable[..., Device]) -> None:
    a, b = pair(make_device)
    write(b.root / "X", "the file")
    (a.root / "X").mkdir()
    a.sync()  # the empty folder commits first
    converge(b, a)
    assert (a.root / "X").read_text() == (b.root / "X").read_text() == "the file"
    assert a.tree() == b.tree() and folders(a.root) == folders(b.root) == set()
