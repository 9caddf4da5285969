"""What every step of a cycle shares: settings, the state repository, the server API, storage backends per
``csh_id`` (opened lazily from the server's ``csh_args``), the path mapper and transfer progress."""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Generator, Iterable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar

from oaiod.engine.ignore import IgnoreRules
from oaiod.engine.placeholders import PathMapper
from oaiod.engine.settings import EngineSettings
from oaiod.errors import FailureKind, OaiodError
from oaiod.model import OaiObject, dedefuse
from oaiod.server_api import ObjectOrigin, ObjectVersion, StampzResult
from oaiod.state.repo import StateRepo
from oaiod.storage.base import Backend, Transfer, Transferred

log = logging.getLogger("oaiod.engine")

OpenBackend = Callable[[str, Mapping[str, Any]], Backend]
T = TypeVar("T")
R = TypeVar("R")


class ServerApi(Protocol):
    """Every call the engine makes on the server (design §7). :class:`oaiod.server_api.OaioServerApi` satisfies it
    (mypy checks that where the daemon builds the engine), and so must a test's stand-in. Errors are those of
    :mod:`oaiod.server_api` (``RemoteError`` and below, re-exported there): the engine never imports ``oaiod.http``.
    """

    @property
    def base_url(self) -> str: ...  # names the server: the key of its change cursor in the state database

    def check_clock(self) -> float: ...  # seconds the server's clock is ahead; ClockSkewError beyond 69 s

    def features(self) -> frozenset[str]: ...  # part-B features; "origin" and "versions" are asked for first

    def csh_args(self, csh_id: str) -> dict[str, Any]: ...  # arguments of a storage host (may hold credentials)

    def stampz(self, since: str | None = None) -> StampzResult: ...  # changed and deleted objects since a cursor

    def register(self, obj: OaiObject) -> OaiObject: ...  # a new object; UploadConflict when the id exists

    def upload(self, obj: OaiObject) -> OaiObject: ...  # a new version; UploadConflict when the server moved on

    def delete(self, obj: OaiObject | str) -> None: ...

    def versions(self, oaio_id: str, stamp: str | None = None) -> list[ObjectVersion]: ...  # newest first ("versions")

    def origin(self, oaio_id: str) -> ObjectOrigin: ...  # who registered it and when (hub "origin" feature)

    def subscribe(self, oaio_id: str, username: str, right: str) -> int: ...

    def unsubscribe(self, oaio_id: str, username: str) -> int: ...

    def user_subz(self, oaio_id: str) -> list[dict[str, str]]: ...

    def create_link(
        self, oaio_id: str, path: str = "", *, expires_in: int, password: str | None = None, stamp: str = ""
    ) -> dict[str, Any]: ...  # a share link (hub "links" feature)

    def links(self, oaio_id: str) -> list[dict[str, Any]]: ...

    def revoke_link(self, link_id: str) -> dict[str, Any]: ...


class EngineError(OaiodError):
    """A sync step failed for a reason of its own (no storage for an object, an invalid manifest…).

    Kind ``invalid``: the object as listed cannot be synced (or the engine has a bug), and trying again the same
    object soon cannot help; it waits for a change to the object, here or on the server (design §3)."""

    kind = FailureKind.INVALID


class IntegrityError(EngineError):
    """Downloaded content does not match the manifest's sha256: nothing was written.

    Kind ``transient``: a file damaged on its way here is fine at the next download, and the item is not left
    waiting 30 minutes for that. A file damaged on storage stays wrong until a device commits it again — the next
    version arrives through the listing whatever the item's backoff, and the doubling wait (10 s up to 1 h) keeps
    a lasting one from being fetched again every few seconds."""

    kind = FailureKind.TRANSIENT


