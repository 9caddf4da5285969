"""The ``Local`` storage host: a folder on this machine (another disk, a NAS or USB mount).

Objects are files under ``root_folder``. Guarantees and choices:

* put writes a temporary file in the target folder and ``os.replace``-s it over the key: a reader (or a process
  killed meanwhile) sees the old or the new object, never a partial one. When the key already holds an object,
  the new file is fsynced before the rename, so even a power loss leaves the old or the new object.
* Durability is batched (the :meth:`Backend.flush` contract): a new object is durable once ``flush()`` or
  ``close()`` returned, which is one ``syncfs(2)`` of the storage filesystem (or, where that call does not exist,
  an fsync of every file and folder written since) instead of two fsyncs per object.
* Objects are never modified in place, only replaced by a rename. That makes ``copy`` by hard link safe: a
  later put of either key makes a new inode and leaves the other untouched. ``copy`` tries a reflink
  (``FICLONE``) first, then a hard link, then a streamed copy; once a reflink failed as unsupported it is not
  tried again. ``copy_many`` on a filesystem without reflinks makes each new destination with one ``link(2)``
  (folders checked once per call, no fsync: :meth:`LocalBackend.flush` makes the batch durable).
* ``root_folder`` must exist: a missing one usually means an unmounted disk, and writing to the empty mount
  point would fill the wrong disk.
* Symlinks are never followed: a key whose resolved path leaves the root is refused, listings skip symlinks.
* Deleting the last object of a folder removes the folders left empty, up to the root.
* ``put_many``/``get_many`` run a big batch (see :attr:`LocalBackend.process_threshold`) on worker processes
  (:mod:`oaiod.storage.local.pool`), a smaller one in the calling thread, with the same per-item code
  (:mod:`oaiod.storage.local.worker`): the keys' folders are checked for symlinks and made once per batch, each
  item costs a handful of system calls, and the guarantees above hold (atomic put, durability through ``flush``).
"""

from __future__ import annotations

import builtins
import contextlib
import errno
import fcntl
import logging
import os
import shutil
import stat as stat_mod
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, cast

from oaiod.errors import ConfigError
from oaiod.storage.base import Backend, Capabilities, ObjectInfo, PathLike, Progress, Transfer, Transferred
from oaiod.storage.errors import (
    LocalFileChanged,
    ObjectNotFound,
    PermanentStorageError,
    QuotaExceeded,
    StorageError,
    StoragePermissionDenied,
    TransientStorageError,
)
from oaiod.storage.fsops import fsync_path, sync_filesystem
from oaiod.storage.keys import TEMP_PREFIX, join_key, validate_key, validate_prefix
from oaiod.storage.local import worker
from oaiod.storage.local.pool import WorkerPool
from oaiod.storage.toolkit import (
    CHUNK_SIZE,
    UMASK,
    atomic_local_file,
    check_args,
    checked_listing,
    validate_pairs,
    validate_transfers,
)

log = logging.getLogger(__name__)

FICLONE = 0x40049409  # linux/fs.h: _IOW(0x94, 9, int)
COPY_CHUNK = 64 * CHUNK_SIZE

_NOT_FOUND = {errno.ENOENT, errno.ENOTDIR}
_DENIED = {errno.EACCES, errno.EPERM, errno.EROFS}
_FULL = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}
_TRANSIENT = {errno.EIO, errno.EAGAIN, errno.EINTR, errno.ETIMEDOUT, errno.ESTALE, errno.EBUSY}
_NO_REFLINK = {errno.EOPNOTSUPP, errno.ENOTTY, errno.EINVAL, errno.EXDEV}  #: FICLONE unsupported here


@contextlib.contextmanager
def translate_os_errors(key: str | None, what: str) -> Iterator[None]:
    """Turn an ``OSError`` raised in the block into the storage error tree."""
    try:
        yield
    except StorageError:
        raise
    except OSError as exc:
        raise error_for_errno(exc.errno, f"{what} {key!r}: {exc.strerror or exc}", key) from exc


