"""put_many/get_many through the wrappers: one line and one timing per batch, retries of only the items that
failed transiently on a batch host, item by item on any other host.

The failures are injected by small backends wrapped around a real :class:`LocalBackend` (there is no transport
under a local folder to break): :class:`FlakyBatchBackend` gives chosen items a transient error the first time it
sees them, :class:`PerItemBackend` is a host without batch transfers that fails one ``put_file``/``get_file`` once.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import pytest

from oaiod.storage.base import Capabilities, PathLike, Progress, Transfer, Transferred
from oaiod.storage.errors import LocalFileChanged, StoragePermissionDenied, TransientStorageError
from oaiod.storage.local import LocalBackend
from oaiod.storage.wrappers import BandwidthLimitedBackend, LoggingBackend, TokenBucket, WrapperConfig, wrap_backend

MIB = 1024 * 1024
FAST_RETRY = WrapperConfig(attempts=3, backoff_base=0.001)


class FlakyBatchBackend(LocalBackend):
    """A batch host (real Local underneath) whose ``put_many``/``get_many`` give the keys in ``flaky`` a transient
    error the first ``times`` calls that carry them, and can raise a whole-call error once; records each batch."""

    capabilities = replace(LocalBackend.capabilities, batch_transfer=True)

    def __init__(self, root: Path, flaky: set[str], times: int = 1, raise_first: Exception | None = None) -> None:
        super().__init__(root)
        self.flaky, self.times, self.raise_first = flaky, times, raise_first
        self.batches: list[list[str]] = []
        self.seen: dict[str, int] = {}

    def _flaky(self, items: Sequence[Transfer], real: list[Transferred]) -> list[Transferred]:
        self.batches.append([item.key for item in items])
        if self.raise_first is not None:
            error, self.raise_first = self.raise_first, None
            raise error
        results = []
        for item, result in zip(items, real, strict=True):
            count = self.seen[item.key] = self.seen.get(item.key, 0) + 1
            if item.key in self.flaky and count <= self.times:
                result = Transferred(item.key, error=TransientStorageError("injected", key=item.key))
            results.append(result)
        return results

    def put_many(
        self, items: Sequence[Transfer], *, progress: Progress | None = None, unpublished: bool = False
    ) -> list[Transferred]:
        return self._flaky(items, super().put_many(items, progress=progress, unpublished=unpublished))

    def get_many(self, items: Sequence[Transfer], *, progress: Progress | None = None) -> list[Transferred]:
        # a transiently failed get leaves no file: only the items that will succeed are really fetched
        keep = [item for item in items if item.key not in self.flaky or self.seen.get(item.key, 0) >= self.times]
        fetched = dict(zip((i.key for i in keep), super().get_many(keep, progress=progress), strict=True))
        placeholder = Transferred("", error=TransientStorageError("not fetched"))
        return self._flaky(items, [fetched.get(item.key, placeholder) for item in items])


class PerItemBackend(LocalBackend):
    """A host without batch transfers (real Local underneath) whose first put_file/get_file of ``flaky`` fails."""

    capabilities = replace(LocalBackend.capabilities, batch_transfer=False, max_connections=2)

    def __init__(self, root: Path, flaky: str) -> None:
        super().__init__(root)
        self.flaky, self.calls = flaky, []

    def _maybe_fail(self, op: str, key: str) -> None:
        self.calls.append((op, key))
        if key == self.flaky and (op, key) not in self.calls[:-1]:
            raise TransientStorageError("injected", key=key)

    def put_file(self, key: str, local_path: PathLike, *, progress: Progress | None = None) -> None:
        self._maybe_fail("put", key)
        super().put_file(key, local_path, progress=progress)

    def get_file(self, key: str, local_path: PathLike, *, progress: Progress | None = None, fsync: bool = True) -> None:
        self._maybe_fail("get", key)
        super().get_file(key, local_path, progress=progress, fsync=fsync)


def make_sources(folder: Path, count: int) -> list[Path]:
    folder.mkdir(exist_ok=True)
    paths = [folder / f"file {number}" for number in range(count)]
    for number, path in enumerate(paths):
        path.write_bytes(b"x" * number)
    return paths


def test_batch_host_retries_only_the_items_that_failed_transiently(tmp_path: Path) -> None:
    (tmp_path / "store").mkdir()
    sources = make_sources(tmp_path / "src", 6)
    inner = FlakyBatchBackend(tmp_path / "store", flaky={"k/1", "k/4"})
    wrapped = wrap_backend(inner, FAST_RETRY)
    results = wrapped.put_many([Transfer(f"k/{n}", str(path)) for n, path in enumerate(sources)])
    assert [(r.key, r.size, r.error) for r in results] == [(f"k/{n}", n, None) for n in range(6)]
    assert inner.batches == [[f"k/{n}" for n in range(6)], ["k/1", "k/4"]]
    assert isinstance(wrapped, LoggingBackend)
    assert [(t.operation, t.nbytes, t.error) for t in wrapped.timings] == [("put_many", 15, None)]

    inner.batches, inner.seen = [], {}
    (tmp_path / "back").mkdir()
    items = [Transfer(f"k/{n}", str(tmp_path / "back" / str(n)), mtime_ns=10**18) for n in range(6)]
    results = wrapped.get_many(items)
    assert [r.error for r in results] == [None] * 6
    assert inner.batches == [[f"k/{n}" for n in range(6)], ["k/1", "k/4"]]
    assert [(tmp_path / "back" / str(n)).read_bytes() for n in range(6)] == [b"x" * n for n in range(6)]


def test_batch_host_gives_up_after_its_attempts_and_keeps_the_other_results(tmp_path: Path) -> None:
    (tmp_path / "store").mkdir()
    sources = make_sources(tmp_path / "src", 3)
    inner = FlakyBatchBackend(tmp_path / "store", flaky={"k/2"}, times=10)
    results = wrap_backend(inner, FAST_RETRY).put_many([Transfer(f"k/{n}", str(p)) for n, p in enumerate(sources)])
    assert [r.error is None for r in results] == [True, True, False]
    assert isinstance(results[2].error, TransientStorageError)
    assert len(inner.batches) == 3  # attempts, then the item keeps its error


def test_batch_host_repeats_a_whole_call_that_failed_transiently(tmp_path: Path) -> None:
    (tmp_path / "store").mkdir()
    sources = make_sources(tmp_path / "src", 3)
    inner = FlakyBatchBackend(tmp_path / "store", flaky=set(), raise_first=TransientStorageError("reset"))
    results = wrap_backend(inner, FAST_RETRY).put_many([Transfer(f"k/{n}", str(p)) for n, p in enumerate(sources)])
    assert [r.error for r in results] == [None] * 3
    assert len(inner.batches) == 2


def test_batch_host_raises_a_permanent_whole_call_error_at_once(tmp_path: Path) -> None:
    (tmp_path / "store").mkdir()
    sources = make_sources(tmp_path / "src", 2)
    inner = FlakyBatchBackend(tmp_path / "store", flaky=set(), raise_first=StoragePermissionDenied("no"))
    wrapped = wrap_backend(inner, FAST_RETRY)
    with pytest.raises(StoragePermissionDenied):
        wrapped.put_many([Transfer(f"k/{n}", str(p)) for n, p in enumerate(sources)])
    assert len(inner.batches) == 1
    assert isinstance(wrapped, LoggingBackend)
    assert [(t.operation, t.error) for t in wrapped.timings] == [("put_many", "StoragePermissionDenied")]


def test_a_permanent_item_error_is_not_retried(tmp_path: Path) -> None:
    (tmp_path / "store").mkdir()
    inner = FlakyBatchBackend(tmp_path / "store", flaky=set())
    results = wrap_backend(inner, FAST_RETRY).put_many([Transfer("k/missing", str(tmp_path / "nothing here"))])
    assert isinstance(results[0].error, LocalFileChanged)
    assert len(inner.batches) == 1


def test_a_host_without_batch_transfers_goes_item_by_item(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Each item through put_file/get_file of every wrapper: the flaky one is retried alone; one timing."""
    (tmp_path / "store").mkdir()
    sources = make_sources(tmp_path / "src", 5)
    inner = PerItemBackend(tmp_path / "store", flaky="k/3")
    wrapped = wrap_backend(inner, FAST_RETRY)
    assert isinstance(wrapped, LoggingBackend)
    caplog.set_level(logging.DEBUG, logger="oaiod.storage.wrappers")
    results = wrapped.put_many([Transfer(f"k/{n}", str(p)) for n, p in enumerate(sources)])
    assert [(r.key, r.size, r.error) for r in results] == [(f"k/{n}", n, None) for n in range(5)]
    assert sorted(inner.calls) == sorted([("put", f"k/{n}") for n in range(5)] + [("put", "k/3")])
    (tmp_path / "back").mkdir()
    results = wrapped.get_many([Transfer(f"k/{n}", str(tmp_path / "back" / str(n))) for n in range(5)])
    assert [r.sha256 is not None and r.error is None for r in results] == [True] * 5
    assert [(t.operation, t.nbytes) for t in wrapped.timings] == [("put_many", 10), ("get_many", 10)]
    lines = [r.getMessage() for r in caplog.records if r.name == "oaiod.storage.wrappers"]
    assert sum("put_many" in line for line in lines) == 1
    (put_line,) = [line for line in lines if "storage put " in line]  # no line per item, only the retry
    assert "'k/3' failed" in put_line


