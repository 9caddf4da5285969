"""The storage backend interface: a handful of primitives with contracts, and slow correct defaults for extras.

A backend stores opaque objects under keys (see :mod:`oaiod.storage.keys`) on one cloud storage host. The sync
engine sees only this interface and reads :class:`Capabilities` instead of checking classes. Backends raise only
the errors of :mod:`oaiod.storage.errors`. Keys are validated by the backend on the way in and out.
"""

from __future__ import annotations

import abc
import builtins
import contextlib
import contextvars
import hashlib
import ipaddress
import logging
import os
import secrets
import stat as stat_mod
import tempfile
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, ClassVar
from urllib.parse import urlsplit

from oaiod.errors import ConfigError
from oaiod.storage.errors import InvalidKey, LocalFileChanged, ObjectNotFound, StorageError
from oaiod.storage.keys import TEMP_PREFIX, validate_key, validate_prefix

log = logging.getLogger(__name__)

#: called with the number of bytes moved by each chunk of a transfer (may block: the bandwidth limit does)
Progress = Callable[[int], None]
PathLike = str | os.PathLike[str]

CHUNK_SIZE = 1024 * 1024


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
    time of writing) and mode ``0o777 & ~umask`` when executable, else ``0o666 & ~umask``.
    """

    key: str
    local_path: str
    mtime_ns: int | None = None
    executable: bool = False


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
    def get_file(self, key: str, local_path: PathLike, *, progress: Progress | None = None) -> None:
        """Write the object ``key`` to ``local_path``: a complete, fsynced file, or an error and no change there.

        Streamed into a temporary file beside ``local_path`` (see :func:`atomic_local_file`), then renamed.
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
        checked = validate_pairs(pairs)
        copy_on_threads(checked, self.copy, self.capabilities.max_connections, progress)

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
        checked = validate_transfers(items)
        return list(map_on_threads(lambda item: put_one(self, item, progress), checked, self.capabilities))

    def get_many(self, items: Sequence[Transfer], *, progress: Progress | None = None) -> builtins.list[Transferred]:
        """Write each item's object to its local path, which must not exist: a new file, created exclusively.

        Each written file is complete, has the item's mtime and mode, and its result carries the sha256 of what
        was written and its stat; it is **not** fsynced (the caller syncs a whole batch, see
        :func:`sync_filesystem`). A failed item leaves no file behind and its result carries ``error``
        (:class:`ObjectNotFound` for a missing key, :class:`LocalFileChanged` when the local path exists); the
        others go on. Whole-call errors are raised as for :meth:`put_many`; a call that raises leaves no file of its
        items behind (a batch that fails midway removes what it wrote), so the same call can be made again.
        ``progress`` gets bytes moved.

        This default calls :meth:`get_file` per item (see :meth:`put_many`), then hashes the written file.
        """
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


# -- helpers shared by backends ---------------------------------------------------------------------------------


class CheckedPairs(list[tuple[str, str]]):
    """Pairs that :func:`validate_pairs` checked: a wrapper passes them on and the backend it wraps does not check
    them again (checking a key costs ~15 µs: 100,000 pairs checked in each of four layers would take 12 s)."""


def validate_pairs(pairs: Iterable[tuple[str, str]]) -> CheckedPairs:
    """The ``(src, dst)`` pairs of :meth:`Backend.copy_many` as a list, every key checked; :class:`InvalidKey` for
    an unsafe key, a destination named twice, or one that is also a source (the pairs must be independent).
    :class:`CheckedPairs` are returned as they are."""
    if isinstance(pairs, CheckedPairs):
        return pairs
    checked = CheckedPairs()
    sources: set[str] = set()
    destinations: set[str] = set()
    for pair in pairs:
        if not isinstance(pair, tuple | list) or len(pair) != 2:
            raise InvalidKey("pairs", f"each pair is (src, dst), not {str(pair)[:80]!r}")
        src, dst = validate_key(pair[0], "src"), validate_key(pair[1], "dst")
        if dst in destinations:
            raise InvalidKey("dst", f"{dst[:200]!r} is the destination of two pairs")
        checked.append((src, dst))
        sources.add(src)
        destinations.add(dst)
    both = sources & destinations
    if both:
        raise InvalidKey("dst", f"{min(both)[:200]!r} is both a source and a destination; copy in two calls")
    return checked