def error_for_errno(code: int | None, message: str, key: str | None) -> StorageError:
    """The storage error for an ``OSError`` number of the storage side."""
    if code in _NOT_FOUND:
        return ObjectNotFound(message, key=key)
    if code in _DENIED:
        return StoragePermissionDenied(message, key=key)
    if code in _FULL:
        return QuotaExceeded(message, key=key)
    if code in _TRANSIENT:
        return TransientStorageError(message, key=key)
    return PermanentStorageError(message, key=key)


def item_error(answer: worker.Answer, key: str) -> StorageError:
    """The storage error for a failed item's ``(kind, errno, message)`` answer of :mod:`.worker`."""
    kind, code, message = answer
    if kind in (worker.SOURCE, worker.CHANGED, worker.EXISTS):
        return LocalFileChanged(message, key=key)
    if kind == worker.NOT_OBJECT:
        return ObjectNotFound(f"{key!r} is {message}", key=key)
    if kind == worker.LOST:
        return TransientStorageError(message, key=key)
    if kind == worker.LOCAL:  # this device's side: its disk full is a quota (waits for room), not a conflict
        if code in _FULL:
            return QuotaExceeded(message, key=key)
        return TransientStorageError(message, key=key) if code in _TRANSIENT else LocalFileChanged(message, key=key)
    return error_for_errno(code, message, key)


