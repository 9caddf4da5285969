"""Cross-cutting behaviour as backends that wrap a backend, composed in one place: :func:`wrap_backend`.

From the outside in: logging (one line per call, timings kept) → retry (transient errors only, exponential
backoff with full jitter) → concurrency cap (a semaphore) → bandwidth limit (token buckets, up and down) → the
backend. Retry sits outside the cap so a call waiting out its backoff holds no connection slot.

``copy_many`` is logged as one line. On a host with ``capabilities.batch_copy`` the batch goes to the host's
``copy_many`` in chunks of :data:`RETRY_BATCH` pairs, each retried as a whole (``copy_many`` is idempotent) and
holding one concurrency slot; on any other host the wrappers copy pair by pair, so each pair is retried and
capped on its own.

``copy_prefix`` goes to the host's as one call (retried whole: it is idempotent) when it has
``capabilities.prefix_copy``; on any other host it is the default — a listing, then ``copy_many`` as above.

``put_many``/``get_many`` are logged as one line with one timing. On a host with ``capabilities.batch_transfer``
the whole batch goes down in one call holding one concurrency slot, throttled through ``progress``; the retry
wrapper repeats a whole call that raised a transient error (both calls may be repeated: a ``get_many`` that raises
leaves no file behind) and re-sends, as a smaller batch, only the items whose result carries a transient error.
On any other host the wrappers go item by item (``put_file``/``get_file`` through every wrapper), so each item is
retried, capped and throttled on its own.
"""

from __future__ import annotations

import builtins
import collections
import functools
import logging
import random
import threading
import time
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from oaiod.storage.base import Backend, Capabilities, ObjectInfo, PathLike, Progress, Transfer, Transferred
from oaiod.storage.errors import PermanentStorageError, StorageError, TransientStorageError
from oaiod.storage.toolkit import (
    CheckedPairs,
    CheckedTransfers,
    copy_on_threads,
    get_one,
    map_on_threads,
    put_one,
    validate_pairs,
    validate_transfers,
)

log = logging.getLogger(__name__)
T = TypeVar("T")

#: pairs of a ``copy_many`` retried together on a ``batch_copy`` host (the hub's requests hold as many)
RETRY_BATCH = 1000


@dataclass(frozen=True)
class WrapperConfig:
    """How to wrap a backend; the daemon fills this from its config file."""

    #: attempts per call in all (1: no retry)
    attempts: int = 5
    #: first backoff in seconds; doubled per attempt up to ``backoff_max``, with full jitter
    backoff_base: float = 0.5
    backoff_max: float = 30.0
    #: calls at once (``None``: the backend's ``capabilities.max_connections``)
    max_connections: int | None = None
    #: bytes per second (``None``: unlimited)
    upload_limit: int | None = None
    download_limit: int | None = None
    #: how many call timings :class:`LoggingBackend` keeps
    timings_kept: int = 1000