def copy_on_threads(
    pairs: list[tuple[str, str]], copy: Callable[[str, str], None], workers: int, progress: Progress | None = None
) -> None:
    """``copy(src, dst)`` for every pair on up to ``workers`` threads (none when that is 1), at most a few calls
    queued per thread (bounded memory for any number of pairs). The first failure in the order of ``pairs`` is
    raised; the copies not started yet are cancelled and those running finish first."""
    if workers <= 1 or len(pairs) <= 1:
        for src, dst in pairs:
            copy(src, dst)
            if progress is not None:
                progress(1)
        return
    window: deque[Future[None]] = deque()
    with ThreadPoolExecutor(max_workers=min(workers, len(pairs)), thread_name_prefix="oaiod-copy") as pool:
        try:
            for src, dst in pairs:
                if len(window) >= 4 * workers:
                    window.popleft().result()
                    if progress is not None:
                        progress(1)
                window.append(pool.submit(copy, src, dst))
            while window:
                window.popleft().result()
                if progress is not None:
                    progress(1)
        except BaseException:
            for future in window:
                future.cancel()
            raise


class CheckedTransfers(list[Transfer]):
    """Items that :func:`validate_transfers` checked: wrappers pass them on without checking them again."""


def validate_transfers(items: Sequence[Transfer]) -> list[Transfer]:
    """The items of a ``put_many``/``get_many`` as a list, every key checked; :class:`InvalidKey` for an unsafe key
    or one named twice. :class:`CheckedTransfers` are returned as they are."""
    if isinstance(items, CheckedTransfers):
        return items
    checked = CheckedTransfers(items)
    seen: set[str] = set()
    for item in checked:
        if not isinstance(item, Transfer):
            raise InvalidKey("items", f"each item is a Transfer, not {str(item)[:80]!r}")
        if validate_key(item.key) in seen:
            raise InvalidKey("key", f"{item.key[:200]!r} appears twice in one batch")
        seen.add(item.key)
    return checked


def map_on_threads(
    func: Callable[[Transfer], Transferred], items: list[Transfer], caps: Capabilities
) -> Iterator[Transferred]:
    """``map(func, items)`` on up to ``caps.max_connections`` threads, in order; in the calling thread when that is
    1 (with several threads each system call hands CPython's GIL over, which made 8 threads slower than 1 on
    CPU-bound local storage)."""
    workers = max(1, min(caps.max_connections, 8, len(items)))
    if workers == 1:
        yield from map(func, items)
        return
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="oaiod-transfer") as pool:
        yield from pool.map(func, items)


def _lstat(path: str) -> os.stat_result | None:
    try:
        return os.lstat(path)
    except OSError:
        return None


def put_one(backend: Backend, item: Transfer, progress: Progress | None) -> Transferred:
    """One item of the default :meth:`Backend.put_many`: ``put_file`` with the source's stat checked around it."""
    before = _lstat(item.local_path)
    if before is None or not stat_mod.S_ISREG(before.st_mode):
        return Transferred(
            item.key, error=LocalFileChanged(f"{item.local_path} is missing or not a file", key=item.key)
        )
    try:
        backend.put_file(item.key, item.local_path, progress=progress)
    except StorageError as exc:
        return Transferred(item.key, error=exc)
    after = _lstat(item.local_path)
    ident = (before.st_size, before.st_mtime_ns, before.st_ino)
    if after is None or (after.st_size, after.st_mtime_ns, after.st_ino) != ident:
        return Transferred(
            item.key, error=LocalFileChanged(f"{item.local_path} changed while it was read", key=item.key)
        )
    return Transferred(item.key, *ident)


def get_one(backend: Backend, item: Transfer, progress: Progress | None) -> Transferred:
    """One item of the default :meth:`Backend.get_many`: ``get_file`` to a new file, its meta set, then hashed."""
    if os.path.lexists(item.local_path):
        return Transferred(
            item.key, error=LocalFileChanged(f"{item.local_path} exists; not replacing it", key=item.key)
        )
    try:
        with caller_syncs_local_files():
            backend.get_file(item.key, item.local_path, progress=progress)
    except StorageError as exc:
        return Transferred(item.key, error=exc)
    try:
        set_local_meta(item.local_path, item.mtime_ns, item.executable)
        digest = hashlib.sha256()
        with open(item.local_path, "rb") as file:
            while chunk := file.read(CHUNK_SIZE):
                digest.update(chunk)
            st = os.fstat(file.fileno())
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(item.local_path)
        return Transferred(item.key, error=LocalFileChanged(f"{item.local_path}: {exc.strerror}", key=item.key))
    return Transferred(item.key, st.st_size, st.st_mtime_ns, st.st_ino, digest.hexdigest())


