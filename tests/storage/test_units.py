"""Unit tests of the storage plumbing: keys, argument checks, registry, wrappers (no servers)."""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from oaiod.errors import ConfigError, ValidationError
from oaiod.secrets import Secret
from oaiod.storage import fsops, registry
from oaiod.storage.base import Backend, ObjectInfo, PathLike, Progress
from oaiod.storage.errors import InvalidKey, PermanentStorageError, StorageError, TransientStorageError
from oaiod.storage.keys import is_under, validate_key, validate_prefix
from oaiod.storage.local import LocalBackend
from oaiod.storage.wrappers import (
    BandwidthLimitedBackend,
    ConcurrencyLimitedBackend,
    LoggingBackend,
    RetryingBackend,
    WrapperConfig,
    wrap_backend,
)

MIB = 1024 * 1024


# -- keys -------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "key", ["a", "a/b/c", "app⫻alice﹫dev⁄x/20250101120000123456/f ä.txt", ".hidden/x", "a/x.oaiod-tmp-1/y.oaiod-tmp-"]
)
def test_valid_keys(key: str) -> None:
    assert validate_key(key) == key


@pytest.mark.parametrize("key", ["", "/a", "a/", "a//b", "./a", "a/../b", "..", "a\\b", "a\x00b", "a\nb", "C:x",
                                 ".oaiod-tmp-1234", "a/.oaiod-tmp-x/b", 5, None])  # fmt: skip
def test_invalid_keys(key: Any) -> None:
    with pytest.raises(InvalidKey) as caught:
        validate_key(key)
    assert isinstance(caught.value, ValidationError) and isinstance(caught.value, StorageError)


def test_prefixes() -> None:
    assert validate_prefix("") == ""
    assert validate_prefix("a/b/") == "a/b"
    assert is_under("a/b/c", "a/b") and not is_under("a/bc", "a/b") and is_under("x", "")
    with pytest.raises(InvalidKey):
        validate_prefix("/")


# -- arguments ----------------------------------------------------------------------------------------------------


def test_unknown_and_missing_arguments_name_the_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="root_folder"):
        LocalBackend.from_args({})
    with pytest.raises(ConfigError, match="colour"):
        LocalBackend.from_args({"root_folder": str(tmp_path), "colour": "blue"})
    with pytest.raises(ConfigError, match="root_folder"):
        LocalBackend.from_args({"root_folder": str(tmp_path / "not-mounted")})