class WrappingBackend(Backend):
    """A backend that passes every call to ``inner``; subclasses override what they add."""

    def __init__(self, inner: Backend) -> None:
        self.inner = inner
        self.csh_id = inner.csh_id  # type: ignore[misc]

    @classmethod
    def from_args(cls, args: Mapping[str, Any]) -> Backend:
        raise TypeError("wrappers are built by oaiod.storage.wrappers.wrap_backend, not from csh_args")

    def unwrap(self) -> Backend:
        return self.inner

    @property
    def capabilities(self) -> Capabilities:  # type: ignore[override]
        return self.inner.capabilities

    def _call(self, name: str, key: str, func: Callable[[], T]) -> T:
        return func()

    def put_file(self, key: str, local_path: PathLike, *, progress: Progress | None = None) -> None:
        self._call("put", key, lambda: self.inner.put_file(key, local_path, progress=progress))

    def get_file(self, key: str, local_path: PathLike, *, progress: Progress | None = None, fsync: bool = True) -> None:
        self._call("get", key, lambda: self.inner.get_file(key, local_path, progress=progress, fsync=fsync))

    def stat(self, key: str) -> ObjectInfo:
        return self._call("stat", key, lambda: self.inner.stat(key))

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        return self.inner.list(prefix)

    def delete(self, key: str) -> None:
        self._call("delete", key, lambda: self.inner.delete(key))

    def delete_prefix(self, prefix: str) -> None:
        self._call("delete_prefix", prefix, lambda: self.inner.delete_prefix(prefix))

    def exists(self, key: str) -> bool:
        return self._call("exists", key, lambda: self.inner.exists(key))

    def copy(self, src: str, dst: str) -> None:
        self._call("copy", f"{src} -> {dst}", lambda: self.inner.copy(src, dst))

    def copy_prefix(self, src: str, dst: str, *, exclude: Collection[str] = frozenset()) -> int:
        """On a host with ``prefix_copy``: the host's, one call retried, capped and logged as a whole (it is
        idempotent); else the default (list, then ``copy_many``) through the wrappers, as any caller would do it."""
        if not self.capabilities.prefix_copy:
            return super().copy_prefix(src, dst, exclude=exclude)
        return self._call("copy_prefix", f"{src} -> {dst}", lambda: self.inner.copy_prefix(src, dst, exclude=exclude))

    def copy_many(self, pairs: Iterable[tuple[str, str]], *, progress: Progress | None = None) -> None:
        """The whole batch to the host's ``copy_many`` when it has ``batch_copy``; else pair by pair through this
        wrapper's :meth:`copy` (so each pair is retried, capped and limited on its own)."""
        checked = validate_pairs(pairs)
        if not checked:
            return
        if self.capabilities.batch_copy:
            self._call("copy_many", describe_pairs(checked), lambda: self.inner.copy_many(checked, progress=progress))
        else:
            copy_on_threads(checked, self.copy, self.capabilities.max_connections, progress)

    def put_many(
        self, items: Sequence[Transfer], *, progress: Progress | None = None, unpublished: bool = False
    ) -> builtins.list[Transferred]:
        """The whole batch to the host's ``put_many`` when it has ``batch_transfer``; else item by item through this
        wrapper's :meth:`put_file` (so each item is retried, capped and limited on its own)."""
        checked = validate_transfers(items)
        if not checked:
            return []
        if self.capabilities.batch_transfer:
            return self._call(
                "put_many",
                describe_transfers(checked),
                lambda: self.inner.put_many(checked, progress=progress, unpublished=unpublished),
            )
        return list(map_on_threads(lambda item: put_one(self, item, progress), checked, self.capabilities))

    def get_many(self, items: Sequence[Transfer], *, progress: Progress | None = None) -> builtins.list[Transferred]:
        """As :meth:`put_many`, for downloads (item by item through this wrapper's :meth:`get_file`)."""
        checked = validate_transfers(items)
        if not checked:
            return []
        if self.capabilities.batch_transfer:
            return self._call(
                "get_many", describe_transfers(checked), lambda: self.inner.get_many(checked, progress=progress)
            )
        return list(map_on_threads(lambda item: get_one(self, item, progress), checked, self.capabilities))

    def close(self) -> None:
        self.inner.close()

    def describe(self) -> str:
        return self.inner.describe()


def describe_pairs(pairs: CheckedPairs) -> str:
    """``N pairs (first SRC -> DST)`` for logs."""
    src, dst = pairs[0]
    return f"{len(pairs)} pairs (first {src} -> {dst})"


def describe_transfers(items: Sequence[Transfer]) -> str:
    """``N items (first KEY)`` for logs."""
    return f"{len(items)} items (first {items[0].key})" if items else "0 items"


