"""What storage backends are built with, beside the interface of :mod:`oaiod.storage.base`:

* **batching** — checked ``copy_many`` pairs and ``put_many``/``get_many`` items (checked once, passed on by
  wrappers unchecked), pairs and items run on a bounded number of threads, one item of the per-item defaults;
* **local I/O** — a downloaded file written atomically (temp file, rename), its mode and mtime, the umask;
* **arguments** — ``csh_args`` checked by name, secret and boolean arguments, HTTPS required off loopback;
* listings cleaned of partial uploads and unsafe keys.
"""

from __future__ import annotations

import contextlib
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
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlsplit

from oaiod.errors import ConfigError
from oaiod.storage.base import Backend, Capabilities, ObjectInfo, PathLike, Progress, Transfer, Transferred
from oaiod.storage.errors import InvalidKey, LocalFileChanged, StorageError
from oaiod.storage.keys import TEMP_PREFIX, validate_key

log = logging.getLogger(__name__)

CHUNK_SIZE = 1024 * 1024


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
        backend.get_file(item.key, item.local_path, progress=progress, fsync=False)  # get_many's caller syncs
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


@contextlib.contextmanager
def atomic_local_file(local_path: PathLike, *, fsync: bool = True) -> Iterator[IO[bytes]]:
    """A temporary file beside ``local_path`` that becomes it (flushed, fsynced, renamed) when the block succeeds.

    On any error the temporary file is removed and ``local_path`` is left as it was. ``fsync=False`` leaves the
    sync to the caller, who makes a whole batch durable at once (``Backend.get_file``'s ``fsync``); atomicity is
    the same (temp + rename: a reader or a killed process never sees a partial file).
    """
    target = Path(local_path)
    fd, tmp = tempfile.mkstemp(prefix=TEMP_PREFIX, dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as file:
            yield file
            file.flush()
            if fsync:
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
