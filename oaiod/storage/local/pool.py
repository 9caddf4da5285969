"""Worker processes for :class:`~oaiod.storage.local.backend.LocalBackend`'s batch transfers.

Moving thousands of small files is system calls plus Python per file; Python threads make that slower (each call
hands the GIL over), so a big batch is split into chunks that worker processes run with the functions of
:mod:`oaiod.storage.local.worker`. Guarantees:

* Workers come from the ``forkserver`` start method (``spawn`` where there is none), never from a plain ``fork``
  of the daemon, which has threads. The fork server, a small process that preloads the worker module, is started
  with the first pool and stays; the workers are started on the first batch and shut down after
  :attr:`WorkerPool.idle_seconds` without one (and on :meth:`WorkerPool.close`), so an idle daemon holds none.
* A worker that dies (killed, out of memory) never hangs a batch: the items it had not answered come back as
  :data:`~oaiod.storage.local.worker.LOST` answers, with the state marks it left in a shared file so the caller
  can remove what it half wrote, and the next batch starts a new pool.
* At most two chunks per worker are in flight, so a blocking ``progress`` (the bandwidth limit) slows the batch.
"""

from __future__ import annotations

import contextlib
import logging
import mmap
import multiprocessing
import os
import tempfile
import threading
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import Any

from oaiod.storage.local.worker import LOST, Answer

log = logging.getLogger(__name__)

WORKER_MODULE = "oaiod.storage.local.worker"
MIN_CHUNK, MAX_CHUNK = 32, 500  #: items per chunk (a few chunks per worker in between)


def default_workers() -> int:
    """One worker per core, at most 4 (the disk, not the CPU, limits beyond that)."""
    return max(1, min(os.cpu_count() or 1, 4))


def _context() -> multiprocessing.context.BaseContext:
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    context = multiprocessing.get_context("forkserver")
    # the server imports these once; each worker forked from it starts with them loaded
    context.set_forkserver_preload(["__main__", WORKER_MODULE])
    return context