class RetryingBackend(WrappingBackend):
    """Repeats a call that raised :class:`TransientStorageError`; any other error stops at once.

    A listing is retried only until its first object was yielded; a failure later propagates, and the caller
    lists again (restarting silently could yield objects twice).
    """

    def __init__(
        self, inner: Backend, *, attempts: int = 5, backoff_base: float = 0.5, backoff_max: float = 30.0
    ) -> None:
        super().__init__(inner)
        self.attempts = max(1, attempts)
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max

    def _delay(self, attempt: int) -> float:
        return random.uniform(0, min(self.backoff_max, self.backoff_base * 2**attempt))

    def _call(self, name: str, key: str, func: Callable[[], T]) -> T:
        for attempt in range(self.attempts):
            try:
                return func()
            except TransientStorageError as exc:
                if attempt + 1 >= self.attempts:
                    log.error("storage %s %s of %r failed %d times, giving up: %s", name, self.describe(), key,
                              self.attempts, exc)  # fmt: skip
                    raise
                delay = self._delay(attempt)
                log.warning("storage %s %s of %r failed (%s); retry %d/%d in %.1f s", name, self.describe(), key,
                            exc, attempt + 1, self.attempts - 1, delay)  # fmt: skip
                time.sleep(delay)
        raise AssertionError("unreachable")  # pragma: no cover

    def copy_many(self, pairs: Iterable[tuple[str, str]], *, progress: Progress | None = None) -> None:
        """Retried by chunks of :data:`RETRY_BATCH` pairs on a ``batch_copy`` host (a failure late in a large batch
        repeats only its chunk; progress is reported per chunk done), else pair by pair."""
        checked = validate_pairs(pairs)
        if not self.capabilities.batch_copy:
            copy_on_threads(checked, self.copy, self.capabilities.max_connections, progress)
            return
        for start in range(0, len(checked), RETRY_BATCH):
            chunk = CheckedPairs(checked[start : start + RETRY_BATCH])
            self._call("copy_many", describe_pairs(chunk), functools.partial(self.inner.copy_many, chunk))
            if progress is not None:
                progress(len(chunk))

    def put_many(
        self, items: Sequence[Transfer], *, progress: Progress | None = None, unpublished: bool = False
    ) -> list[Transferred]:
        """On a ``batch_transfer`` host: the batch, then again only its items that failed transiently (see
        :meth:`_batch_with_retries`); else item by item, each retried on its own."""
        checked = validate_transfers(items)
        if not self.capabilities.batch_transfer:
            return super().put_many(checked, progress=progress, unpublished=unpublished)
        return self._batch_with_retries(
            "put_many", checked, lambda batch: self.inner.put_many(batch, progress=progress, unpublished=unpublished)
        )

    def get_many(self, items: Sequence[Transfer], *, progress: Progress | None = None) -> list[Transferred]:
        """As :meth:`put_many`, for downloads."""
        checked = validate_transfers(items)
        if not self.capabilities.batch_transfer:
            return super().get_many(checked, progress=progress)
        return self._batch_with_retries(
            "get_many", checked, lambda batch: self.inner.get_many(batch, progress=progress)
        )

    def _batch_with_retries(
        self, name: str, items: list[Transfer], send: Callable[[CheckedTransfers], list[Transferred]]
    ) -> list[Transferred]:
        """``send(items)``, then ``send`` of the items whose result carries a transient error, up to ``attempts``
        calls in all with the usual backoff; a call that raised a transient error is repeated for the same items.

        Once some items are done, an error of a later call is given to the items still pending instead of being
        raised, so the results of the done ones are never lost (a caller would otherwise redo them).
        """
        results: list[Transferred | None] = [None] * len(items)
        pending = list(range(len(items)))
        for attempt in range(self.attempts if items else 0):
            batch = CheckedTransfers(items[index] for index in pending)
            what = describe_transfers(batch)
            last = attempt + 1 >= self.attempts
            try:
                answers = send(batch)
            except StorageError as exc:
                if len(pending) == len(items) and results[0] is None and (last or not exc.transient):
                    raise  # nothing done yet: the whole call failed
                if last or not exc.transient:
                    log.error("storage %s %s of %s failed, giving up on those items: %s", name, self.describe(),
                              what, exc)  # fmt: skip
                    for index in pending:
                        results[index] = Transferred(items[index].key, error=exc)
                    break
                self._back_off(name, what, exc, attempt)
                continue
            if len(answers) != len(batch):
                raise PermanentStorageError(f"{self.describe()} {name} answered {len(answers)} of {len(batch)} items")
            failed: list[int] = []
            for index, answer in zip(pending, answers, strict=True):
                results[index] = answer
                if answer.error is not None and answer.error.transient:
                    failed.append(index)
            if not failed:
                break
            first = results[failed[0]]
            assert first is not None and first.error is not None
            if last:
                log.error("storage %s %s: %d items still failed after %d attempts (first %r: %s)", name,
                          self.describe(), len(failed), self.attempts, first.key, first.error)  # fmt: skip
                break
            self._back_off(name, f"{len(failed)} of {len(batch)} items (first {first.key})", first.error, attempt)
            pending = failed
        assert all(result is not None for result in results)
        return results  # type: ignore[return-value]

    def _back_off(self, name: str, what: str, exc: StorageError, attempt: int) -> None:
        delay = self._delay(attempt)
        log.warning("storage %s %s of %s failed (%s); retry %d/%d in %.1f s", name, self.describe(), what, exc,
                    attempt + 1, self.attempts - 1, delay)  # fmt: skip
        time.sleep(delay)

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        for attempt in range(self.attempts):
            iterator = self.inner.list(prefix)
            try:
                first = next(iterator)
            except StopIteration:
                return
            except TransientStorageError as exc:
                if attempt + 1 >= self.attempts:
                    raise
                log.warning("storage list %s of %r failed (%s); retrying", self.describe(), prefix, exc)
                time.sleep(self._delay(attempt))
                continue
            yield first
            yield from iterator
            return


