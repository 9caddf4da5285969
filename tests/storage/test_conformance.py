"""One conformance suite for every storage backend; each joins through ``STORES`` in storage_stores.py.

Every case runs against a real host: a local folder, a wsgidav server, moto's S3 server, rclone's rcd over a
local remote and over the WebDAV server, the published client's Digi and Goodrive hosts on rclone local stand-ins
(their services cannot be reached from here), and the hub's blob store.
"""

from __future__ import annotations

import hashlib
import os
import tracemalloc
from pathlib import Path

import pytest
from storage_stores import READ_ONLY_ID, StoreUnderTest

from oaiod.model import storage_key
from oaiod.storage.base import Backend
from oaiod.storage.errors import InvalidKey, ObjectNotFound, StoragePermissionDenied
from oaiod.storage.wrappers import LoggingBackend, WrapperConfig, wrap_backend

pytestmark = pytest.mark.integration

OAIO_ID = "app⫻alice﹫dev⁄name⁄20250101120000123456"
STAMP = "20250101120000123456"
MIB = 1024 * 1024


def write_random(path: Path, size: int) -> str:
    """Fill ``path`` with ``size`` random bytes, in chunks; the sha256 hex digest."""
    digest = hashlib.sha256()
    with open(path, "wb") as file:
        left = size
        while left:
            chunk = os.urandom(min(left, 4 * MIB))
            digest.update(chunk)
            file.write(chunk)
            left -= len(chunk)
    return digest.hexdigest()


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        while chunk := file.read(4 * MIB):
            digest.update(chunk)
    return digest.hexdigest()


def keys(backend: Backend, prefix: str = "") -> list[str]:
    return sorted(info.key for info in backend.list(prefix))


