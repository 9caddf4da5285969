"""One path that cannot be merged does not hold back the rest (issue 10; design §5): the device's other changes
are committed on top of the server's version, the unmerged path is kept exactly as the server has it, and it is
merged once it can be.

The path is made unmergeable for real: on device b the folder it belongs in is a symlink (oaiod never writes
through one), so every download of it is refused, for as long as the symlink stays.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.engine.conftest import converge, tree, write

pytestmark = pytest.mark.integration


def test_a_path_that_cannot_be_merged_does_not_hold_back_the_rest(make_device, tmp_path: Path) -> None:
    a, b = make_device("alice", "a"), make_device("alice", "b")
    write(a.root / "keep.txt", "k1")
    write(a.root / "gone.txt", "to delete")
    converge(a, b)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (b.root / "link").symlink_to(elsewhere, target_is_directory=True)
    write(a.root / "link" / "x.txt", "x1")
    converge(a)

    report = b.sync()
    assert [e for e in report.errors if "link/x.txt" in e], report  # refused, that file alone
    write(b.root / "mine.txt", "from b")
    write(b.root / "keep.txt", "k2 from b")
    (b.root / "gone.txt").unlink()
    b.sync()
    converge(a)
    assert a.tree() == {"keep.txt": b"k2 from b", "mine.txt": b"from b", "link/x.txt": b"x1"}  # b's changes, a's kept

    write(a.root / "link" / "x.txt", "x2")  # the server moves on at the stuck path: b's next commit keeps that too
    converge(a)
    write(b.root / "mine.txt", "from b, again")
    b.sync()
    b.sync()
    converge(a)
    assert a.tree()["link/x.txt"] == b"x2" and a.tree()["mine.txt"] == b"from b, again"
    assert list(elsewhere.iterdir()) == []  # nothing written through the symlink

    (b.root / "link").unlink()  # the way is clear: the path is merged
    converge(a, b)
    assert a.tree() == b.tree() == {"keep.txt": b"k2 from b", "mine.txt": b"from b, again", "link/x.txt": b"x2"}
    assert tree(elsewhere) == {}
