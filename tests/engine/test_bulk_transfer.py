"""Bulk uploads and downloads through ``Backend.put_many``/``get_many`` (real hub, real Local storage).

Batches are made small (``TRANSFER_BATCH_FILES``) so a few dozen files take several calls. Where a test needs
something to happen at an exact moment of a transfer — a user editing a file while it is uploaded, a file
appearing where a download goes — it wraps the engine's real storage backend in :class:`HookedBackend`, which
passes every call on and runs the test's hook before ``put_many`` or after ``get_many`` (the fault is injected
at the storage boundary; nothing is mocked).
"""

from __future__ import annotations

import stat
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from oaiod.engine import context
from oaiod.storage import open_backend
from oaiod.storage.base import Backend, Capabilities, ObjectInfo, Transfer, Transferred
from oaiod.storage.errors import LocalFileChanged
from tests.engine.conftest import Device, converge, write

pytestmark = pytest.mark.integration

Hook = Callable[[list[Transfer], list[Transferred] | None], list[Transferred] | None]


class HookedBackend(Backend):
    """Passes every call to a real backend; ``on_put`` runs before ``put_many`` (it may replace the results),
    ``on_get`` after ``get_many``. Counts the batch calls."""

    def __init__(self, inner: Backend) -> None:
        self.inner = inner
        self.csh_id = inner.csh_id  # type: ignore[misc]
        self.on_put: Hook | None = None
        self.on_get: Hook | None = None
        self.put_calls: list[int] = []
        self.get_calls: list[int] = []

    @classmethod
    def from_args(cls, args: Any) -> Backend:  # pragma: no cover - built by the test
        raise TypeError

    @property
    def capabilities(self) -> Capabilities:  # type: ignore[override]
        return self.inner.capabilities

    def put_file(self, key: str, local_path: Any, *, progress: Any = None) -> None:
        self.inner.put_file(key, local_path, progress=progress)

    def get_file(self, key: str, local_path: Any, *, progress: Any = None, fsync: bool = True) -> None:
        self.inner.get_file(key, local_path, progress=progress, fsync=fsync)

    def stat(self, key: str) -> ObjectInfo:
        return self.inner.stat(key)

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        return self.inner.list(prefix)

    def delete(self, key: str) -> None:
        self.inner.delete(key)

    def delete_prefix(self, prefix: str) -> None:
        self.inner.delete_prefix(prefix)

    def exists(self, key: str) -> bool:
        return self.inner.exists(key)

    def copy(self, src: str, dst: str) -> None:
        self.inner.copy(src, dst)

    def copy_many(self, pairs: Iterable[tuple[str, str]], *, progress: Any = None) -> None:
        self.inner.copy_many(pairs, progress=progress)

    def put_many(
        self, items: Sequence[Transfer], *, progress: Any = None, unpublished: bool = False
    ) -> list[Transferred]:
        self.put_calls.append(len(items))
        replaced = self.on_put(list(items), None) if self.on_put else None
        results = self.inner.put_many(items, progress=progress, unpublished=unpublished)
        return replaced if replaced is not None else results

    def get_many(self, items: Sequence[Transfer], *, progress: Any = None) -> list[Transferred]:
        self.get_calls.append(len(items))
        results = self.inner.get_many(items, progress=progress)
        if self.on_get:
            results = self.on_get(list(items), results) or results
        return results

    def flush(self) -> None:
        self.inner.flush()

    def close(self) -> None:
        self.inner.close()


def hooked(device: Device) -> HookedBackend:
    """Make ``device``'s engine open its storage through a :class:`HookedBackend` (before its first transfer)."""
    made: list[HookedBackend] = []

    def opener(csh_id: str, args: Any) -> Backend:
        made.append(HookedBackend(open_backend(csh_id, args)))
        return made[-1]

    device.engine.ctx.close()
    device.engine.ctx.open_backend = opener
    device.engine.ctx.backend(device.engine.settings.csh_id)
    return made[0]