def test_webdav_arguments(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from oaiod.storage.webdav import WebDavBackend

    with pytest.raises(ConfigError, match="plain HTTP"):
        WebDavBackend.from_args({"url": "http://dav.example.org"})
    assert WebDavBackend.from_args({"url": "http://dav.example.org", "allow_http": "true"})
    with pytest.raises(ConfigError, match="password"):
        WebDavBackend.from_args({"url": "https://dav.example.org", "username": "bob"})
    monkeypatch.setenv("DAV_PASS", "s3cret")
    backend = WebDavBackend.from_args({"url": "https://127.0.0.1/", "username": "bob", "password_env": "DAV_PASS"})
    assert backend.session.auth == ("bob", "s3cret")
    assert "s3cret" not in backend.describe() + repr(backend)
    secret_file = tmp_path / "pass"
    secret_file.write_text("from-file\n")
    secret_file.chmod(0o600)
    backend = WebDavBackend.from_args({"url": "https://h", "username": "bob", "password_file": str(secret_file)})
    assert backend.session.auth == ("bob", "from-file")
    assert WebDavBackend.from_args({"url": "https://h", "username": "b", "password": Secret("x")}).session.auth


def test_s3_arguments() -> None:
    from oaiod.storage.s3 import S3Backend

    with pytest.raises(ConfigError, match="bucket"):
        S3Backend.from_args({"endpoint_url": "https://s3.example.org"})
    with pytest.raises(ConfigError, match="secret_access_key"):
        S3Backend.from_args({"bucket": "b", "access_key_id": "AKIA"})
    with pytest.raises(ConfigError, match="plain HTTP"):
        S3Backend.from_args({"bucket": "b", "endpoint_url": "http://minio.lan:9000"})
    backend = S3Backend.from_args({"bucket": "b", "endpoint_url": "http://[::1]:9000", "prefix": "/p/q/"})
    assert backend.prefix == "p/q"


def test_rclone_arguments(monkeypatch: pytest.MonkeyPatch) -> None:
    from oaiod.storage import rclone

    with pytest.raises(ConfigError, match="remote"):
        rclone.RcloneBackend.from_args({"remote": "no-colon"})
    with pytest.raises(ConfigError, match="password"):
        rclone.RcloneBackend.from_args({"remote": ":webdav,url=x,pass=abc:"})
    assert rclone.password_env_name(':webdav,url="http://h/":') == "RCLONE_WEBDAV_PASS"
    assert rclone.password_env_name("my-nas:") == "RCLONE_CONFIG_MY_NAS_PASS"
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(ConfigError, match="apt-get install rclone"):
        rclone.RcloneBackend.from_args({"remote": ":local:"})


def test_rclone_error_text_is_mapped() -> None:
    from oaiod.storage import errors, rclone

    cases = {
        "object not found": errors.ObjectNotFound,
        "read metadata failed: 401 Not Authorized": errors.StoragePermissionDenied,
        "open /x: permission denied": errors.StoragePermissionDenied,
        "quota exceeded": errors.QuotaExceeded,
        "dial tcp: connection refused": errors.TransientStorageError,
        "503 Service Unavailable": errors.TransientStorageError,
        "something odd": errors.PermanentStorageError,
    }
    for text, expected in cases.items():
        assert type(rclone.translate_rclone_error(text, "k", "cannot")) is expected, text


# -- registry -------------------------------------------------------------------------------------------------


def install_entry_points(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, lines: str) -> None:
    """A real installed distribution (a .dist-info on sys.path) declaring ``oaiod.storage`` entry points."""
    info = tmp_path / "thirdparty_oaiod_backend-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: thirdparty-oaiod-backend\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(f"[oaiod.storage]\n{lines}\n")
    (tmp_path / "thirdparty_backend.py").write_text(
        "from oaiod.storage.local import LocalBackend\n\n"
        "class NasBackend(LocalBackend):\n    csh_id = 'Nas'\n\n"
        "class NotABackend:\n    pass\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))


def test_builtin_ids_and_lazy_hub_slot() -> None:
    assert set(registry.BUILTIN) == {"Local", "Hub", "WebDav", "S3", "Rclone", "Digi", "Goodrive"}
    assert registry.BUILTIN["Hub"] == "oaiod.storage.hub:HubBackend"
    assert registry.backend_class("Local") is LocalBackend
    with pytest.raises(ConfigError, match="unknown storage host 'Dropbox'"):
        registry.backend_class("Dropbox")


def test_third_party_backend_through_entry_points(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    install_entry_points(
        tmp_path, monkeypatch, "Nas = thirdparty_backend:NasBackend\nOdd = thirdparty_backend:NotABackend"
    )
    root = tmp_path / "nas"
    root.mkdir()
    backend = registry.open_backend("Nas", {"root_folder": str(root)})
    backend.put_bytes("k", b"v")
    assert (root / "k").read_bytes() == b"v"
    with pytest.raises(ConfigError, match="not a storage Backend"):
        registry.backend_class("Odd")


def test_duplicate_id_is_an_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    install_entry_points(tmp_path, monkeypatch, "Local = thirdparty_backend:NasBackend")
    with pytest.raises(ConfigError, match="registered twice"):
        registry.backend_class("WebDav")


def test_missing_extra_names_the_install_command(monkeypatch: pytest.MonkeyPatch) -> None:
    """boto3 is installed here, so its absence is simulated by blocking the import."""
    monkeypatch.setitem(sys.modules, "boto3", None)
    monkeypatch.delitem(sys.modules, "oaiod.storage.s3", raising=False)
    with pytest.raises(ConfigError, match=r"pip install 'oaiod\[s3\]'"):
        registry.backend_class("S3")


# -- wrappers -------------------------------------------------------------------------------------------------


class ScriptedBackend(Backend):
    """A backend whose ``stat`` raises the scripted errors in turn, then answers; counts calls."""

    csh_id = "Scripted"

    def __init__(self, errors: list[StorageError] | None = None, on_call: Callable[[], None] | None = None) -> None:
        self.errors = list(errors or [])
        self.calls = 0
        self.on_call = on_call

    @classmethod
    def from_args(cls, args: Any) -> Backend:
        return cls()

    def stat(self, key: str) -> ObjectInfo:
        self.calls += 1
        if self.on_call:
            self.on_call()
        if self.errors:
            raise self.errors.pop(0)
        return ObjectInfo(key, 1)

    def put_file(self, key: str, local_path: PathLike, *, progress: Progress | None = None) -> None:
        raise NotImplementedError

    def get_file(self, key: str, local_path: PathLike, *, progress: Progress | None = None, fsync: bool = True) -> None:
        raise NotImplementedError

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        yield ObjectInfo("a", 1)

    def delete(self, key: str) -> None:
        raise NotImplementedError


def test_retry_absorbs_transient_errors() -> None:
    inner = ScriptedBackend([TransientStorageError("503"), TransientStorageError("reset")])
    assert RetryingBackend(inner, attempts=3, backoff_base=0.001).stat("k").size == 1
    assert inner.calls == 3
    listing = ScriptedBackend([TransientStorageError("503")])
    assert [i.key for i in RetryingBackend(listing, attempts=2, backoff_base=0.001).list()] == ["a"]


def test_retry_stops_at_once_on_permanent_errors() -> None:
    inner = ScriptedBackend([PermanentStorageError("400"), TransientStorageError("never reached")])
    with pytest.raises(PermanentStorageError):
        RetryingBackend(inner, attempts=5, backoff_base=0.001).stat("k")
    assert inner.calls == 1


def test_retry_gives_up_after_its_attempts() -> None:
    inner = ScriptedBackend([TransientStorageError(str(n)) for n in range(10)])
    with pytest.raises(TransientStorageError):
        RetryingBackend(inner, attempts=3, backoff_base=0.001).stat("k")
    assert inner.calls == 3


def test_concurrency_limit_caps_parallel_calls() -> None:
    lock, running, peak = threading.Lock(), [0], [0]

    def on_call() -> None:
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        time.sleep(0.02)
        with lock:
            running[0] -= 1

    limited = ConcurrencyLimitedBackend(ScriptedBackend(on_call=on_call), 2)
    threads = [threading.Thread(target=limited.stat, args=("k",)) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert peak[0] == 2


def test_bandwidth_limit_slows_transfers_loosely(tmp_path: Path) -> None:
    """6 MiB at 4 MiB/s with a one-second burst cannot finish in less than 0.5 s (a lower bound only)."""
    root = tmp_path / "root"
    root.mkdir()
    source = tmp_path / "six"
    source.write_bytes(b"\0" * 6 * MIB)
    limited = BandwidthLimitedBackend(LocalBackend(root), upload=4 * MIB, download=4 * MIB)
    started = time.monotonic()
    limited.put_file("six", source)
    limited.get_file("six", tmp_path / "back")
    assert time.monotonic() - started >= 0.9
    assert (tmp_path / "back").stat().st_size == 6 * MIB


def test_logging_keeps_timings_and_logs_one_line_per_call(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    root = tmp_path / "root"
    root.mkdir()
    backend = wrap_backend(LocalBackend(root), WrapperConfig())
    assert isinstance(backend, LoggingBackend)
    caplog.set_level(logging.DEBUG, logger="oaiod.storage.wrappers")
    backend.put_bytes("a/b", b"12345")
    (small_put,) = [r for r in caplog.records if "'a/b'" in r.getMessage()]
    assert small_put.levelno == logging.DEBUG  # only big transfers are INFO news
    with pytest.raises(StorageError):
        backend.get_bytes("missing")
    lines = [r.getMessage() for r in caplog.records if r.name == "oaiod.storage.wrappers"]
    assert any("put" in line and "'a/b'" in line and "5 bytes" in line for line in lines)
    assert any("get" in line and "'missing'" in line and "failed" in line for line in lines)
    assert [(t.operation, t.key, t.nbytes, t.error) for t in backend.timings] == [
        ("put", "a/b", 5, None),
        ("get", "missing", 0, "ObjectNotFound"),
    ]
    assert backend.capabilities.server_side_copy


# -- durability: flush() ------------------------------------------------------------------------------------------


def test_local_flush_makes_writes_durable_and_passes_through_wrappers(tmp_path: Path) -> None:
    """A put is visible at once; the Local backend owes a sync until flush(), which reaches it through every
    wrapper (the base passes flush on to what ``unwrap()`` names). The sync itself cannot be observed without a
    power cut: the test checks the bookkeeping, and that the sync runs without error on this filesystem."""
    local = LocalBackend(tmp_path)
    backend = wrap_backend(local, WrapperConfig())
    source = tmp_path / "src.bin"
    source.write_bytes(b"x" * 100)
    backend.put_file("o/1/a", source)
    backend.copy("o/1/a", "o/2/a")
    assert backend.get_bytes("o/2/a") == b"x" * 100  # visible before any flush
    assert local._unsynced >= {str(tmp_path / "o/1/a"), str(tmp_path / "o/2/a"), str(tmp_path / "o/1")}
    backend.flush()
    assert local._unsynced == set()
    backend.put_file("o/1/a", source)  # replacing an object: fsynced before the rename, synced again at close
    backend.close()
    assert local._unsynced == set()


def test_flush_default_does_nothing_for_hosts_that_are_durable_at_put() -> None:
    class Durable(Backend):
        csh_id = "Durable"

        @classmethod
        def from_args(cls, args: Any) -> Backend:
            return cls()

        def put_file(self, key: str, local_path: PathLike, *, progress: Progress | None = None) -> None: ...
        def get_file(
            self, key: str, local_path: PathLike, *, progress: Progress | None = None, fsync: bool = True
        ) -> None: ...
        def stat(self, key: str) -> ObjectInfo:
            return ObjectInfo(key, 0)

        def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
            return iter(())

        def delete(self, key: str) -> None: ...

    Durable().flush()
    wrap_backend(Durable(), WrapperConfig()).flush()


def test_get_file_leaves_the_fsync_to_a_caller_who_asks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With fsync=False get_file still writes through a temp file and a rename, without an fsync.
    (fsync is counted through os.fsync: there is no other way to see whether a sync happened.)"""
    from oaiod.storage import toolkit

    backend = LocalBackend(tmp_path)
    backend.put_bytes("k", b"data")
    calls: list[int] = []
    real_fsync = toolkit.os.fsync
    monkeypatch.setattr(toolkit.os, "fsync", lambda fd: calls.append(fd) or real_fsync(fd))
    backend.get_file("k", tmp_path / "plain")
    assert len(calls) == 1
    backend.get_file("k", tmp_path / "deferred", fsync=False)
    assert len(calls) == 1 and (tmp_path / "deferred").read_bytes() == b"data"
    assert fsops.sync_filesystem(tmp_path) in (True, False)


def test_local_put_into_a_folder_deleted_by_someone_else(tmp_path: Path) -> None:
    """Local remembers the folders it made until the next flush; one removed behind its back is made again, and a
    symlink put in its place that leads out of the root is still refused."""
    import shutil

    from oaiod.storage.errors import StoragePermissionDenied

    store, outside = tmp_path / "store", tmp_path / "outside"
    store.mkdir()
    outside.mkdir()
    backend = LocalBackend(store)
    backend.put_bytes("o/1/a", b"a")
    shutil.rmtree(store / "o" / "1")  # another device's garbage collection
    backend.put_bytes("o/1/b", b"b")
    assert backend.get_bytes("o/1/b") == b"b"
    shutil.rmtree(store / "o" / "1")
    (store / "o" / "1").symlink_to(outside)
    with pytest.raises(StoragePermissionDenied):
        backend.put_bytes("o/1/c", b"c")
    assert list(outside.iterdir()) == []


def test_unwrap_walks_a_wrapper_stack_down_to_the_backend(tmp_path: Path) -> None:
    from oaiod.storage.local import LocalBackend
    from oaiod.storage.wrappers import WrapperConfig, wrap_backend

    inner = LocalBackend(tmp_path)
    chain = [wrap_backend(inner, WrapperConfig(attempts=2, max_connections=2, upload_limit=1 << 20))]
    while (below := chain[-1].unwrap()) is not None:
        chain.append(below)
    assert chain[-1] is inner and len(chain) > 2


def test_a_download_writer_keeps_the_order_and_hands_a_disk_error_to_the_downloading_thread() -> None:
    """The Hub host's write-behind thread (a download's disk writes overlap its receiving): blocks land in order,
    and a write that fails (a full disk, here a file that raises) is raised to the caller, not lost in the thread."""
    import io

    from oaiod.storage.hub.backend import _WriteBehind

    file = io.BytesIO()
    writer = _WriteBehind(file)
    for number in range(100):
        writer.write(bytes([number]) * 1000)
    writer.close()
    assert file.getvalue() == b"".join(bytes([number]) * 1000 for number in range(100))

    class Full(io.BytesIO):
        def write(self, data: Any) -> int:
            raise OSError(28, "No space left on device")

    writer = _WriteBehind(Full())
    writer.write(b"x")
    with pytest.raises(OSError, match="No space"):
        for _ in range(100):  # a later write raises once the thread failed; close raises at the latest
            writer.write(b"y")
        writer.close()
    writer.close(quiet=True)  # what get_file does after an error: the thread ends
