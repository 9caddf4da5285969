"""Two engines (two roots, two device ids, one user) converge through a real hub and Local storage."""

from __future__ import annotations

import pytest

from tests.engine.conftest import converge, write

pytestmark = pytest.mark.integration


def test_create_modify_rename_delete_converge(make_device) -> None:
    a, b = make_device("alice", "a"), make_device("alice", "b")
    write(a.root / "a.txt", "alpha")
    write(a.root / "sub" / "deep" / "b.bin", b"\x00\x01" * 5000)
    (a.root / "sub" / "run.sh").write_text("#!/bin/sh\n")
    (a.root / "sub" / "run.sh").chmod(0o755)
    write(a.root / "sub" / "run.sh", "#!/bin/sh\necho hi\n").chmod(0o755)
    converge(a, b)
    assert b.tree() == a.tree() and len(a.tree()) == 3
    assert (b.root / "sub" / "run.sh").stat().st_mode & 0o100
    # both devices adopted one client root object
    roots_a = [r.oaio_id for r in a.engine.repo.objects() if r.kind == "root"]
    roots_b = [r.oaio_id for r in b.engine.repo.objects() if r.kind == "root"]
    assert roots_a == roots_b and len(roots_a) == 1

    write(b.root / "a.txt", "alpha v2")
    (b.root / "sub" / "deep" / "b.bin").rename(b.root / "sub" / "moved.bin")
    write(b.root / "new" / "n.txt", "new")
    converge(b, a)
    assert a.tree() == b.tree()
    assert a.tree()["a.txt"] == b"alpha v2" and "sub/moved.bin" in a.tree()

    (a.root / "a.txt").unlink()
    import shutil

    shutil.rmtree(a.root / "new")
    converge(a, b)
    assert a.tree() == b.tree() and "a.txt" not in b.tree()
    # deleted files are in b's trash, not gone
    trashed = list((b.root / ".oaiod" / "trash").rglob("a.txt"))
    assert trashed and trashed[0].read_bytes() == b"alpha v2"


def test_nothing_to_do_is_cheap(make_device) -> None:
    a = make_device("alice", "a")
    write(a.root / "x.txt", "x")
    converge(a)
    report = a.engine.sync_cycle()
    assert report.pulled == 0 and report.pushed == 0 and report.uploads == 0


def test_idle_cycle_is_one_request(make_device) -> None:
    a = make_device("alice", "a")
    write(a.root / "x.txt", "x")
    converge(a)
    a.engine.sync_cycle()  # sees its own last commit come back
    a.api.http.reset_timings()
    report = a.engine.sync_cycle()
    assert len(a.api.http.timings) == 1 and report.pulled == 0 and report.pushed == 0


def test_pull_in_several_batches_with_a_replacement(make_device, monkeypatch: pytest.MonkeyPatch) -> None:
    """Downloads go in batches (temp files synced, renamed, synced, rows written per batch): with batches of 3,
    seven new files and a replaced one arrive, their rows are right (the next cycles transfer nothing), and the
    replaced version is in the trash."""
    from oaiod.engine import pull

    monkeypatch.setattr(pull, "APPLY_BATCH", 3)
    a, b = make_device("alice", "a"), make_device("alice", "b")
    write(a.root / "keep.txt", "v1")
    converge(a, b)
    for number in range(7):
        write(a.root / "many" / f"f{number}.txt", f"file {number}")
    write(a.root / "keep.txt", "v2")
    converge(a, b)
    assert b.tree() == a.tree() and len(b.tree()) == 8
    assert [p.read_text() for p in (b.root / ".oaiod" / "trash").rglob("keep.txt")] == ["v1"]
    for device in (a, b):
        report = device.sync()
        assert (report.downloads, report.uploads, report.pushed, report.hashed) == (0, 0, 0, 0)
    assert b.engine.rescan().hashed == 0  # the rows hold the installed files' stats