@dataclass
class Progress:
    """Transfer progress, read by ``status()`` from another thread (plain attributes, updated in place).

    ``done_bytes`` counts the bytes moved of what is queued now: it starts again at 0 when the queues ran empty (and
    at each cycle), so done / (done + still queued) is the share of the current work, not of everything ever sent.
    """

    current_path: str = ""  # the (first) file of the transfer or batch in flight
    current_upload: bool = False  # the transfer in flight is an upload (else a download)
    current_files: int = 0  # files in the batch in flight
    current_done: int = 0
    current_total: int = 0
    queued_uploads: int = 0
    queued_upload_bytes: int = 0
    queued_downloads: int = 0
    queued_download_bytes: int = 0
    done_bytes: int = 0
    counting_since: float = 0.0  #: time.monotonic() when ``done_bytes`` began its count (for the speed)

    def start(self, path: str, total: int, files: int = 1, *, upload: bool = False) -> None:
        """A transfer (or a batch of ``files`` transfers, named by its first path) of ``total`` bytes begins."""
        self.current_path, self.current_files, self.current_done, self.current_total = path, files, 0, total
        self.current_upload = upload

    def advance(self, count: int) -> None:
        if not self.done_bytes:
            self.counting_since = time.monotonic()
        self.current_done += count
        self.done_bytes += count

    def speed(self) -> float | None:
        """Bytes per second over the current count; None until there is enough to tell (half a second)."""
        elapsed = time.monotonic() - self.counting_since
        return self.done_bytes / elapsed if self.done_bytes and elapsed >= 0.5 else None

    def finish(self, upload: bool, size: int, files: int = 1) -> None:
        """The transfer (or batch of ``files``) of ``size`` bytes begun by :meth:`start` is over."""
        self.current_path, self.current_files, self.current_done, self.current_total = "", 0, 0, 0
        if upload:
            self.queued_uploads = max(0, self.queued_uploads - files)
            self.queued_upload_bytes = max(0, self.queued_upload_bytes - size)
        else:
            self.queued_downloads = max(0, self.queued_downloads - files)
            self.queued_download_bytes = max(0, self.queued_download_bytes - size)
        if not (self.queued_upload_bytes or self.queued_download_bytes):
            self.done_bytes = 0  # the queued work is done: the next transfer starts a new count

    def reset(self) -> None:
        """Nothing in flight or done yet (a cycle begins)."""
        self.start("", 0, 0)
        self.done_bytes = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "current": {
                "path": self.current_path,
                "upload": self.current_upload,
                "files": self.current_files,
                "done": self.current_done,
                "total": self.current_total,
            }
            if self.current_path
            else None,
            "queued_uploads": self.queued_uploads,
            "queued_upload_bytes": self.queued_upload_bytes,
            "queued_downloads": self.queued_downloads,
            "queued_download_bytes": self.queued_download_bytes,
            "done_bytes": self.done_bytes,
            "speed": self.speed(),
        }


@dataclass
class EngineContext:
    """Shared by pull, push and the cycle; one per engine."""

    settings: EngineSettings
    repo: StateRepo
    api: ServerApi
    open_backend: OpenBackend
    mapper: PathMapper
    progress: Progress = field(default_factory=Progress)
    _backends: dict[str, Backend] = field(default_factory=dict)
    _ignores: dict[Path, IgnoreRules] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    #: memo of counts that depend only on the stamps in their key (:func:`oaiod.engine.modes.note`)
    counted: dict[tuple[str, str, str], int] = field(default_factory=dict)

    def backend(self, csh_id: str | None) -> Backend:
        """The storage backend of ``csh_id`` (arguments from the server, opened once and kept)."""
        if not csh_id:
            raise EngineError("the object names no storage host (csh_id); its files cannot be synced")
        with self._lock:
            backend = self._backends.get(csh_id)
            if backend is None:
                backend = self.open_backend(csh_id, self.api.csh_args(csh_id))
                self._backends[csh_id] = backend
            return backend

    def ignore_rules(self, root: Path, *, reload: bool = False) -> IgnoreRules:
        rules = self._ignores.get(root)
        if rules is None or reload:
            rules = IgnoreRules.for_root(root, self.settings.ignore_patterns, self.repo.excluded_in_folder(str(root)))
            self._ignores[root] = rules
        return rules

    def close(self) -> None:
        with self._lock:
            for backend in self._backends.values():
                try:
                    backend.close()
                except OaiodError as exc:  # pragma: no cover - closing is best effort
                    log.debug("closing %s: %s", backend, exc)
            self._backends.clear()