class ConcurrencyLimitedBackend(WrappingBackend):
    """At most ``limit`` calls run at once; a listing holds a slot only while it fetches."""

    def __init__(self, inner: Backend, limit: int) -> None:
        super().__init__(inner)
        self.limit = max(1, limit)
        self._slots = threading.BoundedSemaphore(self.limit)

    def _call(self, name: str, key: str, func: Callable[[], T]) -> T:
        with self._slots:
            return func()

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        iterator = self.inner.list(prefix)
        while True:
            with self._slots:
                item = next(iterator, None)
            if item is None:
                return
            yield item


class TokenBucket:
    """Allows ``rate`` bytes per second on average with bursts of up to one second; thread-safe."""

    def __init__(self, rate: float) -> None:
        self.rate = float(rate)
        self._tokens = self.rate
        self._last = time.monotonic()
        self._lock = threading.Lock()

    def consume(self, amount: int) -> None:
        """Take ``amount`` bytes' worth, sleeping as long as the debt needs."""
        with self._lock:
            now = time.monotonic()
            self._tokens = min(self.rate, self._tokens + (now - self._last) * self.rate)
            self._last = now
            self._tokens -= amount
            wait = -self._tokens / self.rate if self._tokens < 0 else 0.0
        if wait > 0:
            time.sleep(wait)


class BandwidthLimitedBackend(WrappingBackend):
    """Holds transfers to a number of bytes per second, up and down, through the backends' ``progress`` calls.

    A backend without chunked progress reports the total at the end; the wait then comes after the transfer,
    which keeps the average but not the peak rate.
    """

    def __init__(self, inner: Backend, *, upload: int | None = None, download: int | None = None) -> None:
        super().__init__(inner)
        self.upload = TokenBucket(upload) if upload else None
        self.download = TokenBucket(download) if download else None

    @staticmethod
    def _throttled(bucket: TokenBucket | None, progress: Progress | None) -> Progress | None:
        if bucket is None:
            return progress

        def report(amount: int) -> None:
            bucket.consume(amount)
            if progress is not None:
                progress(amount)

        return report

    def put_file(self, key: str, local_path: PathLike, *, progress: Progress | None = None) -> None:
        self.inner.put_file(key, local_path, progress=self._throttled(self.upload, progress))

    def get_file(self, key: str, local_path: PathLike, *, progress: Progress | None = None, fsync: bool = True) -> None:
        self.inner.get_file(key, local_path, progress=self._throttled(self.download, progress), fsync=fsync)

    def put_many(
        self, items: Sequence[Transfer], *, progress: Progress | None = None, unpublished: bool = False
    ) -> list[Transferred]:
        throttled = self._throttled(self.upload, progress)
        return self.inner.put_many(validate_transfers(items), progress=throttled, unpublished=unpublished)

    def get_many(self, items: Sequence[Transfer], *, progress: Progress | None = None) -> list[Transferred]:
        return self.inner.get_many(validate_transfers(items), progress=self._throttled(self.download, progress))


@dataclass(frozen=True)
class CallTiming:
    """One finished call: what, on which key, how many bytes, how long, and the error class if it failed."""

    operation: str
    key: str
    nbytes: int
    seconds: float
    error: str | None = None


LARGE_TRANSFER_LOGGED = 8 * 1024 * 1024  #: transfers at least this big are logged at INFO, others at DEBUG
LARGE_BATCH_LOGGED = 1000  #: a batch of at least this many pairs or items is logged at INFO, a smaller one at DEBUG


