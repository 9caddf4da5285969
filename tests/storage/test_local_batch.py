"""Local's put_many/get_many beyond the conformance suite: the worker-process path (forced with a small
``process_threshold``), a killed worker, durability bookkeeping, symlinks, the idle shutdown of the workers."""

from __future__ import annotations

import hashlib
import os
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from oaiod.storage import fsops, keys
from oaiod.storage.base import Transfer
from oaiod.storage.errors import LocalFileChanged, ObjectNotFound, StoragePermissionDenied, TransientStorageError
from oaiod.storage.local import LocalBackend
from oaiod.storage.local import worker as local_worker
from oaiod.storage.toolkit import UMASK

MIB = 1024 * 1024


@pytest.fixture(params=["in thread", "in workers"])
def local(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[LocalBackend]:
    """Local on a fresh root, once running batches in the calling thread and once on worker processes."""
    root = tmp_path / "store"
    root.mkdir()
    backend = LocalBackend(root)
    backend.process_threshold = backend.pool_start_threshold = 10**9 if request.param == "in thread" else 1
    yield backend
    backend.close()


def make_sources(folder: Path, sizes: list[int]) -> list[Path]:
    folder.mkdir(exist_ok=True)
    paths = []
    for number, size in enumerate(sizes):
        path = folder / f"source {number}"
        path.write_bytes(os.urandom(size))
        paths.append(path)
    return paths


def wait_until(condition: object, seconds: float = 30.0) -> bool:
    """Poll ``condition()`` until true or ``seconds`` passed (a bound for a slow machine, not a timing claim)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return True
        time.sleep(0.02)
    return bool(condition())  # type: ignore[operator]


def temp_files(root: Path) -> list[Path]:
    return [path for path in root.rglob("*") if path.name.startswith(keys.TEMP_PREFIX)]


def test_round_trip_and_per_item_errors(local: LocalBackend, tmp_path: Path) -> None:
    sizes = [0, 1, 4096, 3 * MIB + 5, 10]
    sources = make_sources(tmp_path / "src", sizes)
    items = [Transfer(f"o/s/d{n % 2}/f{n}", str(path)) for n, path in enumerate(sources)]
    items.append(Transfer("o/s/missing", str(tmp_path / "src" / "no such file")))
    results = local.put_many(items)
    assert [r.error for r in results[:-1]] == [None] * len(sizes)
    assert isinstance(results[-1].error, LocalFileChanged)
    assert [r.size for r in results[:-1]] == sizes
    assert temp_files(local.root) == []

    back = tmp_path / "back"
    back.mkdir()
    (back / "taken").write_bytes(b"keep me")
    gets = [Transfer(item.key, str(back / str(n)), mtime_ns=n * 10**9, executable=n == 2) for n, item in
            enumerate(items[:-1])]  # fmt: skip
    local.put_bytes("o/other", b"other")
    gets += [Transfer("o/s/missing", str(back / "m")), Transfer("o/other", str(back / "taken"))]
    results = local.get_many(gets)
    for number, (path, result) in enumerate(zip(sources, results, strict=False)):
        data = path.read_bytes()
        assert (back / str(number)).read_bytes() == data
        assert result.sha256 == hashlib.sha256(data).hexdigest()
        info = (back / str(number)).stat()
        assert (result.size, result.mtime_ns, result.inode) == (info.st_size, number * 10**9, info.st_ino)
        assert stat.S_IMODE(info.st_mode) == (0o777 if number == 2 else 0o666) & ~UMASK
    assert isinstance(results[-2].error, ObjectNotFound) and isinstance(results[-1].error, LocalFileChanged)
    assert (back / "taken").read_bytes() == b"keep me" and not (back / "m").exists()


def test_a_source_changed_while_read_fails_its_item(local: LocalBackend, tmp_path: Path) -> None:
    """A FIFO in place of a file is refused without blocking; a folder is not a file either."""
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    (source,) = make_sources(tmp_path / "src", [5])
    results = local.put_many([Transfer("k/fifo", str(fifo)), Transfer("k/dir", str(tmp_path)),
                              Transfer("k/ok", str(source))])  # fmt: skip
    assert [type(r.error) for r in results] == [LocalFileChanged, LocalFileChanged, type(None)]


def test_replacing_objects(local: LocalBackend, tmp_path: Path) -> None:
    first, second = make_sources(tmp_path / "src", [10, 20])
    local.put_many([Transfer("k/a", str(first)), Transfer("k/b", str(first))])
    results = local.put_many([Transfer("k/a", str(second)), Transfer("k/b", str(second))])
    assert [r.error for r in results] == [None, None]
    assert local.get_bytes("k/a") == second.read_bytes() == local.get_bytes("k/b")


def test_symlinked_key_folders_are_refused_per_item(local: LocalBackend, tmp_path: Path) -> None:
    """A key folder that is a symlink out of the root fails the items in it (checked once per batch); a symlinked
    object is not an object; other items go on."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_bytes(b"not yours")
    (local.root / "o").mkdir()
    (local.root / "o" / "escape").symlink_to(outside)
    (local.root / "o" / "link").symlink_to(outside / "secret")
    (source,) = make_sources(tmp_path / "src", [3])
    results = local.put_many([Transfer(f"o/escape/{n}", str(source)) for n in range(3)]
                             + [Transfer("o/fine/x", str(source))])  # fmt: skip
    assert [type(r.error) for r in results] == [StoragePermissionDenied] * 3 + [type(None)]
    assert sorted(os.listdir(outside)) == ["secret"]
    results = local.get_many([Transfer("o/escape/secret", str(tmp_path / "a")), Transfer("o/link", str(tmp_path / "b")),
                              Transfer("o/fine/x", str(tmp_path / "c"))])  # fmt: skip
    assert [type(r.error) for r in results] == [StoragePermissionDenied, ObjectNotFound, type(None)]
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_flush_after_put_many_covers_the_batch(local: LocalBackend, tmp_path: Path) -> None:
    """Objects written by workers are owed a sync like any other: noted until flush() (syncfs) pays it."""
    sources = make_sources(tmp_path / "src", [1, 2, 3])
    local.put_many([Transfer(f"o/1/{n}", str(path)) for n, path in enumerate(sources)])
    assert local._unsynced >= {str(local.root / "o/1/0"), str(local.root / "o/1/2"), str(local.root / "o/1")}
    assert "o/1" in local._made_folders
    local.flush()
    assert local._unsynced == set() and local._made_folders == set()
    assert local.get_bytes("o/1/2") == sources[2].read_bytes()


def test_a_killed_worker_fails_its_items_transiently_and_the_pool_is_rebuilt(tmp_path: Path) -> None:
    """Both workers are killed (SIGKILL) as the first chunk's answer arrives: the call returns, the items not
    answered fail with a transient error, their half-written files are gone, and the next batch works."""
    root = tmp_path / "store"
    root.mkdir()
    backend = LocalBackend(root)
    backend.process_threshold = backend.pool_start_threshold = 2
    count = 1500
    sources = make_sources(tmp_path / "src", [256 * (n % 5) for n in range(count)])
    killed: list[int] = []

    def kill_workers(_amount: int) -> None:
        if not killed:
            killed.extend(backend.pool.worker_pids())
            for pid in killed:
                os.kill(pid, signal.SIGKILL)

    try:
        items = [Transfer(f"o/s/f{n}", str(path)) for n, path in enumerate(sources)]
        results = backend.put_many(items, progress=kill_workers)
        assert killed
        lost = [n for n, r in enumerate(results) if r.error is not None]
        assert lost and all(isinstance(results[n].error, TransientStorageError) for n in lost)
        assert temp_files(root) == []
        again = backend.put_many([items[n] for n in lost])  # a new pool
        assert [r.error for r in again] == [None] * len(lost)

        back = tmp_path / "back"
        back.mkdir()
        killed.clear()
        gets = [Transfer(item.key, str(back / str(n))) for n, item in enumerate(items)]
        results = backend.get_many(gets, progress=kill_workers)
        lost = [n for n, r in enumerate(results) if r.error is not None]
        assert lost and all(isinstance(results[n].error, TransientStorageError) for n in lost)
        # a lost item leaves no file; only a kill between creating a file and marking it could leave it empty
        assert all(not (back / str(n)).exists() or (back / str(n)).stat().st_size == 0 for n in lost)
        for n in lost:
            (back / str(n)).unlink(missing_ok=True)
        again = backend.get_many([gets[n] for n in lost])
        assert [r.error for r in again] == [None] * len(lost)
        assert sorted(os.listdir(back), key=int) == [str(n) for n in range(count)]
    finally:
        backend.close()


def test_idle_workers_are_shut_down_and_close_stops_them(tmp_path: Path) -> None:
    root = tmp_path / "store"
    root.mkdir()
    backend = LocalBackend(root)
    backend.process_threshold = backend.pool_start_threshold = 2
    backend.pool.idle_seconds = 0.2
    sources = make_sources(tmp_path / "src", [1] * 40)
    pids: list[int] = []
    assert not backend.pool.running
    backend.put_many([Transfer(f"k/{n}", str(path)) for n, path in enumerate(sources)],
                     progress=lambda _: pids.extend(backend.pool.worker_pids()))  # fmt: skip
    assert pids
    assert wait_until(lambda: not backend.pool.running)
    assert wait_until(lambda: not any(alive(pid) for pid in pids))
    backend.pool.idle_seconds = 600
    backend.get_many([Transfer(f"k/{n}", str(tmp_path / f"back {n}")) for n in range(40)])
    assert backend.pool.running
    pids = backend.pool.worker_pids()
    backend.close()
    assert not backend.pool.running
    assert wait_until(lambda: not any(alive(pid) for pid in pids))


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:  # it ended between the kill and the read (ENOENT, or ESRCH while /proc tears it down)
        return False


def test_the_worker_module_needs_only_the_standard_library() -> None:
    """Its own imports are stdlib and the stdlib-only fsops (what the package's __init__ pulls in is the package's
    business)."""
    assert local_worker.TEMP_PREFIX == keys.TEMP_PREFIX
    code = (
        "import ast, sys; tree = ast.parse(open(sys.argv[1]).read());"
        "names = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}"
        " | {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module};"
        "print(sorted(m for m in names if m.split('.')[0] not in sys.stdlib_module_names))"
    )
    for module, allowed in ((local_worker, "['oaiod.storage.fsops']"), (fsops, "[]")):
        found = subprocess.run([sys.executable, "-c", code, module.__file__], capture_output=True, text=True)
        assert found.stdout.strip() == allowed, found.stderr


def test_unpublished_puts_write_in_place_and_never_through_a_link(local: LocalBackend, tmp_path: Path) -> None:
    """``unpublished`` (a new version's prefix): no temp file and no rename, the same results; a name an earlier
    attempt left is replaced, not written through (it may be a hard link to another version's object); a failed
    item leaves no object."""
    first, second = make_sources(tmp_path / "src", [10, 4096])
    local.put_many([Transfer("o/base/a", str(first))])
    local.copy_many([("o/base/a", "o/new/a")])  # Local copies by hard link
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    results = local.put_many(
        [Transfer("o/new/a", str(second)), Transfer("o/new/b", str(second)), Transfer("o/new/c", str(fifo))],
        unpublished=True,
    )
    assert [type(r.error) for r in results] == [type(None), type(None), LocalFileChanged]
    assert local.get_bytes("o/new/a") == local.get_bytes("o/new/b") == second.read_bytes()
    assert local.get_bytes("o/base/a") == first.read_bytes()  # the linked object of the base is untouched
    assert not (local.root / "o" / "new" / "c").exists() and temp_files(local.root) == []
    assert [r.size for r in results[:2]] == [4096, 4096]
