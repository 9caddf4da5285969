"""``ctl trash`` (issue 14 §3): what the trash holds, and putting a file or a folder back — it syncs like a file the
user made, and a file standing at its place is never replaced."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from engine.conftest import Device, converge, tree, write

from oaiod.engine.context import EngineError
from oaiod.engine.trash import _original


def test_original_names_of_numbered_trash_entries() -> None:
    assert _original("a/b (2).txt") == ("a/b.txt", 2)
    assert _original("plain.txt") == ("plain.txt", 1)
    assert _original("noext (12)") == ("noext", 12)
    assert _original("x (y).txt") == ("x (y).txt", 1)


def test_a_file_deleted_elsewhere_comes_back_from_the_trash(make_device: Callable[..., Device]) -> None:
    a, b = make_device("alice", "a"), make_device("alice", "b")
    write(a.root / "docs" / "report.txt", "report v1")
    write(a.root / "docs" / "sub" / "n.txt", "n")
    converge(a, b)
    write(a.root / "docs" / "report.txt", "report v2")
    converge(a, b)
    (a.root / "docs" / "report.txt").unlink()
    (a.root / "docs" / "sub" / "n.txt").unlink()
    converge(a, b)
    listed = b.engine.trash()
    assert [(e.path, e.number, e.size) for e in listed] == [
        ("docs/report.txt", 1, 9),
        ("docs/report.txt", 2, 9),
        ("docs/sub/n.txt", 1, 1),
    ]
    assert b.engine.restore_trash(b.root / "docs" / "report.txt") == [str(b.root / "docs" / "report.txt")]
    assert (b.root / "docs" / "report.txt").read_text() == "report v2"  # the later of the day's two
    assert b.engine.restore_trash(b.root / "docs") == [str(b.root / "docs" / "sub" / "n.txt")]
    converge(b, a)
    assert tree(a.root) == tree(b.root) == {"docs/report.txt": b"report v2", "docs/sub/n.txt": b"n"}


def test_a_file_in_the_way_is_never_replaced(make_device: Callable[..., Device]) -> None:
    a, b = make_device("alice", "a"), make_device("alice", "b")
    write(a.root / "x.txt", "old")
    converge(a, b)
    write(a.root / "x.txt", "new")
    converge(a, b)  # b's old copy went to its trash
    [restored] = b.engine.restore_trash(b.root / "x.txt")
    assert restored.endswith(")") or "restored" in restored
    assert (b.root / "x.txt").read_text() == "new"
    assert [p.read_text() for p in b.root.glob("x (restored *).txt")] == ["old"]
    with pytest.raises(EngineError, match="holds nothing"):
        b.engine.restore_trash(b.root / "never.txt")
