"""Conflicts keep both sides, deletions go to the trash, mass deletions wait, read-only objects never upload."""

from __future__ import annotations

import shutil

import pytest

from oaiod.daemon.ctl import present
from oaiod.model import OaiObject, now_stamp
from tests.engine.conftest import converge, write

pytestmark = pytest.mark.integration


def test_concurrent_edit_makes_a_conflicted_copy(make_device) -> None:
    a, b = make_device("alice", "a"), make_device("alice", "b")
    write(a.root / "doc.txt", "base")
    converge(a, b)
    write(a.root / "doc.txt", "from a")
    write(b.root / "doc.txt", "from b!")
    a.sync()  # a commits first
    report = b.sync()  # b's commit loses the race: pull, conflict copy, retry
    assert report.conflicts and "conflicted copy from b" in report.conflicts[0]
    converge(a, b)
    assert a.tree() == b.tree()
    contents = sorted(a.tree().values())
    assert contents == [b"from a", b"from b!"] and a.tree()["doc.txt"] == b"from a"
    (conflict,) = present.rows(b.engine.conflicts())
    assert conflict["path"] == "doc.txt" and conflict["copy_path"].startswith("doc (conflicted copy from b ")


def test_deleted_on_one_side_modified_on_the_other_is_kept(make_device) -> None:
    a, b = make_device("alice", "a"), make_device("alice", "b")
    write(a.root / "keep.txt", "v1")
    converge(a, b)
    (a.root / "keep.txt").unlink()
    write(b.root / "keep.txt", "v2 edited")
    converge(a, b)
    assert a.tree() == b.tree() == {"keep.txt": b"v2 edited"}


def test_mass_deletion_is_held_until_confirmed(make_device) -> None:
    a, b = make_device("alice", "a"), make_device("alice", "b")
    for number in range(8):
        write(a.root / "many" / f"f{number}.txt", str(number))
    write(a.root / "stay.txt", "stay")
    converge(a, b)
    shutil.rmtree(a.root / "many")
    report = a.sync()
    assert report.held and present.status(a.engine.status())["held"]
    converge(b)
    assert len(b.tree()) == 9  # nothing was deleted on b
    a.engine.confirm_delete(report.held[0])
    converge(a, b)
    assert b.tree() == a.tree() == {"stay.txt": b"stay"}


def test_mass_deletion_from_the_server_is_held_on_pull(make_device) -> None:
    a, b = make_device("alice", "a"), make_device("alice", "b", mass_delete_min=100)
    for number in range(8):
        write(b.root / f"f{number}.txt", str(number))
    converge(b, a)
    for number in range(8):
        (b.root / f"f{number}.txt").unlink()
    converge(b)  # b may delete many (min 100), a may not
    report = a.sync()
    assert report.held and len(a.tree()) == 8
    a.engine.confirm_delete(report.held[0])
    converge(a)
    assert a.tree() == {}


def test_read_only_share_never_uploads(make_device) -> None:
    alice, bob = make_device("alice", "a"), make_device("bob", "bobdev")
    project = alice.home / "Documents" / "project"
    write(project / "plan.txt", "alice's plan")
    oaio_id = alice.engine.add_folder(project)
    converge(alice)
    alice.engine.share(oaio_id, "bob", "r")
    converge(bob)
    shared = bob.root / "project (alice)"
    assert (shared / "plan.txt").read_text() == "alice's plan"
    write(shared / "plan.txt", "bob scribbled")
    converge(bob)
    write(project / "plan.txt", "alice's plan v2")
    converge(alice, bob)
    # bob's edit is kept as a conflicted copy, alice's version arrives, nothing of bob's reached alice
    assert (shared / "plan.txt").read_text() == "alice's plan v2"
    assert any("conflicted copy" in p for p in bob.tree()) and not any("conflicted" in p for p in alice.tree())
    assert {c["kind"] for c in present.rows(bob.engine.conflicts())} >= {"readonly"}
    users = {u["username"]: u["access_right"] for u in alice.engine.users(oaio_id)}
    assert users["bob"] == "r"


def test_hostile_server_values_never_touch_disk_outside_roots(make_device, tmp_path) -> None:
    alice, bob = make_device("alice", "a"), make_device("bob", "bobdev")
    converge(bob)
    ssh = bob.home / ".ssh"
    ssh.mkdir()
    outside = tmp_path / "outside"
    outside.mkdir()
    stamp = now_stamp()
    evil = OaiObject(
        oaio_id=f"evil⫻alice﹫x⁄{stamp}",
        client_stamp=stamp,
        client_values={"_root_path": "~/.ssh", "_file_paths": ["authorized_keys"], "_name": "evil"},
        csh_id="Local",
        username="alice",
        device_id="x",
        app_id="evil",
        csh_access_right="C",
    )
    storage = bob.engine.ctx.backend("Local")
    src = tmp_path / "payload"
    src.write_text("ssh-rsa attacker")
    storage.put_file(f"{evil.oaio_id}/{stamp}/authorized_keys", src)
    alice.api.register(evil)
    alice.api.subscribe(evil.oaio_id, "bob", "U")
    # a second object whose root is absolute and outside: mapped under the client root too
    stamp2 = now_stamp()
    evil2 = OaiObject(
        oaio_id=f"evil⫻alice﹫x⁄two⁄{stamp2}",
        client_stamp=stamp2,
        client_values={"_root_path": str(outside), "_file_paths": ["x.txt"]},
        csh_id="Local",
        username="alice",
        device_id="x",
        app_id="evil",
        csh_access_right="C",
    )
    storage.put_file(f"{evil2.oaio_id}/{stamp2}/x.txt", src)
    alice.api.register(evil2)
    alice.api.subscribe(evil2.oaio_id, "bob", "r")
    converge(bob)
    assert list(ssh.iterdir()) == [] and list(outside.iterdir()) == []
    assert (bob.root / "evil (alice)" / "authorized_keys").read_text() == "ssh-rsa attacker"
    assert (bob.root / "outside (alice)" / "x.txt").exists()