@pytest.mark.parametrize("size", [0, 1, 1000])
def test_small_binary_round_trip(backend: Backend, tmp_path: Path, size: int) -> None:
    source = tmp_path / "source"
    data = bytes(range(256)) * (size // 256) + bytes(range(size % 256))
    source.write_bytes(data)
    backend.put_file("a/object.bin", source)
    target = tmp_path / "target"
    backend.get_file("a/object.bin", target)
    assert target.read_bytes() == data
    assert backend.stat("a/object.bin").size == size
    assert backend.get_bytes("a/object.bin") == data


@pytest.mark.slow
def test_large_round_trip_in_bounded_memory(backend: Backend, tmp_path: Path) -> None:
    """64 MiB and a bit each way; Python's allocations stay far below the object size (tracemalloc peak)."""
    size = 64 * MIB + 12345
    source, target = tmp_path / "big", tmp_path / "big.back"
    expected = write_random(source, size)
    tracemalloc.start()
    try:
        backend.put_file("big/file.bin", source)
        _, put_peak = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        backend.get_file("big/file.bin", target)
        _, get_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert sha256_of(target) == expected
    assert backend.stat("big/file.bin").size == size
    assert put_peak < 64 * MIB, f"upload peaked at {put_peak / MIB:.1f} MiB of Python allocations"
    assert get_peak < 64 * MIB, f"download peaked at {get_peak / MIB:.1f} MiB of Python allocations"


def test_non_ascii_oaio_id_keys_round_trip_exactly(backend: Backend) -> None:
    names = ["ä ö ü ß.txt", "日本語/ファイル.dat", "emoji-🎉.bin", "spaces and ‘quotes’ ＂x＂ ﹕﹖.txt"]
    stored = {storage_key(OAIO_ID, STAMP, name): name.encode() for name in names}
    for key, data in stored.items():
        backend.put_bytes(key, data)
    assert keys(backend, OAIO_ID) == sorted(stored)
    for key, data in stored.items():
        assert backend.get_bytes(key) == data
        assert backend.stat(key).key == key


def test_deep_paths(backend: Backend) -> None:
    key = "/".join(f"level{i}" for i in range(12)) + "/leaf.txt"
    backend.put_bytes(key, b"deep")
    assert backend.get_bytes(key) == b"deep"
    assert keys(backend, "level0/level1") == [key]


def test_overwrite_replaces_the_content(backend: Backend) -> None:
    backend.put_bytes("x/y", b"first version, longer")
    backend.put_bytes("x/y", b"second")
    assert backend.get_bytes("x/y") == b"second"
    assert backend.stat("x/y").size == 6
    assert keys(backend, "x") == ["x/y"]


def test_list_by_prefix_is_by_folder_not_by_string(backend: Backend) -> None:
    for key in ("ab/1", "ab/sub/2", "abc/3", "a/4", "ab.txt"):
        backend.put_bytes(key, key.encode())
    assert keys(backend, "ab") == ["ab/1", "ab/sub/2"]
    assert keys(backend, "ab/") == ["ab/1", "ab/sub/2"]
    assert keys(backend, "a") == ["a/4"]
    assert keys(backend, "ab/sub") == ["ab/sub/2"]
    assert keys(backend, "missing") == []
    assert keys(backend) == ["a/4", "ab.txt", "ab/1", "ab/sub/2", "abc/3"]
    sizes = {info.key: info.size for info in backend.list("ab")}
    assert sizes == {"ab/1": 4, "ab/sub/2": 8}


def test_delete_key_and_prefix(backend: Backend) -> None:
    for key in ("d/1", "d/e/2", "d/e/3", "de/4"):
        backend.put_bytes(key, b"x")
    backend.delete("d/1")
    backend.delete("d/1")  # idempotent
    assert not backend.exists("d/1")
    assert keys(backend) == ["d/e/2", "d/e/3", "de/4"]
    backend.delete_prefix("d")
    backend.delete_prefix("d")  # idempotent
    assert keys(backend) == ["de/4"]
    with pytest.raises(InvalidKey):
        backend.delete_prefix("")


def test_copy(backend: Backend) -> None:
    backend.put_bytes("src/a", b"original")
    backend.put_bytes("dst/b", b"old content")
    backend.copy("src/a", "dst/b")
    backend.copy("src/a", f"{OAIO_ID}/{STAMP}/copy")
    assert backend.get_bytes("dst/b") == b"original"
    assert backend.get_bytes(f"{OAIO_ID}/{STAMP}/copy") == b"original"
    backend.put_bytes("src/a", b"changed")  # the copies do not follow (no shared inode written in place)
    assert backend.get_bytes("dst/b") == b"original"
    with pytest.raises(ObjectNotFound):
        backend.copy("src/missing", "dst/c")


def test_not_found(backend: Backend, tmp_path: Path) -> None:
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    with pytest.raises(ObjectNotFound):
        backend.get_file("no/such/key", downloads / "never")
    assert list(downloads.iterdir()) == []  # neither the target nor a partial download beside it
    with pytest.raises(ObjectNotFound):
        backend.stat("no/such/key")
    assert not backend.exists("no/such/key")
    backend.put_bytes("folder/file", b"x")
    with pytest.raises(ObjectNotFound):
        backend.stat("folder")  # a folder is not an object


@pytest.mark.parametrize("bad", ["/abs", "a/../b", "a//b", "a/./b", "tab\there", "back\\slash", "", "a/"])
def test_unsafe_keys_are_refused(backend: Backend, bad: str) -> None:
    with pytest.raises(InvalidKey):
        backend.put_bytes(bad, b"x")
    with pytest.raises(InvalidKey):
        backend.stat(bad)


def test_permission_denied(store: StoreUnderTest) -> None:
    denied = store.denied()
    try:
        with pytest.raises(StoragePermissionDenied):
            denied.put_bytes(f"{READ_ONLY_ID}/key", b"x")
    finally:
        denied.close()


def test_transient_failure_is_absorbed_by_retry(store: StoreUnderTest) -> None:
    """See conftest: a fault proxy answers 503 to the first connection (HTTP hosts), else FailOnceBackend."""
    flaky, faults = store.faulty()
    try:
        flaky.put_bytes("retry/key", b"made it")
        assert flaky.get_bytes("retry/key") == b"made it"
    finally:
        flaky.close()
    assert faults() == 1


def test_upstream_layout(store: StoreUnderTest, backend: Backend) -> None:
    """Objects lie at ``<oaio_id>/<client_stamp>/<path>`` on the host, where the published client looks."""
    key = storage_key(OAIO_ID, STAMP, "sub dir/file ä.txt")
    backend.put_bytes(key, b"layout")
    assert store.read_native(f"{OAIO_ID}/{STAMP}/sub dir/file ä.txt") == b"layout"


# -- copy_many --------------------------------------------------------------------------------------------------

NEXT_STAMP = "20250101120000123457"


def test_copy_many_copies_every_pair(backend: Backend) -> None:
    """A version's worth of pairs: non-ASCII paths, one source copied to several destinations, an existing
    destination replaced; progress counts every pair; a second call with the same pairs changes nothing."""
    names = [f"d{i % 3}/file {i} ä.txt" for i in range(24)] + ["日本語/ファイル.dat", "emoji-🎉.bin"]
    sources = {name: storage_key(OAIO_ID, STAMP, name) for name in names}
    for name, key in sources.items():
        backend.put_bytes(key, name.encode())
    pairs = [(key, storage_key(OAIO_ID, NEXT_STAMP, name)) for name, key in sources.items()]
    pairs += [(sources[names[0]], storage_key(OAIO_ID, NEXT_STAMP, f"renamed {i}/ü")) for i in range(3)]
    backend.put_bytes(pairs[1][1], b"an older object at a destination")
    done: list[int] = []
    backend.copy_many(iter(pairs), progress=done.append)
    assert sum(done) == len(pairs)
    for src, dst in pairs:
        assert backend.get_bytes(dst) == backend.get_bytes(src)
    assert len(keys(backend, f"{OAIO_ID}/{NEXT_STAMP}")) == len(pairs)
    backend.copy_many(pairs)  # idempotent
    assert len(keys(backend, f"{OAIO_ID}/{NEXT_STAMP}")) == len(pairs)
    backend.put_bytes(sources[names[0]], b"changed")  # the copies do not follow
    assert backend.get_bytes(storage_key(OAIO_ID, NEXT_STAMP, "renamed 0/ü")) == names[0].encode()


def test_copy_many_of_nothing_does_nothing(backend: Backend) -> None:
    backend.copy_many([])
    backend.copy_many(iter(()), progress=lambda count: None)
    assert keys(backend) == []


def test_copy_many_with_a_missing_source_names_it(backend: Backend) -> None:
    backend.put_bytes("src/a", b"a")
    backend.put_bytes("src/b", b"b")
    pairs = [("src/a", "dst/a"), ("src/missing ä", "dst/m"), ("src/b", "dst/b")]
    with pytest.raises(ObjectNotFound) as caught:
        backend.copy_many(pairs)
    assert caught.value.key == "src/missing ä"
    assert not backend.exists("dst/m")
    backend.copy_many([pair for pair in pairs if pair[0] != "src/missing ä"])  # finishing the job later works
    assert backend.get_bytes("dst/b") == b"b"


@pytest.mark.parametrize(
    "pairs",
    [
        [("src/a", "dst/x"), ("src/a", "dst/x")],  # a destination twice
        [("src/a", "dst/x"), ("dst/x", "dst/y")],  # a destination that is also a source
        [("src/a", "dst/ok"), ("src/a", "../escape")],
        [("src/a", "dst/ok"), ("/abs", "dst/z")],
        [("src/a",)],
    ],
)
def test_copy_many_refuses_bad_pairs_before_copying(backend: Backend, pairs: list[tuple[str, ...]]) -> None:
    backend.put_bytes("src/a", b"a")
    with pytest.raises(InvalidKey):
        backend.copy_many(pairs)  # type: ignore[arg-type]
    assert keys(backend) == ["src/a"]


def test_copy_many_through_the_wrappers(store: StoreUnderTest) -> None:
    """The daemon's wrapped backend: one timing for the batch, whether the host copies in batches or by pair."""
    wrapped = wrap_backend(store.make(), WrapperConfig(attempts=2, backoff_base=0.01))
    try:
        for number in range(5):
            wrapped.put_bytes(f"src/{number}", bytes([number]))
        wrapped.copy_many([(f"src/{number}", f"dst/ä {number}") for number in range(5)])
        assert [wrapped.get_bytes(f"dst/ä {number}") for number in range(5)] == [bytes([n]) for n in range(5)]
        with pytest.raises(ObjectNotFound):
            wrapped.copy_many([("src/0", "dst/again"), ("src/none", "dst/none")])
        assert isinstance(wrapped, LoggingBackend)
        batches = [timing for timing in wrapped.timings if timing.operation == "copy_many"]
        assert [timing.error for timing in batches] == [None, "ObjectNotFound"]
        assert not [timing for timing in wrapped.timings if timing.operation == "copy"]
    finally:
        wrapped.close()


# -- copy_prefix ------------------------------------------------------------------------------------------------


def test_copy_prefix_carries_a_version_but_the_excluded_keys(backend: Backend) -> None:
    """A version carried forward: every file at the same relative key but the excluded ones (non-ASCII, nested, an
    exclude naming nothing ignored); a folder beside the source (``a/bc`` next to ``a/b``) is not copied; objects
    already at the destination stay; a second call changes nothing and counts the same; the copies outlive the
    deletion of the source folder (the gc of an old version)."""
    names = [f"d{i % 3}/file {i} ä.txt" for i in range(12)] + ["日本語/ファイル.dat", "emoji-🎉.bin"]
    src, dst = storage_key(OAIO_ID, STAMP), storage_key(OAIO_ID, NEXT_STAMP)
    for name in names:
        backend.put_bytes(f"{src}/{name}", name.encode())
    backend.put_bytes(f"{src}1/beside", b"not in the folder")
    backend.put_bytes(f"{dst}/already there", b"stays")
    exclude = {names[0], names[5], "日本語/ファイル.dat", "no such file"}
    assert backend.copy_prefix(src, dst, exclude=exclude) == len(names) - 3
    carried = sorted(key[len(dst) + 1 :] for key in keys(backend, dst))
    assert carried == sorted([name for name in names if name not in exclude] + ["already there"])
    assert backend.copy_prefix(src, dst, exclude=exclude) == len(names) - 3  # idempotent
    assert len(keys(backend, dst)) == len(carried)
    backend.delete_prefix(src)
    for name in names[1:5]:
        assert backend.get_bytes(f"{dst}/{name}") == name.encode()


def test_copy_prefix_of_a_missing_folder_copies_nothing(backend: Backend) -> None:
    assert backend.copy_prefix("nothing/here", "dst/x") == 0
    assert keys(backend) == []


@pytest.mark.parametrize(
    ("src", "dst"), [("a/b", "a/b"), ("a/b", "a/b/c"), ("a/b/c", "a/b"), ("", "a"), ("a", "../x"), ("/a", "b")]
)
def test_copy_prefix_refuses_overlapping_or_unsafe_folders(backend: Backend, src: str, dst: str) -> None:
    backend.put_bytes("a/b/c/d", b"d")
    with pytest.raises(InvalidKey):
        backend.copy_prefix(src, dst)
    assert keys(backend) == ["a/b/c/d"]


def test_copy_prefix_through_the_wrappers(store: StoreUnderTest) -> None:
    """The daemon's wrapped backend: the host's own copy_prefix as one logged call where it has one, else the
    default through the wrappers (a listing and one copy_many)."""
    wrapped = wrap_backend(store.make(), WrapperConfig(attempts=2, backoff_base=0.01))
    try:
        for number in range(5):
            wrapped.put_bytes(f"src/{number}", bytes([number]))
        assert wrapped.copy_prefix("src", "dst", exclude={"2"}) == 4
        assert sorted(keys(wrapped, "dst")) == [f"dst/{number}" for number in (0, 1, 3, 4)]
        assert isinstance(wrapped, LoggingBackend)
        operations = {timing.operation for timing in wrapped.timings}
        assert ("copy_prefix" in operations) == wrapped.capabilities.prefix_copy
    finally:
        wrapped.close()
