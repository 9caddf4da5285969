"""Files, not only objects (issue 14 §3): one file's state with why, its versions (one per change), and restoring
one file or folder of an old version in place, moving only what differs."""

from __future__ import annotations

from collections.abc import Callable

from engine.conftest import Device, converge, write


def test_a_files_state_says_what_happens_to_it(make_device: Callable[..., Device]) -> None:
    a = make_device("alice", "a", ignore_patterns=("*.tmpx",))
    b = make_device("alice", "b")
    write(a.root / "doc.txt", "doc")
    write(a.root / "photos" / "p.jpg", "p")
    converge(a, b)

    def state(path: str) -> str:
        return a.engine.file_status(a.root / path).state

    assert state("doc.txt") == "up to date"
    write(a.root / "doc.txt", "doc, edited")
    a.engine.rescan()
    assert a.engine.file_status(a.root / "doc.txt").why == "changed here; the change is not committed yet"
    write(a.root / "new.txt", "new")
    assert state("new.txt") == "syncing"
    write(a.root / "x.tmpx", "scratch")
    assert state("x.tmpx") == "ignored"
    a.engine.exclude(a.root / "photos")
    assert state("photos/p.jpg") == "excluded"
    assert state("nothing.txt") == "not synced"
    assert state("") == "syncing"  # the folder itself: changes wait
    converge(a)
    assert state("doc.txt") == "up to date" and state("") == "up to date"


def test_a_files_versions_and_restoring_one_file(make_device: Callable[..., Device]) -> None:
    a = make_device("alice", "a")
    write(a.root / "docs" / "r.txt", "r1")
    write(a.root / "other.txt", "o1")
    a.sync()
    write(a.root / "other.txt", "o2")  # a version in which r.txt did not change
    a.sync()
    write(a.root / "docs" / "r.txt", "r2")
    a.sync()
    (a.root / "docs" / "r.txt").unlink()
    a.sync()
    found = a.engine.file_versions(a.root / "docs" / "r.txt")
    assert [(v.deleted, v.size) for v in found] == [(True, 0), (False, 2), (False, 2)]
    first = found[-1].stamp
    restored = a.engine.restore_path(a.root / "docs" / "r.txt", first)
    assert restored == ["docs/r.txt"] and (a.root / "docs" / "r.txt").read_text() == "r1"
    assert (a.root / "other.txt").read_text() == "o2"  # only the file asked for
    a.sync()
    assert a.engine.restore_path(a.root / "docs", first) == []  # as that version has it already: nothing moved