class CountingBucket(TokenBucket):
    """A token bucket that also counts what it was asked for (the limiter's only way to see the bytes)."""

    def __init__(self, rate: float) -> None:
        super().__init__(rate)
        self.consumed = 0

    def consume(self, amount: int) -> None:
        self.consumed += amount
        super().consume(amount)


def test_bandwidth_limit_reaches_batches_through_progress(tmp_path: Path) -> None:
    """The limiter wraps ``progress`` of put_many/get_many (on a batch host and off it)."""
    (tmp_path / "store").mkdir()
    source = tmp_path / "two"
    source.write_bytes(b"\0" * 2 * MIB)
    for number, inner in enumerate(
        [FlakyBatchBackend(tmp_path / "store", set()), PerItemBackend(tmp_path / "store", "")]
    ):
        limited = BandwidthLimitedBackend(inner)
        limited.upload, limited.download = CountingBucket(64 * MIB), CountingBucket(64 * MIB)
        assert limited.put_many([Transfer("two", str(source))])[0].error is None
        assert limited.get_many([Transfer("two", str(tmp_path / f"back {number}"))])[0].error is None
        assert (limited.upload.consumed, limited.download.consumed) == (2 * MIB, 2 * MIB)


def test_empty_batches_do_nothing(tmp_path: Path) -> None:
    wrapped = wrap_backend(LocalBackend(tmp_path), WrapperConfig())
    assert wrapped.put_many([]) == [] and wrapped.get_many([]) == []


def test_capabilities_pass_through(tmp_path: Path) -> None:
    caps = wrap_backend(PerItemBackend(tmp_path, flaky=""), WrapperConfig()).capabilities
    assert isinstance(caps, Capabilities) and not caps.batch_transfer