def chunk_size(items: int, workers: int) -> int:
    """About eight chunks per worker (a late slow chunk leaves the others little to wait for), within bounds."""
    return max(MIN_CHUNK, min(MAX_CHUNK, -(-items // (8 * workers))))


@dataclass
class ChunkRun:
    """The answers of a batch, in order (``LOST`` ones for items whose worker died), and the final item marks."""

    answers: list[Answer]
    marks: bytes


@contextlib.contextmanager
def marks_file(count: int) -> Iterator[tuple[str, mmap.mmap]]:
    """A shared file of ``count`` zero bytes (in memory where ``/dev/shm`` exists), mapped; removed afterwards."""
    folder = "/dev/shm" if os.access("/dev/shm", os.W_OK) else None
    fd, path = tempfile.mkstemp(prefix="oaiod-marks-", dir=folder)
    try:
        os.ftruncate(fd, count)
        marks = mmap.mmap(fd, count)
    except OSError:
        os.unlink(path)
        raise
    finally:
        os.close(fd)
    try:
        yield path, marks
    finally:
        marks.close()
        with contextlib.suppress(OSError):  # an OSError out of here would read as "nothing started"
            os.unlink(path)


class WorkerPool:
    """A process pool started on first use and shut down when idle; thread-safe."""

    def __init__(self, workers: int | None = None, idle_seconds: float = 60.0) -> None:
        self.workers = workers or default_workers()
        #: seconds without a running batch after which the workers are shut down
        self.idle_seconds = idle_seconds
        self._lock = threading.Lock()
        self._executor: ProcessPoolExecutor | None = None
        self._users = 0
        self._generation = 0  # bumped by every use: an idle timer of an older generation does nothing
        self._timer: threading.Timer | None = None

    @property
    def running(self) -> bool:
        """True while worker processes may exist."""
        return self._executor is not None

    def worker_pids(self) -> list[int]:
        """The process ids of the current workers (for diagnostics and tests)."""
        executor = self._executor
        processes: dict[int, Any] = getattr(executor, "_processes", None) or {}
        return sorted(processes)

    def run(self, func: Callable[..., list[Answer]], head: tuple[Any, ...], tasks: list[Any],
            on_chunk: Callable[[list[Answer]], None] | None = None) -> ChunkRun:  # fmt: skip
        """``func(marks_path, *head, first, chunk)`` for chunks of ``tasks`` on the workers; ``on_chunk`` is called
        with each chunk's answers as they come (in order). An ``OSError`` means nothing was started (no marks file);
        a chunk that could not be handed over or whose worker died answers ``LOST`` for its items."""
        executor, broken = self._acquire(), False
        try:
            with marks_file(len(tasks)) as (path, marks):
                answers: list[Answer] = [()] * len(tasks)
                window: deque[tuple[int, int, Future[list[Answer]] | None]] = deque()
                size = chunk_size(len(tasks), self.workers)
                for start in range(0, len(tasks), size):
                    while len(window) >= 2 * self.workers:
                        broken |= self._collect(window.popleft(), answers, on_chunk)
                    chunk = tasks[start : start + size]
                    future = None if broken else self._submit(executor, func, (path, *head, start, chunk))
                    window.append((start, len(chunk), future))
                while window:
                    broken |= self._collect(window.popleft(), answers, on_chunk)
                return ChunkRun(answers, bytes(marks))
        finally:
            self._release(executor, broken)

    @staticmethod
    def _submit(executor: ProcessPoolExecutor, func: Callable[..., Any], args: tuple[Any, ...]) -> Future[Any] | None:
        try:
            return executor.submit(func, *args)  # may start a worker process
        except (BrokenProcessPool, RuntimeError, OSError) as exc:  # RuntimeError: shut down meanwhile (closed)
            log.warning("cannot hand a chunk to the local transfer workers: %r", exc)
            return None

    @staticmethod
    def _collect(entry: tuple[int, int, Future[list[Answer]] | None], answers: list[Answer],
                 on_chunk: Callable[[list[Answer]], None] | None) -> bool:  # fmt: skip
        """Put one chunk's answers in place; True when its worker died (the pool is broken)."""
        start, count, future = entry
        try:
            if future is None:
                raise BrokenProcessPool("the pool broke before this chunk was sent")
            part = future.result()
            if len(part) != count:
                raise RuntimeError(f"a worker answered {len(part)} of {count} items")
        except Exception as exc:  # a dead worker, or a bug in one: the chunk's items are lost, not the batch
            broken = isinstance(exc, BrokenProcessPool)
            if not broken:
                log.error("local transfer worker failed on %d items: %r", count, exc)
            answers[start : start + count] = [(LOST, 0, f"worker process failed: {exc}")] * count
            return broken
        answers[start : start + count] = part
        if on_chunk is not None:
            on_chunk(part)
        return False

    def _acquire(self) -> ProcessPoolExecutor:
        with self._lock:
            self._generation += 1
            if self._executor is None:
                log.debug("starting %d local transfer worker processes", self.workers)
                self._executor = ProcessPoolExecutor(max_workers=self.workers, mp_context=_context())
            self._users += 1
            return self._executor

    def _release(self, executor: ProcessPoolExecutor, broken: bool) -> None:
        dropped = None
        with self._lock:
            self._users -= 1
            if broken and self._executor is executor:
                log.warning("a local transfer worker process died; its items failed and the pool will be restarted")
                dropped, self._executor = executor, None
            if self._executor is not None and self._users == 0:
                if self._timer is not None:
                    self._timer.cancel()
                self._timer = threading.Timer(self.idle_seconds, self._shut_down_if_idle, (self._generation,))
                self._timer.daemon = True
                self._timer.start()
        if dropped is not None:
            dropped.shutdown(wait=False, cancel_futures=True)

    def _shut_down_if_idle(self, generation: int) -> None:
        with self._lock:
            if generation != self._generation or self._users or self._executor is None:
                return
            executor, self._executor = self._executor, None
        log.debug("shutting down the idle local transfer worker processes")
        executor.shutdown(wait=True)

    def close(self) -> None:
        """Shut the workers down (waiting for running chunks); a later batch starts them again."""
        with self._lock:
            self._generation += 1
            executor, self._executor = self._executor, None
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
        if executor is not None:
            executor.shutdown(wait=True)