def test_a_conflict_on_a_long_name_keeps_both_in_a_name_that_fits(make_device) -> None:
    """A 214-byte name: its conflicted copy would be 261 bytes (ENAMETOOLONG stopped every cycle for good)."""
    a, b = make_device("alice", "a"), make_device("alice", "b")
    name = "x" * 210 + ".txt"
    write(a.root / name, "base")
    write(a.root / "other.txt", "other")
    converge(a, b)
    write(a.root / name, "from a")
    write(b.root / name, "from b!")
    a.sync()
    report = b.sync()
    assert report.errors == [] and len(report.conflicts) == 1
    converge(a, b)
    write(a.root / "later.txt", "still syncing")  # the devices keep syncing everything else
    converge(a, b)
    assert a.tree() == b.tree()
    (copy,) = [path for path in a.tree() if "conflicted copy" in path]
    assert len(copy.encode()) <= 255 and copy.endswith(" (conflicted copy from b " + copy.split(" from b ")[1])
    assert copy.endswith(".txt") and copy.startswith("xxxx")
    assert sorted([a.tree()[name], a.tree()[copy]]) == [b"from a", b"from b!"]
    assert a.tree()["later.txt"] == b"still syncing"


def test_a_long_name_deleted_twice_a_day_fits_the_trash(make_device) -> None:
    """A 254-byte name deleted twice on one day: the trash name ``… (2).txt`` would be 258 bytes."""
    a, b = make_device("alice", "a"), make_device("alice", "b")
    name = "y" * 250 + ".txt"
    for round_ in ("first", "second"):
        write(a.root / name, round_)
        converge(a, b)
        assert b.tree()[name] == round_.encode()
        (a.root / name).unlink()
        reports = converge(a, b)
        assert all(report.errors == [] for report in reports)
        assert name not in b.tree()
    trashed = sorted(p for p in (b.root / ".oaiod" / "trash").rglob("*") if p.is_file())
    assert sorted(p.read_text() for p in trashed) == ["first", "second"]
    assert all(len(p.name.encode()) <= 255 and p.name.endswith(".txt") for p in trashed)


@pytest.mark.parametrize("first", ["file", "folder"])
def test_a_file_and_a_folder_of_one_name_converge_keeping_both(make_device, first: str) -> None:
    """a writes file ``X``, b writes ``X/sub/f.txt`` while neither has synced the other's. Whichever commits first,
    the folder keeps the name and the file becomes a conflicted copy beside it, on every device; both devices go
    on syncing (the device holding the folder once retried forever, and its commits never left it)."""
    a, b = make_device("alice", "a"), make_device("alice", "b")
    write(a.root / "base.txt", "base")
    converge(a, b)
    write(a.root / "X", "a's file X")
    write(b.root / "X" / "sub" / "f.txt", "b's f")
    order = (a, b) if first == "file" else (b, a)
    for device in order:
        assert device.sync().errors == []
    converge(a, b, rounds=3)
    files = a.tree()
    assert files == b.tree()
    (copy,) = [path for path in files if path.startswith("X (conflicted copy from ")]
    assert files[copy] == b"a's file X" and files["X/sub/f.txt"] == b"b's f" and files["base.txt"] == b"base"
    assert len(files) == 3 and (a.root / "X").is_dir() and (b.root / "X").is_dir()
    # nothing is stuck: later changes on either device travel both ways
    write(a.root / "X" / "later-a.txt", "from a")
    (b.root / "base.txt").unlink()
    converge(a, b, rounds=2)
    assert a.tree() == b.tree() and "base.txt" not in a.tree() and a.tree()["X/later-a.txt"] == b"from a"


def test_conflicts_are_the_copies_on_disk_on_every_device_and_clear_once_resolved(make_device) -> None:
    """Issue 14: the list stayed after the copy was deleted, and the other device listed none while the copy
    existed there too."""
    a, b = make_device("alice", "a"), make_device("alice", "b")
    write(a.root / "notes" / "doc.txt", "base")
    converge(a, b)
    write(a.root / "notes" / "doc.txt", "from a")
    write(b.root / "notes" / "doc.txt", "from b!")
    a.sync()
    b.sync()
    converge(a, b)
    for device in (a, b):
        (conflict,) = present.rows(device.engine.conflicts())
        assert conflict["path"] == "notes/doc.txt", device.name
        assert conflict["copy_path"].startswith("notes/doc (conflicted copy from b ")
        assert device.engine.status().conflicts == 1
    (b.root / conflict["copy_path"]).unlink()  # resolved: the copy is deleted on one device
    converge(a, b)
    assert a.engine.conflicts() == [] and b.engine.conflicts() == []
    assert a.engine.status().conflicts == 0


def test_parse_conflict_name_reads_what_conflict_name_makes() -> None:
    import datetime

    from oaiod.engine.plan import conflict_name, parse_conflict_name

    when = datetime.datetime(2026, 12, 4, 1, 2, 3)
    assert parse_conflict_name(conflict_name("a/b/report.final.pdf", "laptop-1", when, 2)) == (
        "a/b/report.final.pdf",
        "laptop-1",
        "2026-12-04 010203",
    )
    assert parse_conflict_name("a/plain.txt") is None
