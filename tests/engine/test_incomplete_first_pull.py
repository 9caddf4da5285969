"""A first sync that could not finish (one file the user made meanwhile) still knows the base of every file it
downloaded: a file deleted or changed on the server before the next cycle is deleted or updated here, never
pushed back as this device's own (issue 10 §3, tests/sim soak seed 1002: bob's first pull of a shared folder
was cut by a file he saved at that moment, the hub then went away, and when it came back his daemon pushed back
a folder alice-3 had deleted and kept a stale file under the name of one three devices had rewritten)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from oaiod.engine import localfs, pull
from tests.engine.conftest import converge, write

pytestmark = pytest.mark.integration


def test_files_of_an_unfinished_first_pull_keep_their_base(make_device, monkeypatch: pytest.MonkeyPatch) -> None:
    a, b = make_device("alice", "a"), make_device("alice", "b")
    write(a.root / "notes.md", "v1")
    write(a.root / "gone.txt", "deleted soon")
    write(a.root / "mine.txt", "the server's")
    converge(a)
    real_install = localfs.install_fetched

    def user_saves_first(root: Path, rel: str, temp: str, expected: Any, *more: Any) -> str:
        if rel == "mine.txt":  # the user saves a file of that name just before the download is renamed there
            write(root / rel, "b's own")
        return real_install(root, rel, temp, expected, *more)

    monkeypatch.setattr(pull.localfs, "install_fetched", user_saves_first)
    b.sync()  # the first pull: notes.md and gone.txt arrive, mine.txt is left to the next cycle
    monkeypatch.setattr(pull.localfs, "install_fetched", real_install)
    assert b.tree()["notes.md"] == b"v1" and b.tree()["mine.txt"] == b"b's own"

    (a.root / "gone.txt").unlink()
    write(a.root / "notes.md", "v2 from a")
    converge(a)
    converge(b, a)

    assert a.tree() == b.tree()
    final = a.tree()
    assert "gone.txt" not in final  # deleted on the server, unchanged here: not pushed back
    assert final["notes.md"] == b"v2 from a"  # changed on the server only: downloaded, no conflicted copy
    assert not [path for path in final if path.startswith("notes (conflicted copy")]
    assert final["mine.txt"] == b"b's own"  # the user's file without a base keeps its name (design §5)
    assert [content for path, content in final.items() if path.startswith("mine (conflicted copy")] == [b"the server's"]


def test_files_a_killed_first_pull_installed_without_rows_are_known_as_the_servers(make_device) -> None:
    """Sim seed 5: bob's daemon was killed (``kill -9``) during its first pull, after the downloads were renamed
    into place and before their index rows were written. On restart the files looked like his own new ones, and
    the folder alice had deleted meanwhile came back. A file whose content the server had at that path (its
    version history says so) is now taken as the server's: the deletion and the edit made since apply to it. The
    kill is stood in for by removing what it would not have written: the object's base and the files' rows."""
    import sqlalchemy as sa

    from oaiod.state.models import FileRow, ObjectRow

    a, b = make_device("alice", "a"), make_device("alice", "b")
    write(a.root / "docs" / "gone.txt", "deleted soon")
    write(a.root / "docs" / "edited.txt", "v1")
    write(a.root / "kept.txt", "k")
    converge(a, b)
    with b.engine.repo.session() as s:  # what a kill between the renames and the row writes leaves
        s.execute(sa.delete(FileRow))
        s.execute(sa.update(ObjectRow).values(synced_stamp=""))
    (a.root / "docs" / "gone.txt").unlink()
    write(a.root / "docs" / "edited.txt", "v2 from a")
    converge(a)
    converge(b, a)
    assert a.tree() == b.tree() == {"docs/edited.txt": b"v2 from a", "kept.txt": b"k"}
