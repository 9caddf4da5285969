"""One path that cannot be merged does not hold back the rest (issue 10; design §5): the device's other changes
are committed on top of the server's version, the unmerged path is kept exactly as the server has it, and it is
merged once it can be.

The path is made unmergeable for real: on device b the folder it belongs in is a symlink (oaiod never writes
through one), so every download of it is refused, for as long as the symlink stays.
"""

from __future__ import annotations

import datetime as _dt
from pathlib import Path

import pytest

from oaiod.engine import pull
from oaiod.engine.manifest import remote_files
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


def test_an_unmerged_file_where_a_folder_stands_here_waits_for_its_merge(make_device, storage_root: Path) -> None:
    """The path that cannot be merged is a file on the server and a folder here (b deleted ``a`` and made ``a/``):
    committing it as the server has it beside b's folder would be a version with a file and a folder of one name,
    which stops every device's pull of it (Local storage refuses to store it: a commit failing every cycle). The
    push waits for the merge instead (found by the planner model's Carry, tests/engine/test_plan_properties.py).
    The download fails for real: its stored bytes are damaged."""
    a, b = make_device("alice", "a"), make_device("alice", "b")
    write(a.root / "a", "v1")
    converge(a, b)
    write(a.root / "a", "v2 from a")
    converge(a)
    (b.root / "a").unlink()
    write(b.root / "a" / "f.txt", "b's folder")
    stored = [p for p in storage_root.rglob("*") if p.is_file() and p.read_bytes() == b"v2 from a"]
    assert stored
    for blob in stored:
        blob.chmod(0o644)
        blob.write_bytes(b"damaged!!")

    report = b.sync()
    assert report.errors and all("downloaded sha256" in e for e in report.errors), report  # no commit tried
    for obj in b.api.stampz(None).objects:
        paths = set(remote_files(obj.client_values, obj.client_stamp))
        assert not ({"a", "a/f.txt"} <= paths), f"{obj.oaio_id}: a file and a folder of one name"

    for blob in stored:
        blob.write_bytes(b"v2 from a")
    b.engine.repo.retry_errors()
    converge(b, a)
    final = a.tree()
    assert final == b.tree() and final["a/f.txt"] == b"b's folder"
    assert [content for path, content in final.items() if path.startswith("a (conflicted copy")] == [b"v2 from a"]


def test_a_conflicted_copy_never_takes_a_name_the_servers_version_has(make_device, monkeypatch) -> None:
    """b's file ``x`` is a folder on a: a installs b's file beside it as ``x (conflicted copy from b …)``. b, having
    changed ``x`` meanwhile, moves its file aside for the folder — in the same second, so under the same name,
    which the server's version now holds: the copy takes the next number (it took the name, and the server's copy
    then clashed with it: a conflicted copy of a conflicted copy, a conflict nobody made; the planner model lost
    the content to the trash, tests/engine/test_plan_properties.py). The clock of the conflict names is fixed
    (``pull._dt``): two devices in the same second, made certain."""
    fixed = _dt.datetime(2026, 12, 4, 15, 0, 0)

    class Clock:
        class datetime:  # stands in for the module's datetime class
            @staticmethod
            def now() -> _dt.datetime:
                return fixed

    monkeypatch.setattr(pull, "_dt", Clock)
    a, b = make_device("alice", "a"), make_device("alice", "b")
    converge(a, b)
    write(b.root / "x", "one")
    b.sync()
    write(a.root / "x" / "y", "a's folder")
    assert a.sync().errors == []
    write(b.root / "x", "two")
    converge(b, a, b, a)
    assert a.tree() == b.tree()
    contents = sorted(a.tree().values())
    assert contents == [b"a's folder", b"one", b"two"], a.tree()
    assert [name for name in a.tree() if name.count("conflicted copy") > 1] == [], sorted(a.tree())