def copy_fd(src: int, dst: int, progress: Progress | None) -> None:
    """Copy all of ``src`` to ``dst`` in the kernel where possible (``copy_file_range``), else by chunks."""
    use_kernel = hasattr(os, "copy_file_range")
    buffer = bytearray(CHUNK_SIZE)
    view = memoryview(buffer)
    while True:
        if use_kernel:
            try:
                moved = os.copy_file_range(src, dst, COPY_CHUNK)
            except OSError as exc:
                if exc.errno not in (errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
                    raise
                use_kernel = False
                continue
        else:
            moved = os.readv(src, [view])
            written = 0
            while written < moved:
                written += os.write(dst, view[written:moved])
        if not moved:
            return
        if progress is not None:
            progress(moved)


def fsync_dir(path: Path) -> None:
    """Make a rename in ``path`` durable (best effort where directories cannot be opened)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class LocalBackend(Backend):
    """Objects as files under a folder of this machine."""

    csh_id = "Local"
    #: one call at a time: its calls are system calls bound by this machine's CPU, and Python threads running them
    #: hand the GIL over at every call (8 threads moved 4 KiB files at half the rate of 1, with twice the CPU)
    #: (batch transfers go to worker processes instead, see put_many)
    capabilities = Capabilities(
        server_side_copy=True, atomic_put=True, max_connections=1, batch_copy=True, batch_transfer=True
    )
    #: a put_many/get_many of at least this many items runs on the worker processes while they run, a smaller one
    #: in this thread; starting them (about 0.2 s, the first time a fork server too) waits for a batch of at least
    #: ``pool_start_threshold`` items
    process_threshold = 256
    pool_start_threshold = 1024

    def __init__(self, root_folder: PathLike) -> None:
        root = Path(root_folder).expanduser()
        if not root.is_dir():
            raise ConfigError("root_folder", f"{root} is not an existing folder (is the disk mounted?)")
        self.root = root.resolve()
        self._unsynced_lock = threading.Lock()
        self._unsynced: set[str] = set()  # paths written since the last flush (files and their folders)
        self._made_folders: set[str] = set()  # key folders checked and made since the last flush
        self._reflinks = True  # False once FICLONE failed as unsupported on this filesystem
        #: the worker processes of big batches (none until the first one; idle ones shut down)
        self.pool = WorkerPool()

    def _written(self, path: Path) -> None:
        """Note a file (renamed into place) that the next flush must make durable, with its folder."""
        with self._unsynced_lock:
            self._unsynced.add(str(path))
            self._unsynced.add(str(path.parent))

    def flush(self) -> None:
        """One ``syncfs`` of the storage filesystem; else an fsync of every file and folder written since the last
        flush. Afterwards every object put or copied before the call survives a power loss."""
        with self._unsynced_lock:
            pending, self._unsynced = self._unsynced, set()
            self._made_folders.clear()
        if not pending:
            return
        try:
            with translate_os_errors(None, f"cannot sync {self.root}"):
                if not sync_filesystem(self.root):
                    for path in sorted(pending, key=lambda p: p.count("/"), reverse=True):  # files, then folders
                        with contextlib.suppress(FileNotFoundError):
                            fsync_path(path)
        except BaseException:
            with self._unsynced_lock:
                self._unsynced |= pending  # not durable yet: the next flush tries again
            raise

    def close(self) -> None:
        try:
            self.flush()
        finally:
            self.pool.close()

    @classmethod
    def from_args(cls, args: Mapping[str, Any]) -> LocalBackend:
        checked = check_args(args, cls.csh_id, required=("root_folder",))
        return cls(checked["root_folder"])

    def describe(self) -> str:
        return f"Local {self.root}"

    # -- paths ------------------------------------------------------------------------------------------------

    def _path(self, key: str, fld: str = "key") -> Path:
        """The path of a validated ``key``; refused if an existing symlink would lead it out of the root.

        Only the components below the (resolved) root can be symlinks: they are lstat-ed up to the first missing
        one, and only a symlink among them costs a full ``realpath``.
        """
        parts = validate_key(key, fld).split("/")
        path = self.root.joinpath(*parts)
        current = str(self.root)
        for part in parts:
            current = f"{current}/{part}"
            try:
                mode = os.lstat(current).st_mode
            except (FileNotFoundError, NotADirectoryError):
                break
            except OSError:
                break  # the operation itself reports it
            if stat_mod.S_ISLNK(mode):
                resolved = Path(os.path.realpath(path))
                if not resolved.is_relative_to(self.root):
                    raise StoragePermissionDenied(f"key {key!r} leads out of {self.root} through a symlink", key=key)
                break
        return path

    def _dst_path(self, key: str, fld: str = "key") -> Path:
        """:meth:`_path` of a key to write, with its folders made. Folders made since the last flush are remembered
        (a version's files share a few folders), which saves two system calls per object; the symlink check still
        runs for every key."""
        path = self._path(key, fld)
        parent = key.rpartition("/")[0]
        with self._unsynced_lock:
            known = parent in self._made_folders
        if not known:
            path.parent.mkdir(parents=True, exist_ok=True)
            with self._unsynced_lock:
                self._made_folders.add(parent)
        return path

    def _prune_empty_parents(self, path: Path) -> None:
        """Remove the folders above ``path`` that are left empty, stopping at the root."""
        with self._unsynced_lock:
            self._made_folders.clear()
        folder = path.parent
        while folder != self.root and folder.is_relative_to(self.root):
            try:
                folder.rmdir()
            except OSError:
                return
            folder = folder.parent

    def _regular_file_info(self, key: str, path: Path) -> ObjectInfo:
        info = path.lstat()
        if not stat_mod.S_ISREG(info.st_mode):
            raise ObjectNotFound(f"{key!r} is not an object (a folder or special file)", key=key)
        return ObjectInfo(key=key, size=info.st_size, mtime=info.st_mtime)

    # -- primitives -------------------------------------------------------------------------------------------

    def put_file(self, key: str, local_path: PathLike, *, progress: Progress | None = None) -> None:
        with translate_os_errors(key, "cannot store"):
            path = self._dst_path(key)
            src = os.open(local_path, os.O_RDONLY)  # a raw fd: no buffer, no isatty probe
            try:
                self._replace_with(path, lambda dst: copy_fd(src, dst, progress))
            finally:
                os.close(src)

    def _replace_with(self, path: Path, fill: Any) -> None:
        """Write a temp file beside ``path`` with ``fill(fd)`` and rename it over ``path``; fsynced first only when
        it replaces an object (old or new after a power loss), otherwise durable at the next :meth:`flush`."""
        tmp = path.parent / f"{TEMP_PREFIX}{os.urandom(8).hex()}"
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
        try:
            fd = os.open(tmp, flags, 0o666)
        except FileNotFoundError:  # a remembered folder was deleted meanwhile (gc of another device): remake it
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(tmp, flags, 0o666)
        try:
            fill(fd)
            if os.path.lexists(path):
                os.fsync(fd)
            os.close(fd)
            fd = -1
            os.replace(tmp, path)
        except BaseException:
            if fd >= 0:
                os.close(fd)
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise
        self._written(path)

    def get_file(self, key: str, local_path: PathLike, *, progress: Progress | None = None, fsync: bool = True) -> None:
        path = self._path(key)
        with translate_os_errors(key, "cannot read"):
            src = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
            try:
                if not stat_mod.S_ISREG(os.fstat(src).st_mode):
                    raise ObjectNotFound(f"{key!r} is not an object (a folder or special file)", key=key)
                with atomic_local_file(local_path, fsync=fsync) as dst:
                    copy_fd(src, dst.fileno(), progress)
            finally:
                os.close(src)

    def stat(self, key: str) -> ObjectInfo:
        path = self._path(key)
        with translate_os_errors(key, "cannot stat"):
            return self._regular_file_info(key, path)

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        prefix = validate_prefix(prefix)
        start = self._path(prefix, "prefix") if prefix else self.root
        return checked_listing(self._walk(start, prefix), self.describe())

    def _walk(self, folder: Path, prefix: str) -> Iterator[ObjectInfo]:
        with translate_os_errors(prefix, "cannot list"):
            try:
                entries = sorted(os.scandir(folder), key=lambda entry: entry.name)
            except (FileNotFoundError, NotADirectoryError):
                return
        for entry in entries:
            key = join_key(prefix, entry.name)
            if entry.is_symlink():
                log.warning("skipping symlink %s in storage folder %s", entry.path, self.root)
            elif entry.is_dir(follow_symlinks=False):
                yield from self._walk(Path(entry.path), key)
            elif entry.is_file(follow_symlinks=False):
                with translate_os_errors(key, "cannot stat"):
                    info = entry.stat(follow_symlinks=False)
                yield ObjectInfo(key=key, size=info.st_size, mtime=info.st_mtime)

    def delete(self, key: str) -> None:
        path = self._path(key)
        with translate_os_errors(key, "cannot delete"):
            try:
                path.unlink()
            except FileNotFoundError:
                return
            except IsADirectoryError:
                raise PermanentStorageError(f"{key!r} is a folder; use delete_prefix", key=key) from None
        self._prune_empty_parents(path)

    # -- extras -----------------------------------------------------------------------------------------------

    def delete_prefix(self, prefix: str) -> None:
        prefix = validate_prefix(prefix)
        if not prefix:
            super().delete_prefix(prefix)  # refuses the empty prefix
        path = self._path(prefix, "prefix")
        with translate_os_errors(prefix, "cannot delete"):
            if not path.is_dir() or path.is_symlink():
                return
            shutil.rmtree(path)
        self._prune_empty_parents(path)

    def exists(self, key: str) -> bool:
        path = self._path(key)
        return path.is_file() and not path.is_symlink()

    def copy(self, src: str, dst: str) -> None:
        """Reflink, else hard link, else a kernel-side copy; always through a temp name renamed over ``dst``."""
        src_path = self._path(src, "src")
        with translate_os_errors(src, "cannot copy"):
            dst_path = self._dst_path(dst, "dst")
            src_fd = os.open(src_path, os.O_RDONLY | os.O_NOFOLLOW)
            try:
                if not stat_mod.S_ISREG(os.fstat(src_fd).st_mode):
                    raise ObjectNotFound(f"{src!r} is not an object", key=src)
                if not self._hard_link(src_fd, dst_path):
                    self._replace_with(dst_path, lambda fd: copy_fd(src_fd, fd, None))
            finally:
                os.close(src_fd)

    def _hard_link(self, src_fd: int, dst_path: Path) -> bool:
        """Make ``dst_path`` a reflink or hard link of ``src_fd``; False where the filesystem allows neither.

        The reflink shares blocks copy-on-write; the hard link shares the inode, which is safe because objects
        are only ever replaced by a rename, never written in place.
        """
        if self._reflinks:
            try:
                self._replace_with(dst_path, lambda fd: fcntl.ioctl(fd, FICLONE, src_fd))
                return True
            except OSError as exc:
                if exc.errno in _NO_REFLINK:
                    self._reflinks = False
        tmp = dst_path.parent / f"{TEMP_PREFIX}{os.urandom(8).hex()}"
        try:
            os.link(f"/proc/self/fd/{src_fd}", tmp, follow_symlinks=True)
        except OSError:
            return False
        try:
            os.replace(tmp, dst_path)
        except BaseException:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise
        self._written(dst_path)
        return True

    def copy_many(self, pairs: Iterable[tuple[str, str]], *, progress: Progress | None = None) -> None:
        """Without reflinks: each destination a hard link, made by one ``link(2)`` when it is new (else linked under
        a temp name and renamed over it), its folders checked for symlinks once per call; anything unusual (a
        missing source or folder, a filesystem without hard links) goes through :meth:`copy`. With reflinks (or
        before the first copy showed there are none): :meth:`copy` per pair."""
        checked = validate_pairs(pairs)
        folders: dict[tuple[str, str], Path] = {}  # (folder key, "src"/"dst") -> its checked path
        for src, dst in checked:
            if not (self._reflinks is False and self._link(src, dst, folders)):
                self.copy(src, dst)
            if progress is not None:
                progress(1)

    def _link(self, src: str, dst: str, folders: dict[tuple[str, str], Path]) -> bool:
        """``dst`` a hard link of ``src``; False when this fast path does not apply (the caller copies instead)."""
        src_path = self._checked_folder(src, "src", folders) / src.rpartition("/")[2]
        dst_path = self._checked_folder(dst, "dst", folders) / dst.rpartition("/")[2]
        with translate_os_errors(src, "cannot copy"):
            try:
                try:
                    os.link(src_path, dst_path, follow_symlinks=False)
                    made = dst_path
                except FileExistsError:
                    made = dst_path.parent / f"{TEMP_PREFIX}{os.urandom(8).hex()}"
                    os.link(src_path, made, follow_symlinks=False)
            except OSError:
                return False  # a missing source or folder, a folder as source, no hard links here: copy() decides
            if not stat_mod.S_ISREG(os.lstat(made).st_mode):  # a symlink or special file is not an object
                made.unlink()
                raise ObjectNotFound(f"{src!r} is not an object", key=src)
            if made != dst_path:
                os.replace(made, dst_path)
        self._written(dst_path)
        return True

    def _checked_folder(self, key: str, fld: str, folders: dict[tuple[str, str], Path]) -> Path:
        """The folder of ``key``, checked for symlinks leaving the root (and made, for a destination) once."""
        parent = key.rpartition("/")[0]
        path = folders.get((parent, fld))
        if path is None:
            checked = self._dst_path(key, fld) if fld == "dst" else self._path(key, fld)
            path = folders[(parent, fld)] = checked.parent
        return path

    # -- batch transfers ----------------------------------------------------------------------------------------

    def put_many(
        self, items: Sequence[Transfer], *, progress: Progress | None = None, unpublished: bool = False
    ) -> builtins.list[Transferred]:
        """Each item as :meth:`put_file` stores one (temp file + rename; ``unpublished``: written in place, one
        rename less per file), with the local file's stat checked before and after reading it; folders checked and
        made once per batch; durable at the next :meth:`flush`."""
        checked = validate_transfers(items)
        results, folders, places, paths = self._place_batch(checked, make=True)
        tasks = [(os.fspath(checked[index].local_path), path) for index, path in zip(places, paths, strict=True)]
        token = os.urandom(6).hex()
        answers, marks = self._run_batch(worker.put_items, worker.put_chunk, (token, unpublished), tasks, progress)
        written = [str(folder) for folder in folders.values() if isinstance(folder, str)]
        for position, (index, answer) in enumerate(zip(places, answers, strict=True)):
            key, target = checked[index].key, tasks[position][1]
            if len(answer) == 4:
                results[index] = Transferred(key, *answer)
                written.append(target)
                continue
            results[index] = Transferred(key, error=item_error(answer, key))
            if marks and marks[position] == worker.DONE:  # renamed into place by a worker that died afterwards
                written.append(target)
            elif marks and marks[position] == worker.CREATED:  # its temp file (or partial object), left by a worker
                with contextlib.suppress(OSError):  # that died
                    os.unlink(
                        target if unpublished else f"{target.rpartition('/')[0]}/{TEMP_PREFIX}{token}{position:x}"
                    )
        with self._unsynced_lock:
            self._unsynced.update(written)
        return cast("builtins.list[Transferred]", results)  # every place filled: by _place_batch or above

    def get_many(self, items: Sequence[Transfer], *, progress: Progress | None = None) -> builtins.list[Transferred]:
        """Each object read once into a new local file (``O_EXCL``) with its sha256 computed on the way, then its
        mtime set; no fsync (the caller syncs). The keys' folders are checked for symlinks once per batch."""
        checked = validate_transfers(items)
        results, _folders, places, paths = self._place_batch(checked, make=False)
        tasks = [
            (path, os.fspath(item.local_path), item.mtime_ns, item.executable)
            for item, path in zip((checked[index] for index in places), paths, strict=True)
        ]
        answers, marks = self._run_batch(worker.get_items, worker.get_chunk, (UMASK,), tasks, progress)
        for position, (index, answer) in enumerate(zip(places, answers, strict=True)):
            key = checked[index].key
            if len(answer) == 4:
                results[index] = Transferred(key, *answer)
                continue
            results[index] = Transferred(key, error=item_error(answer, key))
            if marks and marks[position] in (worker.CREATED, worker.DONE):  # left by a worker that died: ours
                with contextlib.suppress(OSError):
                    os.unlink(tasks[position][1])
        return cast("builtins.list[Transferred]", results)  # every place filled: by _place_batch or above

    def _place_batch(
        self, checked: builtins.list[Transfer], *, make: bool
    ) -> tuple[
        builtins.list[Transferred | None], dict[str, str | StorageError], builtins.list[int], builtins.list[str]
    ]:
        """Where each item's object lies: ``(results, folders, places, paths)`` — the items whose key folder is
        refused already have their result (the rest ``None``); ``places`` are the indexes of the others, ``paths``
        their object paths, in the same order. Each key folder is checked (and made when ``make``) once."""
        results: list[Transferred | None] = [None] * len(checked)
        folders: dict[str, str | StorageError] = {}
        places: list[int] = []
        paths: list[str] = []
        for index, item in enumerate(checked):
            head, _, name = item.key.rpartition("/")
            folder = folders[head] if head in folders else self._batch_folder(head, folders, make=make)
            if isinstance(folder, StorageError):
                results[index] = Transferred(item.key, error=folder)
                continue
            places.append(index)
            paths.append(f"{folder}/{name}")
        return results, folders, places, paths

    def _batch_folder(self, head: str, folders: dict[str, str | StorageError], *, make: bool) -> str | StorageError:
        """The path of the key folder ``head`` (``""``: the root) checked for symlinks leaving the root, and made
        when ``make``; or the error every item in it gets. Remembered in ``folders`` for the rest of the batch."""
        found: str | StorageError
        try:
            with translate_os_errors(head, "cannot store in" if make else "cannot read from"):
                path = self._path(head, "key") if head else self.root
                with self._unsynced_lock:
                    known = not make or not head or head in self._made_folders
                if not known:
                    path.mkdir(parents=True, exist_ok=True)
                    with self._unsynced_lock:
                        self._made_folders.add(head)
                found = str(path)
        except StorageError as exc:
            found = exc
        folders[head] = found
        return found

    def _run_batch(
        self,
        in_thread: Callable[..., builtins.list[worker.Answer]],
        in_process: Callable[..., builtins.list[worker.Answer]],
        head: tuple[Any, ...],
        tasks: builtins.list[Any],
        progress: Progress | None,
    ) -> tuple[builtins.list[worker.Answer], bytes | None]:
        """The answers for ``tasks``, from the worker processes for a big batch (with the marks the workers left,
        for cleaning up after one that died), else from this thread (and no marks)."""
        threshold = self.process_threshold if self.pool.running else self.pool_start_threshold
        if len(tasks) < max(1, threshold):
            return in_thread(tasks, *head, 0, bytearray(len(tasks)), progress), None

        def on_chunk(answers: list[worker.Answer]) -> None:
            if progress is not None:
                progress(sum(answer[0] for answer in answers if len(answer) == 4))

        try:
            run = self.pool.run(in_process, head, tasks, on_chunk)
        except OSError as exc:  # no shared marks file: nothing started yet
            log.warning("no worker processes for %d items (%s); moving them in this thread", len(tasks), exc)
            return in_thread(tasks, *head, 0, bytearray(len(tasks)), progress), None
        return run.answers, run.marks
