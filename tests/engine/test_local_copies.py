"""A pull never downloads content the device has already (issue 13 §1; real hub, real Local storage, two engines).

B's storage backend is wrapped in :class:`~tests.engine.test_bulk_transfer.HookedBackend`, which passes every call
to the real backend and lets the test count the bytes ``get_many`` brought from storage. Where a test needs a
user's edit at the exact moment a local copy reads its source, it wraps the copy function of
:mod:`oaiod.engine.localcopy` (the edit is real; only its timing is forced).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from oaiod.engine import localcopy, pull
from oaiod.storage.base import Transfer, Transferred
from tests.engine.conftest import Device, converge, write
from tests.engine.test_bulk_transfer import HookedBackend, hooked

pytestmark = pytest.mark.integration


def downloaded(backend: HookedBackend) -> list[int]:
    """Make ``backend`` note the size of every file its ``get_many`` brings from storage; the list it fills."""
    sizes: list[int] = []

    def count(_items: list[Transfer], results: list[Transferred] | None) -> None:
        sizes.extend(got.size for got in results or [] if got.error is None)

    backend.on_get = count
    return sizes


def trash_of(device: Device) -> dict[str, bytes]:
    found = {}
    for path in (device.root / ".oaiod" / "trash").rglob("*"):
        if path.is_file():
            found[path.relative_to(device.root / ".oaiod" / "trash").as_posix().split("/", 1)[1]] = path.read_bytes()
    return found


def renamed_on_a(make_device) -> tuple[Device, Device, dict[str, bytes], list[int]]:
    """A and B hold ``photos/`` (30 files in 3 folders, one executable) and ``notes.txt``; A renames ``notes.txt``
    to ``memo.txt`` and ``photos`` to ``pics`` and commits. Returns both, the photos and B's downloaded sizes."""
    a, b = make_device("alice", "a"), make_device("alice", "b")
    made = {f"photos/{n % 3}/img{n:02d}.jpg": os.urandom(3000 + n) for n in range(30)}
    for rel, data in made.items():
        write(a.root / rel, data)
    write(a.root / "notes.txt", "my notes")
    (a.root / "photos" / "0" / "img00.jpg").chmod(0o755)
    converge(a, b)
    sizes = downloaded(hooked(b))
    (a.root / "notes.txt").rename(a.root / "memo.txt")
    (a.root / "photos").rename(a.root / "pics")
    a.sync()
    return a, b, made, sizes


def test_a_renamed_folder_is_renamed_here(make_device) -> None:
    """The folder holds exactly its indexed files on B: B renames it whole (same inodes, nothing copied, nothing in
    the trash); the renamed file is copied; no byte comes from storage."""
    a, b, made, sizes = renamed_on_a(make_device)
    inodes = {rel: (b.root / rel).stat().st_ino for rel in made}
    report = b.sync()
    assert report.errors == [] and report.local_copies == 31 and sizes == []
    assert b.tree() == a.tree()
    assert {rel: (b.root / rel.replace("photos/", "pics/")).stat().st_ino for rel in made} == inodes
    assert (b.root / "pics" / "0" / "img00.jpg").stat().st_mode & 0o100
    assert trash_of(b) == {"notes.txt": b"my notes"}
    moved = {row.path: row.detail for row in b.engine.repo.history() if row.action == "moved" and row.device == "a"}
    assert moved["pics/0/img00.jpg"] == "from photos/0/img00.jpg" and len(moved) == 31
    converge(a, b)
    for device in (a, b):
        report = device.sync()
        assert (report.downloads, report.hashed, report.pushed, report.uploads) == (0, 0, 0, 0)


@pytest.mark.parametrize("batch", [10_000, 8])
def test_a_renamed_folder_holding_a_new_file_here_is_copied_file_by_file(
    make_device, monkeypatch: pytest.MonkeyPatch, batch: int
) -> None:
    """B's user saved a file into the folder that A renamed, not indexed yet: the folder is not moved (that file
    would go with it unseen); each file is copied instead, no byte from storage — with a batch of 8 steps the old
    files are trashed in earlier batches and serve from the trash. The user's file stays and is pushed."""
    monkeypatch.setattr(pull, "APPLY_BATCH", batch)
    a, b, made, sizes = renamed_on_a(make_device)
    write(b.root / "photos" / "1" / "mine.txt", "saved on b meanwhile")
    report = b.engine.sync_cycle()  # no rescan: the engine has not seen mine.txt yet
    assert report.errors == [] and report.local_copies == 31 and sizes == []
    assert {rel for rel in b.tree() if rel.startswith("photos/")} == {"photos/1/mine.txt"}
    trashed = trash_of(b)
    assert trashed["notes.txt"] == b"my notes" and all(trashed[rel] == data for rel, data in made.items())
    for rel in made:
        new = rel.replace("photos/", "pics/")
        assert (b.root / new).stat().st_mtime_ns == (a.root / new).stat().st_mtime_ns
        assert (b.root / new).read_bytes() == made[rel]
    converge(a, b)
    assert b.tree() == a.tree() and a.tree()["photos/1/mine.txt"] == b"saved on b meanwhile"