@pytest.fixture(autouse=True)
def small_batches(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(context, "TRANSFER_BATCH_FILES", 7)


def many(root: Path, count: int, folder: str = "bulk") -> dict[str, bytes]:
    made = {}
    for number in range(count):
        rel = f"{folder}/d{number % 4}/f{number:03d}.txt"
        made[rel] = f"file {number} ".encode() * (number + 1)
        write(root / rel, made[rel])
    return made


def test_bulk_push_and_pull_in_batches(make_device) -> None:
    """40 files in batches of 7 arrive byte for byte with their mtimes and executable bits; the index rows hold
    the installed stats (the next cycles transfer and hash nothing); progress ends at zero."""
    a, b = make_device("alice", "a"), make_device("alice", "b")
    converge(a, b)
    hooked_a, hooked_b = hooked(a), hooked(b)
    made = many(a.root, 40)
    (a.root / "bulk" / "d1" / "f001.txt").chmod(0o755)
    converge(a, b)
    assert b.tree() == a.tree() and {rel: b.tree()[rel] for rel in made} == made
    assert hooked_a.put_calls == [7, 7, 7, 7, 7, 5]
    assert sum(hooked_b.get_calls) == 40 and max(hooked_b.get_calls) == 7
    for rel in made:
        sa, sb = (a.root / rel).stat(), (b.root / rel).stat()
        assert sb.st_mtime_ns == sa.st_mtime_ns, rel
        assert bool(sb.st_mode & stat.S_IXUSR) == (rel == "bulk/d1/f001.txt"), rel
    assert not [p for p in b.root.rglob(".oaiod-tmp-*")]
    for device in (a, b):
        report = device.sync()
        assert (report.downloads, report.uploads, report.pushed, report.hashed) == (0, 0, 0, 0)
        progress = device.engine.progress.as_dict()
        assert progress["current"] is None and progress["queued_uploads"] == progress["queued_downloads"] == 0
    assert b.engine.rescan().hashed == 0


@pytest.mark.parametrize("how", ["changed-before-read", "backend-reports-change"])
def test_a_file_changed_during_upload_aborts_the_commit(make_device, storage_root: Path, how: str) -> None:
    """A file edited while its batch is uploaded (the backend read another size/mtime than indexed, or says
    ``LocalFileChanged``): the commit is dropped with its partial prefix and the next cycle commits the edit."""
    a, b = make_device("alice", "a"), make_device("alice", "b")
    converge(a, b)
    backend = hooked(a)
    many(a.root, 20)
    victim = a.root / "bulk" / "d2" / "f010.txt"

    def edit(items: list[Transfer], _results: object) -> list[Transferred] | None:
        if not any(item.local_path == str(victim) for item in items):
            return None
        backend.on_put = None  # once
        write(victim, "edited during the upload")
        if how == "changed-before-read":
            return None
        return [
            Transferred(item.key, error=LocalFileChanged("changed while read", key=item.key))
            if item.local_path == str(victim)
            else Transferred(item.key, 0, 0, 0)
            for item in items
        ]

    backend.on_put = edit
    a.engine.rescan()
    before = set(_stamps(storage_root))
    report = a.engine.sync_cycle()
    assert report.pushed == 0 and report.errors == []
    assert set(_stamps(storage_root)) == before  # the partial version is gone
    converge(a, b)
    assert (b.root / "bulk" / "d2" / "f010.txt").read_text() == "edited during the upload"
    assert b.tree() == a.tree()


def _stamps(storage_root: Path) -> list[str]:
    return [str(path.relative_to(storage_root)) for path in storage_root.glob("*/*")]


def test_a_file_created_in_the_way_of_a_download_is_kept(make_device) -> None:
    """A user creates a file where a download is about to be renamed (in a folder that exists here): it is not
    replaced; the next cycle sees it as a local file and keeps both sides (conflicted copy), every other file of
    the batch is installed."""
    a, b = make_device("alice", "a"), make_device("alice", "b")
    write(a.root / "bulk" / "d3" / "seed.txt", "the folder exists on both")
    converge(a, b)
    backend = hooked(b)
    made = many(a.root, 12)
    a.sync()
    in_the_way = b.root / "bulk" / "d3" / "f007.txt"

    def create(items: list[Transfer], _results: object) -> None:
        if any(item.key.endswith("bulk/d3/f007.txt") for item in items):
            backend.on_get = None
            write(in_the_way, "the user's own file")

    backend.on_get = create
    report = b.engine.sync_cycle()
    assert report.errors == [] and report.downloads == 11
    assert in_the_way.read_text() == "the user's own file"
    assert not [p for p in b.root.rglob(".oaiod-tmp-*")]
    converge(b, a)
    copies = [rel for rel in b.tree() if rel.startswith("bulk/d3/f007 (conflicted copy")]
    assert len(copies) == 1 and b.tree() == a.tree()
    assert {b.tree()[rel] for rel in ("bulk/d3/f007.txt", copies[0])} == {
        made["bulk/d3/f007.txt"],
        b"the user's own file",
    }


def test_new_folders_arrive_whole_and_one_made_meanwhile_is_never_replaced(make_device) -> None:
    """Folders new here are downloaded as staged temp folders and renamed into place whole (no temp name left).
    When the user makes one of them meanwhile, nothing of theirs is replaced: that staged folder is dropped, the
    others arrive, and the next cycles bring the rest, keeping both versions of a file made on both sides."""
    a, b = make_device("alice", "a"), make_device("alice", "b")
    converge(a, b)
    backend = hooked(b)
    made = many(a.root, 12)
    made.update(many(a.root, 4, folder="other"))
    a.sync()
    mine = b.root / "bulk" / "d3" / "f007.txt"

    def create(items: list[Transfer], _results: object) -> None:
        if any(item.key.endswith("bulk/d3/f007.txt") for item in items):
            backend.on_get = None
            assert not (b.root / "bulk").exists()  # staged: the new folder is not in place before its files are
            write(mine, "the user's own file")

    backend.on_get = create
    report = b.engine.sync_cycle()
    assert report.errors == [] and report.downloads == 4  # other/: placed whole; bulk/: dropped, made meanwhile
    assert {rel for rel in b.tree() if rel.startswith("other/")} == {rel for rel in made if rel.startswith("other/")}
    assert sorted(p.relative_to(b.root / "bulk") for p in (b.root / "bulk").rglob("*")) == [
        Path("d3"),
        Path("d3/f007.txt"),
    ]
    assert mine.read_text() == "the user's own file"
    assert not [p for p in b.root.rglob(".oaiod-tmp-*")]
    converge(b, a)
    copies = [rel for rel in b.tree() if rel.startswith("bulk/d3/f007 (conflicted copy")]
    assert len(copies) == 1 and b.tree() == a.tree()
    assert {b.tree()[rel] for rel in ("bulk/d3/f007.txt", copies[0])} == {
        made["bulk/d3/f007.txt"],
        b"the user's own file",
    }


def test_a_key_missing_on_storage_fails_only_its_file(make_device, storage_root: Path) -> None:
    """One object of a version is missing on storage: the other files of its batch arrive, the missing one is an
    error that waits out its backoff (not fetched again every cycle); once the object is back, ``ctl sync`` (which
    makes every backed-off item due) completes it."""
    a, b = make_device("alice", "a"), make_device("alice", "b")
    converge(a, b)
    made = many(a.root, 15)
    a.sync()
    (stored,) = storage_root.glob("*/*/bulk/d1/f005.txt")
    kept = stored.read_bytes()
    stored.unlink()
    report = b.sync()
    assert [error for error in report.errors if "f005.txt" in error] and report.downloads == 14
    assert not (b.root / "bulk" / "d1" / "f005.txt").exists()
    assert all((b.root / rel).read_bytes() == data for rel, data in made.items() if not rel.endswith("f005.txt"))
    assert not [p for p in b.root.rglob(".oaiod-tmp-*")]
    stored.write_bytes(kept)
    assert b.sync().downloads == 0  # backing off
    b.engine.retry_failed()  # ctl sync
    report = b.sync()
    assert report.downloads == 1 and report.errors == []
    assert b.tree() == a.tree()


def test_a_symlinked_parent_folder_is_never_written_through(make_device, tmp_path: Path) -> None:
    """B has a symlink where A has a folder: nothing is written through it (the outside folder stays empty), the
    files of that folder fail, every other file of the batch arrives."""
    a, b = make_device("alice", "a"), make_device("alice", "b")
    converge(a, b)
    outside = tmp_path / "outside"
    outside.mkdir()
    (b.root / "link").symlink_to(outside, target_is_directory=True)
    write(a.root / "link" / "evil.txt", "must not leave the root")
    write(a.root / "link" / "deep" / "evil2.txt", "nor this")
    made = many(a.root, 9)
    a.sync()
    report = b.sync()
    assert list(outside.iterdir()) == []
    failed = sorted(row.path for row in b.engine.repo.errors())
    assert failed == ["link/deep/evil2.txt", "link/evil.txt"] and report.errors
    assert all((b.root / rel).read_bytes() == data for rel, data in made.items())
    assert not [p for p in b.root.rglob(".oaiod-tmp-*")]


def _executable(path: Path) -> bool:
    return bool(path.stat().st_mode & stat.S_IXUSR)


def _chmod(path: Path, executable: bool) -> None:
    """A plain chmod: size and mtime stay, so the rescan must notice the mode itself."""
    path.chmod(0o755 if executable else 0o644)


def test_a_change_of_only_the_executable_bit_reaches_the_other_side(make_device) -> None:
    """Remote bit changed, local as in the base: chmod here (no download). Back the other way too."""
    a, b = make_device("alice", "a"), make_device("alice", "b")
    write(a.root / "run.sh", "#!/bin/sh\necho hi\n")
    converge(a, b)
    assert not _executable(b.root / "run.sh")
    _chmod(a.root / "run.sh", True)
    a.sync()
    report = b.sync()
    assert report.downloads == 0 and report.errors == []
    assert _executable(b.root / "run.sh")
    assert b.sync().pushed == 0 and b.engine.rescan().hashed == 0  # the row holds the new bit as synced

    _chmod(b.root / "run.sh", False)
    converge(b, a)
    assert not _executable(a.root / "run.sh") and not _executable(b.root / "run.sh")
    history = [entry for entry in b.engine.repo.history(limit=50) if entry.action == "chmod"]
    assert history and history[0].path == "run.sh"


def test_executable_bit_changed_remotely_and_content_locally_local_wins(make_device) -> None:
    """Both changed: A made the file executable, B edited it; B's version (content and bit) wins and is pushed."""
    a, b = make_device("alice", "a"), make_device("alice", "b")
    write(a.root / "tool.py", "print(1)\n")
    converge(a, b)
    _chmod(a.root / "tool.py", True)
    a.sync()
    write(b.root / "tool.py", "print(2)\n")
    converge(b, a)
    for device in (a, b):
        assert (device.root / "tool.py").read_text() == "print(2)\n"
        assert not _executable(device.root / "tool.py")
    assert a.tree() == b.tree() and len(a.tree()) == 1
