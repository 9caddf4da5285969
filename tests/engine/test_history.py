"""Per-file history (issue 14 §3, ``ctl history``): what each version changed, file by file, by which device.

The diff of two manifests is a pure table (:func:`oaiod.engine.history.file_changes`); the rows are then checked on
two devices syncing through a real hub: the committing device and the device that pulls record the same changes,
each naming the device that made them.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from engine.conftest import Device, converge, write

from oaiod.engine.history import ADDED, CHANGED, DELETED, MOVED, FileChange, file_changes, manifest_hashes
from oaiod.state import StateRepo


@pytest.mark.parametrize(
    ("base", "new", "expected"),
    [
        ({}, {"a": "1"}, [FileChange(ADDED, "a")]),
        ({"a": "1"}, {}, [FileChange(DELETED, "a")]),
        ({"a": "1"}, {"a": "2"}, [FileChange(CHANGED, "a")]),
        ({"a": "1"}, {"a": "1"}, []),
        ({"a": "1"}, {"b": "1"}, [FileChange(MOVED, "b", "from a")]),
        # a content that left or arrived twice is not paired: no guess which went where
        (
            {"a": "1", "b": "1"},
            {"c": "1"},
            [FileChange(DELETED, "a"), FileChange(DELETED, "b"), FileChange(ADDED, "c")],
        ),
        ({"a": "1"}, {"b": "1", "c": "1"}, [FileChange(DELETED, "a"), FileChange(ADDED, "b"), FileChange(ADDED, "c")]),
        # unknown hashes (a version of the published client): a path in both tells nothing, new and gone ones do
        ({"a": None, "b": None}, {"a": "1", "c": None}, [FileChange(DELETED, "b"), FileChange(ADDED, "c")]),
        ({"a": None}, {"b": None}, [FileChange(DELETED, "a"), FileChange(ADDED, "b")]),
    ],
)
def test_what_a_version_changed(
    base: dict[str, str | None], new: dict[str, str | None], expected: list[FileChange]
) -> None:
    assert sorted(file_changes(base, new), key=lambda c: (c.path, c.action)) == sorted(
        expected, key=lambda c: (c.path, c.action)
    )


def test_no_manifest_no_hashes() -> None:
    assert manifest_hashes(None, "20250101000000000000") == {}
    assert manifest_hashes({"_file_paths": ["a"]}, "20250101000000000000") == {"a": None}


def test_history_narrows_to_a_path_and_keeps_the_newest_rows(tmp_path: Path) -> None:
    """A path holding ``%`` or ``_`` matches as text; ``a/b`` is not under ``a/b_``; pruning keeps the newest."""
    repo = StateRepo(tmp_path)
    try:
        repo.add_history_rows("o", [(ADDED, "a/b", ""), (ADDED, "a/b_/x", ""), (ADDED, "a/b/c", "")], "dev")
        repo.add_history_rows("o", [(ADDED, "a%/x", ""), (ADDED, "aa/x", "")], "dev")
        repo.add_history("p", "held", detail="5 of 6")
        assert sorted(r.path for r in repo.history(scopes=[("o", "a/b")])) == ["a/b", "a/b/c"]
        assert [r.path for r in repo.history(scopes=[("o", "a%")])] == ["a%/x"]
        assert [r.action for r in repo.history(scopes=[("p", "")])] == ["held"]
        assert repo.history(scopes=[]) == []
        assert len(repo.history(limit=2)) == 2 and repo.history(without=["held"])[0].path == "aa/x"
        assert repo.history(since="29990101000000000000") == []
        assert repo.prune_history(keep=2) == 4
        assert [r.action for r in repo.history()] == ["held", ADDED]
        assert {r.device for r in repo.history(without=["held"])} == {"dev"}
    finally:
        repo.close()


def rows(device: Device, path: Path | None = None) -> set[tuple[str, str, str, str]]:
    return {(r.action, r.path, r.device, r.detail) for r in device.engine.history(path=path)}


def test_both_devices_record_each_file_change_by_the_device_that_made_it(make_device: Callable[..., Device]) -> None:
    a, b = make_device("alice", "a"), make_device("alice", "b")
    write(a.root / "docs" / "edit.txt", "v1")
    write(a.root / "docs" / "keep.txt", "keep")
    write(a.root / "gone.txt", "gone")
    write(a.root / "old name.txt", "moves")
    converge(a, b)
    write(a.root / "docs" / "edit.txt", "v2")
    (a.root / "gone.txt").unlink()
    (a.root / "old name.txt").rename(a.root / "docs" / "new name.txt")
    converge(a, b)
    expected = {
        ("changed", "docs/edit.txt", "a", ""),
        ("deleted", "gone.txt", "a", ""),
        ("moved", "docs/new name.txt", "a", "from old name.txt"),
        ("added", "docs/keep.txt", "a", ""),
    }
    for device in (a, b):
        assert expected <= rows(device), device.name
        assert not {r.action for r in device.engine.history()} & {"commit", "pull"}  # no version totals
    assert rows(b, b.root / "docs") == {row for row in rows(b) if row[1].startswith("docs/")}
    assert {row[1] for row in rows(b, b.root / "docs" / "edit.txt")} == {"docs/edit.txt"}

    write(b.root / "docs" / "edit.txt", "b's edit")  # b's own change: recorded by both as b's
    converge(b, a)
    assert ("changed", "docs/edit.txt", "b", "") in rows(a) & rows(b)


def test_a_conflict_names_the_other_device(make_device: Callable[..., Device]) -> None:
    a, b = make_device("alice", "a"), make_device("alice", "b")
    write(a.root / "doc.txt", "base")
    converge(a, b)
    write(a.root / "doc.txt", "a's edit")
    a.sync()
    write(b.root / "doc.txt", "b's edit")
    b.sync()
    conflicts = [r for r in b.engine.history() if r.action == "conflict"]
    assert [(r.path, r.device) for r in conflicts] == [("doc.txt", "a")]
    assert conflicts[0].detail.startswith("conflicted copy: doc")
