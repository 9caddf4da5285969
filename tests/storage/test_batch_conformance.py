"""put_many/get_many in the conformance suite: every backend (its own batch transfers or the base's item-by-item
defaults) keeps the same contract, on its real host. See test_conformance.py for the servers."""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

import pytest
from storage_stores import StoreUnderTest

from oaiod.model import storage_key
from oaiod.storage.base import Backend, Transfer
from oaiod.storage.errors import InvalidKey, LocalFileChanged, ObjectNotFound
from oaiod.storage.toolkit import UMASK
from oaiod.storage.wrappers import LoggingBackend, WrapperConfig, wrap_backend

pytestmark = pytest.mark.integration

OAIO_ID = "app⫻alice﹫dev⁄name⁄20250101120000123456"
STAMP = "20250101120000123456"
MIB = 1024 * 1024
SIZES = {"empty": 0, "one byte": 1, "page ä.txt": 4096, "odd/size.bin": 100_003, "big/over 8 MiB.bin": 8 * MIB + 7}
MTIME_NS = 1_600_000_000_123_456_789


def make_files(folder: Path, sizes: dict[str, int]) -> dict[str, bytes]:
    """Files of random content under ``folder`` (names may hold folders); name -> content."""
    contents = {}
    for name, size in sizes.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        contents[name] = os.urandom(size)
        path.write_bytes(contents[name])
    return contents


@pytest.mark.parametrize("unpublished", [False, True], ids=["atomic", "unpublished"])
def test_round_trip_of_mixed_sizes(backend: Backend, tmp_path: Path, unpublished: bool) -> None:
    """Results in order with the local file's stat on put (also for a new version's ``unpublished`` prefix); on get
    new files with the content, sha256, mtime and mode asked for, and their stat; progress adds up to the bytes
    moved."""
    contents = make_files(tmp_path / "src", SIZES)
    names = list(SIZES)
    items = [Transfer(storage_key(OAIO_ID, STAMP, name), str(tmp_path / "src" / name)) for name in names]
    moved: list[int] = []
    results = backend.put_many(items, progress=moved.append, unpublished=unpublished)
    assert [result.key for result in results] == [item.key for item in items]
    for name, item, result in zip(names, items, results, strict=True):
        assert result.error is None, result.error
        info = os.stat(item.local_path)
        assert (result.size, result.mtime_ns, result.inode) == (info.st_size, info.st_mtime_ns, info.st_ino)
        assert result.sha256 in (None, hashlib.sha256(contents[name]).hexdigest())
        assert backend.stat(item.key).size == SIZES[name]
    assert sum(moved) == sum(SIZES.values())

    back = tmp_path / "back"
    back.mkdir()
    gets = [
        Transfer(item.key, str(back / f"{number}"), mtime_ns=MTIME_NS + number, executable=number % 2 == 1)
        for number, item in enumerate(items)
    ]
    moved.clear()
    results = backend.get_many(gets, progress=moved.append)
    assert [result.key for result in results] == [item.key for item in gets]
    for name, item, result in zip(names, gets, results, strict=True):
        assert result.error is None, result.error
        path = Path(item.local_path)
        assert path.read_bytes() == contents[name]
        assert result.sha256 == hashlib.sha256(contents[name]).hexdigest()
        info = path.stat()
        assert (result.size, result.mtime_ns, result.inode) == (info.st_size, info.st_mtime_ns, info.st_ino)
        assert info.st_mtime_ns == item.mtime_ns
        assert stat.S_IMODE(info.st_mode) == (0o777 if item.executable else 0o666) & ~UMASK
    assert sum(moved) == sum(SIZES.values())
    assert sorted(os.listdir(back)) == sorted(str(number) for number in range(len(gets)))  # no temp files left


def test_get_without_mtime_keeps_the_time_of_writing(backend: Backend, tmp_path: Path) -> None:
    backend.put_bytes("k/a", b"abc")
    (result,) = backend.get_many([Transfer("k/a", str(tmp_path / "a"))])
    assert result.error is None and result.mtime_ns == (tmp_path / "a").stat().st_mtime_ns
    assert stat.S_IMODE((tmp_path / "a").stat().st_mode) == 0o666 & ~UMASK


