"""A folder replaced by a file of the same name on one device, while another device commits something else first:
the file takes the name on every device, no conflicted copy (found by tests/engine/test_plan_properties.py)."""

from __future__ import annotations

import pytest

from oaiod.daemon.ctl import present
from tests.engine.conftest import converge, write

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("first", ["other", "replacer"])
def test_a_folder_replaced_by_a_file_keeps_the_name(make_device, first: str) -> None:
    """b deletes ``X/f.txt`` and writes a file ``X``; a, unchanged under ``X``, commits another file. Before, when a
    committed first, b's pull saw a folder ``X`` in the server's version (holding only the file b deleted) and moved
    b's new file aside to ``X (conflicted copy from b …)`` on every device."""
    a, b = make_device("alice", "a"), make_device("alice", "b")
    write(a.root / "X" / "f.txt", "base f")
    converge(a, b)
    (b.root / "X" / "f.txt").unlink()
    (b.root / "X").rmdir()
    write(b.root / "X", "b's file X")
    write(a.root / "other.txt", "a's other file")
    for device in (a, b) if first == "other" else (b, a):
        assert device.sync().errors == []
    converge(a, b, rounds=3)
    assert a.tree() == b.tree() == {"X": b"b's file X", "other.txt": b"a's other file"}
    assert present.rows(a.engine.conflicts()) == [] and present.rows(b.engine.conflicts()) == []