def set_local_meta(path: str, mtime_ns: int | None, executable: bool) -> None:
    """Give a file written by ``get_many`` its mtime and its mode (``0o777``/``0o666`` less the umask)."""
    os.chmod(path, new_file_mode(executable))
    if mtime_ns is not None:
        os.utime(path, ns=(mtime_ns, mtime_ns))


def _read_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


#: the process umask, read once at import (reading it means setting it, which is not thread-safe later)
UMASK = _read_umask()


def new_file_mode(executable: bool) -> int:
    """The mode a new file gets from ``open``: ``0o777`` (executable) or ``0o666``, less the umask."""
    return (0o777 if executable else 0o666) & ~UMASK


_CALLER_SYNCS_LOCAL_FILES: contextvars.ContextVar[bool] = contextvars.ContextVar("caller_syncs", default=False)


@contextlib.contextmanager
def caller_syncs_local_files() -> Iterator[None]:
    """In this block (this thread), :func:`atomic_local_file` — so ``get_file`` of the backends that use it — renames
    its complete file into place without an fsync: the caller takes over durability for a whole batch (the engine
    writes to temp files of its own and syncs them once before it renames them over anything; see design §3).

    Atomicity is unchanged (temp + rename: a reader or a killed process never sees a partial file); only a power
    loss before the caller's sync may lose the file.
    """
    token = _CALLER_SYNCS_LOCAL_FILES.set(True)
    try:
        yield
    finally:
        _CALLER_SYNCS_LOCAL_FILES.reset(token)


@contextlib.contextmanager
def atomic_local_file(local_path: PathLike) -> Iterator[IO[bytes]]:
    """A temporary file beside ``local_path`` that becomes it (flushed, fsynced, renamed) when the block succeeds.

    On any error the temporary file is removed and ``local_path`` is left as it was. Inside
    :func:`caller_syncs_local_files` the fsync is left to the caller.
    """
    target = Path(local_path)
    fd, tmp = tempfile.mkstemp(prefix=TEMP_PREFIX, dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as file:
            yield file
            file.flush()
            if not _CALLER_SYNCS_LOCAL_FILES.get():
                os.fsync(file.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def checked_listing(infos: Iterator[ObjectInfo], source: str) -> Iterator[ObjectInfo]:
    """``infos`` without partial uploads and without unsafe keys (each skipped one logged as a warning)."""
    for info in infos:
        if info.key.rsplit("/", 1)[-1].startswith(TEMP_PREFIX):
            continue
        try:
            validate_key(info.key)
        except InvalidKey as exc:
            log.warning("skipping unsafe key %r listed by %s: %s", info.key[:200], source, exc.reason)
            continue
        yield info


def check_args(
    args: Mapping[str, Any], csh_id: str, *, required: tuple[str, ...], optional: tuple[str, ...] = ()
) -> dict[str, Any]:
    """``args`` as a dict after checking that every required key is there and no unknown key is."""
    known = set(required) | set(optional)
    for key in args:
        if key not in known:
            raise ConfigError(key, f"unknown argument for {csh_id}; known: {', '.join(sorted(known))}")
    for key in required:
        if args.get(key) in (None, ""):
            raise ConfigError(key, f"missing argument for {csh_id}")
    return dict(args)


def secret_arg_names(*names: str) -> tuple[str, ...]:
    """Every accepted form of the secret arguments ``names`` (inline, ``_env``, ``_file``)."""
    return tuple(form for name in names for form in (name, f"{name}_env", f"{name}_file"))


def truthy_arg(args: Mapping[str, Any], key: str) -> bool:
    """A boolean argument given as a bool or as ``true``/``false``/``1``/``0``/``yes``/``no``."""
    value = args.get(key, False)
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("", "0", "false", "no", "off"):
        return False
    raise ConfigError(key, f"must be true or false, not {value!r}")


def is_loopback_host(host: str) -> bool:
    """True for ``localhost`` and loopback addresses (where plain HTTP stays on this machine)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def require_https(url: str, key: str, *, allow_http: bool) -> str:
    """``url`` without a trailing ``/``; plain HTTP only to a loopback host or where ``allow_http`` says so."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(key, f"must be an http(s) URL, not {url!r}")
    if parts.username or parts.password:
        raise ConfigError(key, "must not hold credentials; give username and password_env / password_file")
    if parts.scheme == "http" and not allow_http and not is_loopback_host(parts.hostname):
        raise ConfigError(key, f"{url} is plain HTTP to another machine; use https or set allow_http=true")
    return url.rstrip("/")


def random_token() -> str:
    """A random URL-safe token (for temporary names and helper passwords)."""
    return secrets.token_urlsafe(24)
