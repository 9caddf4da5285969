"""The storage backend interface: a handful of primitives with contracts, and slow correct defaults for extras.

A backend stores opaque objects under keys (see :mod:`oaiod.storage.keys`) on one cloud storage host. The sync
engine sees only this interface and reads :class:`Capabilities` instead of checking classes. Backends raise only
the errors of :mod:`oaiod.storage.errors`. Keys are validated by the backend on the way in and out.

What a backend is built with — batching on threads, local file I/O, argument checks — is
:mod:`oaiod.storage.toolkit`; the slow defaults here run on it (imported when a default is first called: the
toolkit builds on the types of this module).
"""

from __future__ import annotations

import abc
import builtins
import os
import tempfile
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from oaiod.storage.errors import InvalidKey, ObjectNotFound, StorageError
from oaiod.storage.keys import is_under, validate_key, validate_prefix

#: called with the number of bytes moved by each chunk of a transfer (may block: the bandwidth limit does)
Progress = Callable[[int], None]
PathLike = str | os.PathLike[str]


@dataclass(frozen=True)
class Capabilities:
    """What a backend can do; callers and wrappers read this instead of checking classes."""

    #: ``copy`` runs on the host without moving the bytes through this machine
    server_side_copy: bool = False
    #: a reader never sees a partial object, even if the writer dies mid-upload
    atomic_put: bool = True
    #: how many calls may run at once against this host (the concurrency wrapper's default)
    max_connections: int = 4
    #: uploads above this many bytes go in parts (``None``: one request, whatever the size)
    multipart_threshold: int | None = None
    #: ``stat`` returns the sha256 of the content
    hashes: bool = False
    #: ``progress`` is called per chunk (False: once with the total at the end of a transfer)
    chunked_progress: bool = True
    #: ``copy_many`` does better than one ``copy`` per pair (a batch request, a cheaper primitive): wrappers pass a
    #: whole batch on instead of copying pair by pair
    batch_copy: bool = False
    #: ``copy_prefix`` does better than listing the folder and a ``copy_many`` of it (the hub: one request whose size
    #: grows with ``exclude``, not with the folder): wrappers pass the call on whole instead of using the default
    prefix_copy: bool = False
    #: ``put_many``/``get_many`` do better than one ``put_file``/``get_file`` per item (worker processes, a batch
    #: request): wrappers pass whole batches on instead of transferring item by item
    batch_transfer: bool = False


@dataclass(frozen=True)
class ObjectInfo:
    """One stored object: its key, size in bytes, sha256 hex digest when the host knows it, and mtime (epoch s)."""

    key: str
    size: int
    sha256: str | None = None
    mtime: float | None = None


@dataclass(frozen=True, slots=True)
class Transfer:
    """One item of a :meth:`Backend.put_many` / :meth:`Backend.get_many` batch.

    ``mtime_ns`` and ``executable`` are used by ``get_many`` only: the written file gets that mtime (``None``: the
    time of writing) and mode ``0o777 & ~umask`` when executable, else ``0o666 & ~umask``. ``basis`` too: a local
    file that probably shares much of the object's content (the current file at the target path), which a backend
    that moves blocks may copy from instead of downloading (Hub storage does; the others ignore it). It is only
    read, and the written file is what the object holds whatever the basis holds.

    ``sha256`` is used by ``put_many`` only: the content's sha256 as the caller indexed it (``None``: unknown). A
    backend whose host checks uploads against a hash announced up front may announce this one instead of reading
    the file an extra time to hash it; bytes that do not match it are then refused by the host, and the item
    carries :class:`~oaiod.storage.errors.LocalFileChanged` (the file changed since it was indexed). A backend may
    ignore it.
    """

    key: str
    local_path: str
    mtime_ns: int | None = None
    executable: bool = False
    basis: str | None = None
    sha256: str | None = None