def test_a_folder_move_is_refused_when_a_file_changed_here(make_device) -> None:
    """A file of the renamed folder was edited on B after B indexed it: the folder is not moved; the edited file is
    kept (it was deleted on A but changed here) and every other file arrives by copy."""
    a, b, made, sizes = renamed_on_a(make_device)
    b.engine.rescan()
    write(b.root / "photos" / "2" / "img02.jpg", "edited on b")
    report = b.engine.sync_cycle()
    assert sizes == [len(made["photos/2/img02.jpg"])]  # its source changed: downloaded
    assert report.local_copies == 30 and not report.errors
    assert (b.root / "photos" / "2" / "img02.jpg").read_text() == "edited on b"
    converge(a, b)
    assert b.tree() == a.tree() and a.tree()["photos/2/img02.jpg"] == b"edited on b"
    assert all(a.tree()[rel.replace("photos/", "pics/")] == data for rel, data in made.items())


def test_a_copy_and_a_revert_are_served_from_files_here(make_device) -> None:
    """A file copied into a new folder on A is copied on B; a file A changes is downloaded once, and when A puts the
    old content back, B takes it from its trash (where the download put the old file), not from storage."""
    a, b = make_device("alice", "a"), make_device("alice", "b")
    first = os.urandom(50_000)
    write(a.root / "doc.bin", first)
    converge(a, b)
    sizes = downloaded(hooked(b))
    (a.root / "copies").mkdir()
    shutil.copy2(a.root / "doc.bin", a.root / "copies" / "doc copy.bin")
    converge(a, b)
    assert b.tree() == a.tree() and sizes == []
    second = os.urandom(40_000)
    write(a.root / "doc.bin", second)
    converge(a, b)
    assert (b.root / "doc.bin").read_bytes() == second and sizes == [40_000]
    os.remove(a.root / "copies" / "doc copy.bin")  # the first content is then only in B's trash
    converge(a, b)
    write(a.root / "doc.bin", first)  # the revert
    report = [r for r in converge(a, b) if r.local_copies]
    assert b.tree() == a.tree() and sizes == [40_000]
    assert len(report) == 1 and report[0].local_copies == 1


def test_a_source_changed_while_it_is_copied_is_downloaded_and_the_edit_kept(
    make_device, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The user edits B's source file while the pull copies from it: the copy is not the wanted content (its hash
    says so), so the file is downloaded instead; the user's edit of the source stays and reaches A."""
    a, b = make_device("alice", "a"), make_device("alice", "b")
    content = os.urandom(20_000)
    write(a.root / "src.bin", content)
    converge(a, b)
    sizes = downloaded(hooked(b))
    shutil.copy2(a.root / "src.bin", a.root / "dup.bin")
    a.sync()
    copy_into = localcopy._copy_into

    def edited_meanwhile(src: int, item: localcopy.Wanted) -> Transferred | None:
        with open(b.root / "src.bin", "r+b") as file:  # the same file the copy has open: it reads the edit
            file.write(b"user edit")
        return copy_into(src, item)

    monkeypatch.setattr(localcopy, "_copy_into", edited_meanwhile)
    report = b.sync()
    monkeypatch.undo()
    assert report.errors == [] and report.local_copies == 0
    assert (b.root / "dup.bin").read_bytes() == content and sizes == [20_000]
    edited = b"user edit" + content[9:]
    assert (b.root / "src.bin").read_bytes() == edited
    converge(a, b)
    assert (a.root / "src.bin").read_bytes() == edited and a.tree() == b.tree()


def test_a_source_changed_since_it_was_indexed_is_not_used(make_device) -> None:
    """B's source was edited after B indexed it (same size): its stat no longer matches, it is not read, and the
    file is downloaded; the edit is kept and pushed."""
    a, b = make_device("alice", "a"), make_device("alice", "b")
    write(a.root / "src.txt", "original text")
    converge(a, b)
    sizes = downloaded(hooked(b))
    shutil.copy2(a.root / "src.txt", a.root / "dup.txt")
    a.sync()
    b.engine.rescan()
    write(b.root / "src.txt", "ORIGINAL TEXT")  # after the rescan: the index still says "original text"
    report = b.engine.sync_cycle()
    assert report.local_copies == 0 and sizes == [len("original text")]
    converge(a, b)
    assert a.tree() == b.tree() == {"src.txt": b"ORIGINAL TEXT", "dup.txt": b"original text"}