def test_items_fail_one_by_one(backend: Backend, tmp_path: Path) -> None:
    """A missing local file (put), a missing key and an existing local path (get) fail alone; an existing local
    path is left untouched and a failed item leaves no file."""
    make_files(tmp_path / "src", {"a": 10, "b": 20})
    results = backend.put_many(
        [
            Transfer("k/a", str(tmp_path / "src" / "a")),
            Transfer("k/missing", str(tmp_path / "src" / "no such file")),
            Transfer("k/folder", str(tmp_path / "src")),
            Transfer("k/b", str(tmp_path / "src" / "b")),
        ]
    )
    assert [type(result.error) for result in results] == [type(None), LocalFileChanged, LocalFileChanged, type(None)]
    assert [result.key for result in results] == ["k/a", "k/missing", "k/folder", "k/b"]
    assert not backend.exists("k/missing") and not backend.exists("k/folder")

    back = tmp_path / "back"
    back.mkdir()
    (back / "taken").write_bytes(b"the user's file")
    results = backend.get_many(
        [
            Transfer("k/a", str(back / "a")),
            Transfer("k/none", str(back / "none")),
            Transfer("k/b", str(back / "taken")),
            Transfer("k/missing 2", str(back / "m2")),
        ]
    )
    assert [type(result.error) for result in results] == [type(None), ObjectNotFound, LocalFileChanged, ObjectNotFound]
    assert (back / "taken").read_bytes() == b"the user's file"
    assert sorted(os.listdir(back)) == ["a", "taken"]


@pytest.mark.parametrize(
    "keys",
    [["k/ok", "../escape"], ["k/ok", "/abs"], ["k/ok", "k/ok"], ["k/ok", "a/.oaiod-tmp-x"]],
    ids=["dotdot", "absolute", "twice", "temp name"],
)
def test_a_bad_key_fails_the_whole_call_before_anything_moves(
    backend: Backend, tmp_path: Path, keys: list[str]
) -> None:
    make_files(tmp_path / "src", {"f": 5})
    with pytest.raises(InvalidKey):
        backend.put_many([Transfer(key, str(tmp_path / "src" / "f")) for key in keys])
    assert not backend.exists("k/ok")
    backend.put_bytes("k/ok", b"there")
    with pytest.raises(InvalidKey):
        backend.get_many([Transfer(key, str(tmp_path / f"back {n}")) for n, key in enumerate(keys)])
    assert not (tmp_path / "back 0").exists()


def test_empty_batches(backend: Backend) -> None:
    assert backend.put_many([]) == []
    assert backend.get_many([], progress=lambda amount: None) == []


def test_two_thousand_items(backend: Backend, tmp_path: Path) -> None:
    """A batch as the engine sends them, in several folders; every item back in order. A host without batch
    transfers (the base's defaults: one put_file/get_file per item) gets 200 items: its per-item path behaves the
    same at any size, and 2,000 requests one by one took up to two minutes (rclone over WebDAV)."""
    count = 2000 if backend.capabilities.batch_transfer else 200
    src = tmp_path / "src"
    src.mkdir()
    for number in range(count):
        (src / str(number)).write_bytes(b"%d" % number)
    items = [Transfer(storage_key(OAIO_ID, STAMP, f"d{n % 7}/f {n}"), str(src / str(n))) for n in range(count)]
    results = backend.put_many(items)
    assert [(r.key, r.error) for r in results] == [(item.key, None) for item in items]
    back = tmp_path / "back"
    back.mkdir()
    results = backend.get_many([Transfer(item.key, str(back / str(n))) for n, item in enumerate(items)])
    assert [r.error for r in results] == [None] * count
    assert all(r.sha256 == hashlib.sha256(b"%d" % n).hexdigest() for n, r in enumerate(results))
    assert (back / str(count - 1)).read_bytes() == b"%d" % (count - 1)


def test_batches_through_the_wrappers(store: StoreUnderTest, tmp_path: Path) -> None:
    """The daemon's wrapped backend: one timing per batch, whether the host transfers in batches or by item."""
    wrapped = wrap_backend(store.make(), WrapperConfig(attempts=2, backoff_base=0.01))
    try:
        make_files(tmp_path / "src", {"a": 3, "b": 4})
        results = wrapped.put_many([Transfer(f"w/{n}", str(tmp_path / "src" / n)) for n in "ab"])
        assert [r.error for r in results] == [None, None]
        results = wrapped.get_many([Transfer(f"w/{n}", str(tmp_path / f"back {n}")) for n in "ab"])
        assert [r.size for r in results] == [3, 4]
        assert isinstance(wrapped, LoggingBackend)
        assert [(t.operation, t.nbytes) for t in wrapped.timings] == [("put_many", 7), ("get_many", 7)]
    finally:
        wrapped.close()