@dataclass(frozen=True, slots=True)
class Transferred:
    """The outcome of one :class:`Transfer`: the local file's stat and the sha256 of the bytes moved, or ``error``.

    ``size``/``mtime_ns``/``inode`` are those of the local file: for a put, as it was read (taken before reading
    and checked unchanged after); for a get, as written (after its mtime was set). ``sha256`` is always set by
    ``get_many``; ``put_many`` sets it when it hashed the bytes on the way (``None`` otherwise). When ``error`` is
    set the other fields are meaningless (``-1``/``None``).
    """

    key: str
    size: int = -1
    mtime_ns: int = -1
    inode: int = -1
    sha256: str | None = None
    error: StorageError | None = None


def check_prefix_pair(src: object, dst: object) -> tuple[str, str]:
    """The two folders of a :meth:`Backend.copy_prefix`, validated: non-empty, and neither inside the other."""
    src, dst = validate_prefix(src, "src"), validate_prefix(dst, "dst")
    if not src or not dst:
        raise InvalidKey("src" if not src else "dst", "copy_prefix needs two non-empty folders")
    if src == dst or is_under(dst, src) or is_under(src, dst):
        raise InvalidKey("dst", f"{dst[:80]!r} and {src[:80]!r} overlap; copy between separate folders")
    return src, dst