class LoggingBackend(WrappingBackend):
    """One log line per call (operation, key, bytes, seconds); the last timings stay in ``timings``."""

    def __init__(self, inner: Backend, *, kept: int = 1000) -> None:
        super().__init__(inner)
        self.timings: collections.deque[CallTiming] = collections.deque(maxlen=kept)

    def _record(self, name: str, key: str, nbytes: int, started: float, error: StorageError | None) -> None:
        seconds = time.monotonic() - started
        self.timings.append(CallTiming(name, key, nbytes, seconds, type(error).__name__ if error else None))
        # A sync of thousands of small files must not write thousands of INFO lines: only big transfers are news.
        level = logging.INFO if nbytes >= LARGE_TRANSFER_LOGGED else logging.DEBUG
        if error is not None:
            log.warning("storage %s %s %r failed after %.3f s: %s", name, self.describe(), key, seconds, error)
        else:
            log.log(level, "storage %s %s %r: %d bytes in %.3f s", name, self.describe(), key, nbytes, seconds)

    def _call(self, name: str, key: str, func: Callable[[], T]) -> T:
        started = time.monotonic()
        try:
            result = func()
        except StorageError as exc:
            self._record(name, key, 0, started, exc)
            raise
        self._record(name, key, 0, started, None)
        return result

    def _transfer(self, name: str, key: str, local_path: PathLike, func: Callable[[], None]) -> None:
        started = time.monotonic()
        try:
            func()
        except StorageError as exc:
            self._record(name, key, 0, started, exc)
            raise
        self._record(name, key, Path(local_path).stat().st_size, started, None)

    def put_file(self, key: str, local_path: PathLike, *, progress: Progress | None = None) -> None:
        self._transfer("put", key, local_path, lambda: self.inner.put_file(key, local_path, progress=progress))

    def get_file(self, key: str, local_path: PathLike, *, progress: Progress | None = None, fsync: bool = True) -> None:
        self._transfer(
            "get", key, local_path, lambda: self.inner.get_file(key, local_path, progress=progress, fsync=fsync)
        )

    def copy_many(self, pairs: Iterable[tuple[str, str]], *, progress: Progress | None = None) -> None:
        """One line and one timing for the whole batch, however the wrappers inside copy it."""
        checked = validate_pairs(pairs)
        if not checked:
            return
        started, what = time.monotonic(), describe_pairs(checked)
        try:
            self.inner.copy_many(checked, progress=progress)
        except StorageError as exc:
            self._record("copy_many", what, 0, started, exc)
            raise
        seconds = time.monotonic() - started
        self.timings.append(CallTiming("copy_many", what, 0, seconds))
        level = logging.INFO if len(checked) >= LARGE_BATCH_LOGGED else logging.DEBUG
        log.log(level, "storage copy_many %s: %s in %.3f s", self.describe(), what, seconds)

    def put_many(
        self, items: Sequence[Transfer], *, progress: Progress | None = None, unpublished: bool = False
    ) -> list[Transferred]:
        """One line and one timing for the whole batch, however the wrappers inside send it."""
        return self._batch(
            "put_many",
            validate_transfers(items),
            lambda c: self.inner.put_many(c, progress=progress, unpublished=unpublished),
        )

    def get_many(self, items: Sequence[Transfer], *, progress: Progress | None = None) -> list[Transferred]:
        """One line and one timing for the whole batch, however the wrappers inside send it."""
        return self._batch("get_many", validate_transfers(items), lambda c: self.inner.get_many(c, progress=progress))

    def _batch(
        self, name: str, checked: list[Transfer], send: Callable[[list[Transfer]], list[Transferred]]
    ) -> list[Transferred]:
        if not checked:
            return []
        started, what = time.monotonic(), describe_transfers(checked)
        try:
            results = send(checked)
        except StorageError as exc:
            self._record(name, what, 0, started, exc)
            raise
        seconds = time.monotonic() - started
        nbytes = sum(result.size for result in results if result.error is None)
        failed = [result for result in results if result.error is not None]
        first_error = failed[0].error if failed else None
        self.timings.append(CallTiming(name, what, nbytes, seconds, type(first_error).__name__ if failed else None))
        if failed:
            log.warning("storage %s %s %s: %d failed (first %r: %s), %d bytes in %.3f s", name, self.describe(), what,
                        len(failed), failed[0].key, first_error, nbytes, seconds)  # fmt: skip
            return results
        big = len(checked) >= LARGE_BATCH_LOGGED or nbytes >= LARGE_TRANSFER_LOGGED
        log.log(logging.INFO if big else logging.DEBUG, "storage %s %s %s: %d bytes in %.3f s", name, self.describe(),
                what, nbytes, seconds)  # fmt: skip
        return results

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        started, count = time.monotonic(), 0
        try:
            for info in self.inner.list(prefix):
                count += 1
                yield info
        except StorageError as exc:
            self._record("list", prefix, 0, started, exc)
            raise
        log.debug("storage list %s %r: %d objects in %.3f s", self.describe(), prefix, count,
                  time.monotonic() - started)  # fmt: skip


def wrap_backend(backend: Backend, config: WrapperConfig) -> Backend:
    """``backend`` wrapped for bandwidth, concurrency, retry and logging, in that order from the inside out."""
    wrapped: Backend = backend
    if config.upload_limit or config.download_limit:
        wrapped = BandwidthLimitedBackend(wrapped, upload=config.upload_limit, download=config.download_limit)
    wrapped = ConcurrencyLimitedBackend(wrapped, config.max_connections or backend.capabilities.max_connections)
    wrapped = RetryingBackend(
        wrapped, attempts=config.attempts, backoff_base=config.backoff_base, backoff_max=config.backoff_max
    )
    return LoggingBackend(wrapped, kept=config.timings_kept)