def test_a_conflict_served_from_a_local_file_keeps_both_sides(make_device) -> None:
    """A sets ``f`` to content B holds in another file while B edits ``f``: B keeps its edit as a conflicted copy
    and takes A's content from its own file, with no byte from storage."""
    a, b = make_device("alice", "a"), make_device("alice", "b")
    write(a.root / "f.txt", "base")
    write(a.root / "other.txt", "the other content")
    converge(a, b)
    sizes = downloaded(hooked(b))
    write(a.root / "f.txt", "the other content")
    a.sync()
    write(b.root / "f.txt", "edited on b")
    report = b.sync()
    assert report.local_copies == 1 and len(report.conflicts) == 1 and sizes == []
    assert (b.root / "f.txt").read_text() == "the other content"
    assert (b.root / report.conflicts[0]).read_text() == "edited on b"
    converge(a, b)
    assert a.tree() == b.tree()


def test_stale_trash_rows_are_forgotten(make_device) -> None:
    """The user empties B's trash: the rows that pointed there no longer serve (the file is downloaded) and are
    dropped."""
    a, b = make_device("alice", "a"), make_device("alice", "b")
    write(a.root / "f.txt", "version one")
    converge(a, b)
    write(a.root / "f.txt", "version two")
    converge(a, b)
    shutil.rmtree(b.root / ".oaiod" / "trash")
    sizes = downloaded(hooked(b))
    write(a.root / "f.txt", "version one")
    converge(a, b)
    assert (b.root / "f.txt").read_text() == "version one" and sizes == [len("version one")]
    assert not any("/.oaiod/trash/" in source[1] for source in _sources(b, "version one"))


def _sources(device: Device, text: str) -> list[tuple[str, str, int, int, int]]:
    import hashlib

    sha = hashlib.sha256(text.encode()).hexdigest()
    repo = device.engine.repo
    roots = {row.oaio_id: row.local_root for row in repo.objects() if row.local_root}
    return repo.local_sources([sha], roots).get(sha, [])


def test_a_file_moved_into_a_new_folder(make_device) -> None:
    """A file moved into a folder B does not have yet (staged as a new folder on B) is copied into it."""
    a, b = make_device("alice", "a"), make_device("alice", "b")
    write(a.root / "one" / "big.bin", os.urandom(30_000))
    converge(a, b)
    sizes = downloaded(hooked(b))
    (a.root / "two").mkdir()
    (a.root / "one" / "big.bin").rename(a.root / "two" / "big.bin")
    converge(a, b)
    assert b.tree() == a.tree() and sizes == []


def test_content_crosses_no_owner_boundary(make_device) -> None:
    """Bob's pull of a folder Alice shares with him never takes content from Bob's own files (his private file's
    sha256 in her manifest is downloaded: no one learns from the hub's silence what Bob holds), but does take it from
    the files of that shared folder itself."""
    alice, bob = make_device("alice", "a"), make_device("bob", "b")
    secret = os.urandom(10_000)
    write(bob.root / "private.bin", secret)
    write(alice.root / "shared.bin", os.urandom(12_000))
    converge(alice, bob)
    [root] = [row for row in alice.engine.repo.objects() if row.kind == "root"]
    alice.api.subscribe(root.oaio_id, "bob", "U")
    converge(alice, bob)
    [here] = [row for row in bob.engine.repo.objects() if row.oaio_id == root.oaio_id]
    assert here.local_root and (Path(here.local_root) / "shared.bin").is_file()
    sizes = downloaded(hooked(bob))
    write(alice.root / "guess.bin", secret)
    shutil.copy2(alice.root / "shared.bin", alice.root / "shared copy.bin")
    converge(alice, bob)
    assert (Path(here.local_root) / "guess.bin").read_bytes() == secret
    assert (Path(here.local_root) / "shared copy.bin").is_file()
    assert sizes == [len(secret)]


def test_a_file_restored_from_the_trash_comes_from_the_trash_here(make_device) -> None:
    """A deletes a file (B moves it to its trash), then restores it from A's trash: B takes it back from its own
    trash, no byte from storage; the restored file is a copy, so B's trash keeps its file too."""
    a, b = make_device("alice", "a"), make_device("alice", "b")
    data = os.urandom(25_000)
    write(a.root / "keep" / "report.pdf", data)
    write(a.root / "keep" / "other.txt", "stays")
    converge(a, b)
    sizes = downloaded(hooked(b))
    (a.root / "keep" / "report.pdf").unlink()
    converge(a, b)
    assert not (b.root / "keep" / "report.pdf").exists() and trash_of(b) == {"keep/report.pdf": data}
    write(a.root / "keep" / "report.pdf", data)
    converge(a, b)
    assert (b.root / "keep" / "report.pdf").read_bytes() == data and sizes == []
    assert trash_of(b) == {"keep/report.pdf": data}