class Backend(abc.ABC):
    """A storage host. Subclasses implement the abstract primitives and may override the defaults.

    Every method validates its keys and raises :class:`~oaiod.storage.errors.InvalidKey` for an unsafe one.
    A backend instance may be used from several threads at once.
    """

    #: the csh id this class is registered under
    csh_id: ClassVar[str] = ""
    capabilities: Capabilities = Capabilities()

    @classmethod
    @abc.abstractmethod
    def from_args(cls, args: Mapping[str, Any]) -> Backend:
        """Build from the ``csh_args`` keyword arguments; an unknown or missing argument is a ConfigError."""

    # -- primitives ---------------------------------------------------------------------------------------------

    @abc.abstractmethod
    def put_file(self, key: str, local_path: PathLike, *, progress: Progress | None = None) -> None:
        """Store the content of ``local_path`` under ``key``, replacing any object there.

        Streamed in bounded memory whatever the size. When ``capabilities.atomic_put``, a reader sees either the
        old object or the complete new one, never a partial one. Missing parent folders are created.
        """

    @abc.abstractmethod
    def get_file(self, key: str, local_path: PathLike, *, progress: Progress | None = None, fsync: bool = True) -> None:
        """Write the object ``key`` to ``local_path``: a complete, fsynced file, or an error and no change there.

        Streamed into a temporary file beside ``local_path``, then renamed
        (:func:`oaiod.storage.toolkit.atomic_local_file`). ``fsync=False``: the caller makes the file durable, with
        one sync for a whole batch (``get_many``, and the engine's downloads to temp files of its own, design §3);
        the file is still complete and atomic, only a power loss before the caller's sync may lose it.
        Raises :class:`ObjectNotFound` when ``key`` does not exist.
        """

    @abc.abstractmethod
    def stat(self, key: str) -> ObjectInfo:
        """Size, sha256 (when known) and mtime of ``key``; :class:`ObjectNotFound` if it does not exist."""

    @abc.abstractmethod
    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        """Every object in the folder ``prefix``, recursively (``""``: all), as it is fetched (streamed or paged).

        ``prefix`` names a folder: ``a/b`` lists ``a/b/c`` but not ``a/bc``. A missing prefix lists nothing.
        Keys coming from the host are validated; an unsafe one is skipped with a warning in the log.
        Partial uploads (:data:`~oaiod.storage.keys.TEMP_PREFIX`) are never listed. The order is unspecified.
        """

    @abc.abstractmethod
    def delete(self, key: str) -> None:
        """Remove ``key``. Idempotent: deleting a missing key is not an error."""

    # -- extras with slow, correct defaults -----------------------------------------------------------------------

    def delete_prefix(self, prefix: str) -> None:
        """Remove every object in the folder ``prefix``; idempotent. The empty prefix (everything) is refused."""
        prefix = validate_prefix(prefix)
        if not prefix:
            raise InvalidKey("prefix", "refusing to delete everything; give a non-empty prefix")
        for info in list(self.list(prefix)):
            self.delete(info.key)

    def exists(self, key: str) -> bool:
        """True when ``key`` exists."""
        try:
            self.stat(key)
        except ObjectNotFound:
            return False
        return True

    def copy(self, src: str, dst: str) -> None:
        """Make ``dst`` a copy of ``src`` (replacing ``dst``); on the host when ``capabilities.server_side_copy``.

        This default downloads to a temporary file and uploads it again.
        """
        validate_key(src, "src")
        validate_key(dst, "dst")
        with tempfile.TemporaryDirectory(prefix="oaiod-copy-") as folder:
            local = Path(folder) / "object"
            self.get_file(src, local)
            self.put_file(dst, local)

    def copy_many(self, pairs: Iterable[tuple[str, str]], *, progress: Progress | None = None) -> None:
        """Make each ``dst`` a copy of its ``src`` for every ``(src, dst)`` pair, as :meth:`copy` does one.

        When it returns, every destination holds its source's content (visible; durable after :meth:`flush`).
        Otherwise it raises the error of the first pair that failed, in the order given (a missing source is
        :class:`ObjectNotFound` with ``key`` the source), and any of the destinations may have been written.
        Idempotent: calling it again with the same pairs finishes the job. Every key is validated before anything
        is copied; the pairs must be independent — a destination appears once and is not also a source of the same
        call (:class:`InvalidKey` otherwise). ``progress`` is called with the number of pairs finished (not bytes).

        This default calls :meth:`copy` on up to ``capabilities.max_connections`` threads (in the calling thread
        when that is 1); a host with a batch request or a cheaper primitive overrides it (``batch_copy``).
        """
        from oaiod.storage.toolkit import copy_on_threads, validate_pairs

        checked = validate_pairs(pairs)
        copy_on_threads(checked, self.copy, self.capabilities.max_connections, progress)

    def copy_prefix(self, src: str, dst: str, *, exclude: Collection[str] = frozenset()) -> int:
        """Copy every object in the folder ``src`` to the same relative key in the folder ``dst``, except those whose
        key relative to ``src`` is in ``exclude``; how many objects were copied.

        What it is for: the engine carries a version forward (design §4) at a cost that grows with what changed, not
        with the folder's size — a host with a cheaper primitive overrides this (the hub: one request whose body is
        ``exclude``, names copied by reference in its database). Each copy is as :meth:`copy` makes one (visible on
        return, durable after :meth:`flush`); objects already in ``dst`` that are not copied stay. Not atomic: when
        it raises, any part may have been copied; idempotent: calling it again finishes the job and returns the same
        count. Both prefixes are non-empty, validated as keys, and neither lies inside the other (:class:`InvalidKey`
        otherwise); an ``exclude`` entry that names nothing in ``src`` is ignored. A missing ``src`` copies nothing.

        This default lists ``src`` and hands the pairs to :meth:`copy_many` (Local's makes hard links).
        """
        src, dst = check_prefix_pair(src, dst)
        skip = set(exclude)
        cut = len(src) + 1
        pairs = [(info.key, f"{dst}/{info.key[cut:]}") for info in self.list(src) if info.key[cut:] not in skip]
        self.copy_many(pairs)
        return len(pairs)

    def put_many(
        self, items: Sequence[Transfer], *, progress: Progress | None = None, unpublished: bool = False
    ) -> builtins.list[Transferred]:
        """Store each item's local file under its key, as :meth:`put_file` does one; one result per item, in order.

        Items fail one by one: a failed item's result carries ``error`` (a :class:`StorageError`; a local file that
        is missing, unreadable or changed while it was read is :class:`LocalFileChanged`) and the others go on.
        Errors that concern the whole call (an unsafe key: :class:`InvalidKey`, checked before anything moves; the
        host refusing the batch itself) are raised. A key appears at most once per call. Stored objects are
        visible on return and durable after :meth:`flush`. ``progress`` gets bytes moved, as for ``put_file``.

        ``unpublished``: the keys lie under a prefix that nobody reads until the caller commits (the engine's new
        version, named only by its commit point, and removed by its journal when the commit does not happen), so
        each object need not be atomic on its own: a backend may write it in place instead of to a temp name and
        rename it (Local does). A failed item still leaves no object; a crash may leave a partial one there.

        This default calls :meth:`put_file` per item on up to ``capabilities.max_connections`` threads (in the
        calling thread when that is 1), with an ``lstat`` before and after each; a backend with worker processes
        or a batch request overrides it and sets ``capabilities.batch_transfer``.
        """
        from oaiod.storage.toolkit import map_on_threads, put_one, validate_transfers

        checked = validate_transfers(items)
        return list(map_on_threads(lambda item: put_one(self, item, progress), checked, self.capabilities))

    def get_many(self, items: Sequence[Transfer], *, progress: Progress | None = None) -> builtins.list[Transferred]:
        """Write each item's object to its local path, which must not exist: a new file, created exclusively.

        Each written file is complete, has the item's mtime and mode, and its result carries the sha256 of what
        was written and its stat; it is **not** fsynced (the caller syncs a whole batch:
        :func:`oaiod.storage.fsops.sync_filesystem`). A failed item leaves no file behind and its result carries
        ``error`` (:class:`ObjectNotFound` for a missing key, :class:`LocalFileChanged` when the local path exists);
        the others go on. Whole-call errors are raised as for :meth:`put_many`; a call that raises leaves no file of its
        items behind (a batch that fails midway removes what it wrote), so the same call can be made again.
        ``progress`` gets bytes moved.

        This default calls :meth:`get_file` per item (see :meth:`put_many`), then hashes the written file.
        """
        from oaiod.storage.toolkit import get_one, map_on_threads, validate_transfers

        checked = validate_transfers(items)
        return list(map_on_threads(lambda item: get_one(self, item, progress), checked, self.capabilities))

    def put_bytes(self, key: str, data: bytes) -> None:
        """Store ``data`` under ``key`` (for small objects; goes through :meth:`put_file`)."""
        with tempfile.TemporaryDirectory(prefix="oaiod-put-") as folder:
            local = Path(folder) / "object"
            local.write_bytes(data)
            self.put_file(key, local)

    def get_bytes(self, key: str) -> bytes:
        """The content of ``key`` (for small objects; goes through :meth:`get_file`)."""
        with tempfile.TemporaryDirectory(prefix="oaiod-get-") as folder:
            local = Path(folder) / "object"
            self.get_file(key, local)
            return local.read_bytes()

    def flush(self) -> None:
        """Make every object put or copied through this backend before the call durable (it survives a power loss).

        The durability contract: when ``put_file``/``copy``/``copy_many`` return, the object is visible (and atomic,
        see ``capabilities.atomic_put``); when ``flush()`` (or ``close()``) returns, every object put before it is
        durable. A caller that must not lose objects — the engine before its commit point — calls ``flush()`` once
        for a whole batch instead of paying one sync per object. Remote hosts are durable when a put returns:
        nothing to do, which is this default. A wrapper (:meth:`unwrap` names the backend it wraps) passes the call
        on, so a flush is never lost in a wrapper.
        """
        inner = self.unwrap()
        if inner is not None:
            inner.flush()

    def unwrap(self) -> Backend | None:
        """The backend this one wraps (:class:`oaiod.storage.wrappers.WrappingBackend`), or None for a backend that
        talks to its storage itself: what passes on the calls a wrapper does not override."""
        return None

    def close(self) -> None:  # noqa: B027 - an optional hook, empty by default
        """Release connections and helper processes; the backend is unusable afterwards."""

    def describe(self) -> str:
        """A one-line description for logs and reports, never holding a secret."""
        return self.csh_id or type(self).__name__

    def __enter__(self) -> Backend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.describe()}>"