#: a ``put_many``/``get_many`` call carries at most this many files and bytes (a single larger file goes alone), so
#: progress advances and a failure stops the commit or pull batch by batch, and temp files stay bounded; 1,000 is
#: what the hub takes in one batch request (500 made twice the requests, each with its own syncs on the hub)
TRANSFER_BATCH_FILES = 1000
TRANSFER_BATCH_BYTES = 64 * 2**20


#: ``put_many``/``get_many`` calls in flight at once (at most the host's ``capabilities.max_connections``): while the
#: hub answers one batch request, this device reads or writes the files of the next; one at a time, the two sides
#: took turns and each was idle half the time (10,000 × 4 KiB through a loopback hub)
TRANSFER_PIPELINE = 3


def in_flight(batches: Iterable[T], work: Callable[[T], R], limit: int) -> Generator[tuple[T, R], None, None]:
    """``(batch, work(batch))`` for each of ``batches``, in their order, with up to ``limit`` calls of ``work``
    running at once on threads (1: each in the calling thread, as it comes). Bounded: a batch is taken from
    ``batches`` only when a slot is free, so at most ``limit`` batches are held. A call that raised raises here, in
    its turn. Close the iterator (``contextlib.closing``) when leaving early: the calls not yet started are
    dropped and the running ones awaited, so none outlives the caller (a commit deleting its partial prefix, a
    pull discarding its temp files, must not race an upload or download still in flight)."""
    if limit <= 1:
        for batch in batches:
            yield batch, work(batch)
        return
    pool = ThreadPoolExecutor(max_workers=limit, thread_name_prefix="oaiod-batch")
    running: deque[tuple[T, Future[R]]] = deque()
    try:
        source = iter(batches)
        for batch in source:
            running.append((batch, pool.submit(work, batch)))
            if len(running) >= limit:
                done, future = running.popleft()
                yield done, future.result()
        while running:
            done, future = running.popleft()
            yield done, future.result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def fetch_one(
    backend: Backend, key: str, local_path: Path, mtime_ns: int | None = None, executable: bool = False
) -> Transferred:
    """One object into the new file ``local_path`` through ``get_many`` (sha256 and stat come back; no second read
    to hash it); the item's error raised. For the odd single file: batches go through :func:`transfer_batches`."""
    got = backend.get_many([Transfer(key, str(local_path), mtime_ns, executable)])[0]
    if got.error is not None:
        raise got.error
    return got


def transfer_batches(items: Iterable[T], size: Callable[[T], int]) -> Iterator[list[T]]:
    """``items`` in order, cut into lists of at most :data:`TRANSFER_BATCH_FILES` items and
    :data:`TRANSFER_BATCH_BYTES` bytes (``size`` of each item; an item larger than that is a batch of its own)."""
    batch: list[T] = []
    total = 0
    for item in items:
        nbytes = max(0, size(item))
        if batch and (len(batch) >= TRANSFER_BATCH_FILES or total + nbytes > TRANSFER_BATCH_BYTES):
            yield batch
            batch, total = [], 0
        batch.append(item)
        total += nbytes
    if batch:
        yield batch


def object_owner(oaio_id: str) -> str:
    """The user who registered an object, read from its id (``app://user@device/…/stamp``); "" when unknown."""
    plain = dedefuse(oaio_id)
    _, sep, rest = plain.partition("://")
    if not sep or "@" not in rest:
        return ""
    return rest.split("@", 1)[0]
