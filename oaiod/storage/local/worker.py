"""The file-moving side of :meth:`LocalBackend.put_many` / ``get_many``, run in worker processes or in-process.

Plain functions over plain tuples that import only the standard library (and :mod:`~oaiod.storage.fsops`, which
does too), so a worker process starts fast and pickling stays cheap. The caller (:mod:`oaiod.storage.local.backend`) has
already checked the keys, resolved and made the folders and refused symlinks leaving the root; here each item costs
as few system calls as it can:

* put: open the source, fstat, create a temp file beside the target (``O_EXCL|O_NOFOLLOW``), copy
  (``copy_file_range``, else read/write in bounded memory), fstat the source again (changed: fail), close, rename
  without replacing (an object there: fsync the temp file first, then rename over it).
* get: open the object, fstat, create the new local file (``O_EXCL|O_NOFOLLOW``, its mode), read + sha256 + write
  in one pass, futimens, fstat, close. No fsync: the caller syncs a whole batch.

Each item's answer is ``(size, mtime_ns, inode, sha256 or None)`` or, when it failed, ``(kind, errno, message)``
with a kind of :data:`FAILURES`; the caller turns that into a storage error. No exception escapes for an item.

A worker can be killed in the middle of an item. To let the caller clean up after it, each item's state is kept
in a shared byte per item (``marks``): :data:`CREATED` once its temp file (put) or new local file (get) exists,
:data:`DONE` once it is complete, back to 0 when a failed item removed its file itself.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import mmap
import os
import stat
from collections.abc import Callable, Iterator
from typing import Any

from oaiod.storage.fsops import fsync_path, rename_noreplace

#: must equal :data:`oaiod.storage.keys.TEMP_PREFIX` (not imported: this module imports the standard library and
#: the stdlib-only fsops alone)
TEMP_PREFIX = ".oaiod-tmp-"
CHUNK = 1024 * 1024  #: read/write buffer
COPY_PIECE = 64 * CHUNK  #: bytes per copy_file_range call (progress granularity for big files)

CREATED, DONE = 1, 2  #: item states in ``marks``

#: failure kinds: the local file of a put (missing, unreadable, not a file), changed while read; the local path of
#: a get exists, or failed on the local side; an object that is not a regular file; a failure of the storage side;
#: (set by the caller) an item whose worker died before it answered
SOURCE, CHANGED, EXISTS, LOCAL, NOT_OBJECT, HOST, LOST = (
    "source",
    "changed",
    "exists",
    "local",
    "not-object",
    "host",
    "lost",
)
FAILURES = (SOURCE, CHANGED, EXISTS, LOCAL, NOT_OBJECT, HOST, LOST)

Answer = tuple[Any, ...]
Progress = Callable[[int], None] | None

_READ = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK  # NONBLOCK: a FIFO in place of a file must not hang a worker
_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
_kernel_copy = hasattr(os, "copy_file_range")  # False once the kernel refused it for these filesystems


class _SourceFailed(Exception):
    """Reading the source failed (as opposed to writing the destination)."""

    def __init__(self, error: OSError) -> None:
        self.error = error


# -- put -----------------------------------------------------------------------------------------------------------


def put_items(
    items: list[tuple[str, str]], token: str, in_place: bool, first: int, marks: Any, progress: Progress = None
) -> list[Answer]:
    """Store each ``(local_path, target_path)``; the temp file of item ``first + n`` is ``TEMP_PREFIX token n``
    (hex) beside its target, so the caller knows its name when a killed worker left it. ``in_place``: no temp
    file, the target is written directly (an unpublished prefix, see ``Backend.put_many``)."""
    return [
        _put(src, dst, None if in_place else f"{TEMP_PREFIX}{token}{first + n:x}", marks, first + n, progress)
        for n, (src, dst) in enumerate(items)
    ]


def _put(source: str, target: str, temp_name: str | None, marks: Any, index: int, progress: Progress) -> Answer:
    try:
        src = os.open(source, _READ)
    except OSError as exc:
        return (SOURCE, exc.errno, f"{source}: {exc.strerror}")
    try:
        before = os.fstat(src)
        if not stat.S_ISREG(before.st_mode):
            return (SOURCE, 0, f"{source} is not a regular file")
        temp = target if temp_name is None else f"{target.rpartition('/')[0]}/{temp_name}"
        marks[index] = CREATED  # before: a temp name is this item's alone, removing it can never hurt another file
        try:
            dst = _create(temp, 0o666, replace=temp_name is None)
        except OSError as exc:
            marks[index] = 0
            return (HOST, exc.errno, f"cannot create {temp}: {exc.strerror}")
        try:
            answer = _fill_and_rename(src, dst, before, source, temp, target, progress)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temp)
            marks[index] = 0
            raise
        marks[index] = DONE if len(answer) == 4 else 0
        return answer
    finally:
        os.close(src)


def _create(path: str, mode: int, *, replace: bool = False) -> int:
    """A new file (``O_EXCL``); its folder made again if it vanished since the caller made it. ``replace``: a name
    already there (what an earlier attempt at the same unpublished key left) is unlinked first — never written
    through, as it may be a hard link to another version's object."""
    try:
        return os.open(path, _CREATE, mode)
    except FileNotFoundError:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        return os.open(path, _CREATE, mode)
    except FileExistsError:
        if not replace:
            raise
        os.unlink(path)
        return os.open(path, _CREATE, mode)


def _fill_and_rename(src: int, dst: int, before: os.stat_result, source: str, temp: str, target: str,
                     progress: Progress) -> Answer:  # fmt: skip
    """Copy into the open temp file, check the source did not change, rename; the temp file removed on failure."""
    try:
        try:
            copied = _copy(src, dst, before.st_size, progress)
        except _SourceFailed as failed:
            _discard(dst, temp)
            return (SOURCE, failed.error.errno, f"cannot read {source}: {failed.error.strerror}")
        after = os.fstat(src)
        if copied != before.st_size or (after.st_size, after.st_mtime_ns) != (before.st_size, before.st_mtime_ns):
            _discard(dst, temp)
            return (CHANGED, 0, f"{source} changed while it was read")
        fd, dst = dst, -1  # closed even when close fails: never closed twice
        os.close(fd)
        if temp == target:  # written in place (an unpublished prefix)
            pass
        elif not rename_noreplace(temp, target):  # replacing an object: first its data, so that a power loss leaves
            fsync_path(temp)  # the old or the new one, never an empty file
            os.rename(temp, target)
    except OSError as exc:
        _discard(dst, temp)
        return (HOST, exc.errno, f"cannot store {target}: {exc.strerror}")
    return (before.st_size, before.st_mtime_ns, before.st_ino, None)


def _copy(src: int, dst: int, size: int, progress: Progress) -> int:
    """Copy up to ``size`` bytes from the current offsets; the number copied (less when the source shrank)."""
    global _kernel_copy
    copied = 0
    while _kernel_copy and copied < size:
        try:
            moved = os.copy_file_range(src, dst, min(size - copied, COPY_PIECE))
        except OSError as exc:
            if exc.errno not in (errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
                raise
            _kernel_copy = False
            break
        if not moved:
            return copied
        copied += moved
        if progress is not None:
            progress(moved)
    if copied < size:
        copied += _copy_by_chunks(src, dst, size - copied, progress, None)
    return copied


def _copy_by_chunks(src: int, dst: int, size: int, progress: Progress, digest: Any) -> int:
    """read/write ``size`` bytes through a bounded buffer, feeding ``digest``; the number copied (less at EOF).
    A read error is raised as :class:`_SourceFailed`."""
    buffer = bytearray(min(size, CHUNK))
    view = memoryview(buffer)
    copied = 0
    while copied < size:
        try:
            got = os.readv(src, [view[: min(size - copied, CHUNK)]])
        except OSError as exc:
            raise _SourceFailed(exc) from None
        if not got:
            break
        if digest is not None:
            digest.update(view[:got])
        written = 0
        while written < got:
            written += os.write(dst, view[written:got])
        copied += got
        if progress is not None:
            progress(got)
    return copied


# -- get -----------------------------------------------------------------------------------------------------------


def get_items(items: list[tuple[str, str, int | None, bool]], umask: int, first: int, marks: Any,
              progress: Progress = None) -> list[Answer]:  # fmt: skip
    """Write each ``(object_path, local_path, mtime_ns, executable)`` to its new local path."""
    return [_get(*item, umask, marks, first + n, progress) for n, item in enumerate(items)]


def _get(source: str, target: str, mtime_ns: int | None, executable: bool, umask: int, marks: Any, index: int,
         progress: Progress) -> Answer:  # fmt: skip
    try:
        src = os.open(source, _READ)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return (NOT_OBJECT, exc.errno, "a symlink is not an object")
        return (HOST, exc.errno, f"cannot read {source}: {exc.strerror}")
    try:
        info = os.fstat(src)
        if not stat.S_ISREG(info.st_mode):
            return (NOT_OBJECT, 0, "not an object (a folder or special file)")
        try:
            dst = os.open(target, _CREATE, (0o777 if executable else 0o666) & ~umask)
        except FileExistsError:
            return (EXISTS, errno.EEXIST, f"{target} exists; not replacing it")
        except OSError as exc:
            return (LOCAL, exc.errno, f"cannot create {target}: {exc.strerror}")
        marks[index] = CREATED  # after: a path that existed is not ours (a kill just before this leaves an empty file)
        answer = _write_new_file(src, dst, info.st_size, target, mtime_ns, progress)
        marks[index] = DONE if len(answer) == 4 else 0
        return answer
    finally:
        os.close(src)


def _write_new_file(src: int, dst: int, size: int, target: str, mtime_ns: int | None, progress: Progress) -> Answer:
    """Fill the new file with its sha256 on the way, set its mtime, stat it; removed again on failure."""
    try:
        try:
            if size <= CHUNK:
                data = _read_small(src, size)
                digest = hashlib.sha256(data)
                view, written = memoryview(data), 0
                while written < len(data):
                    written += os.write(dst, view[written:])
                if progress is not None and data:
                    progress(len(data))
            else:
                digest = hashlib.sha256()
                _copy_by_chunks(src, dst, size, progress, digest)
        except _SourceFailed as failed:
            _discard(dst, target)
            return (HOST, failed.error.errno, f"cannot read the object: {failed.error.strerror}")
        if mtime_ns is not None:
            os.utime(dst, ns=(mtime_ns, mtime_ns))
        written_info = os.fstat(dst)
        fd, dst = dst, -1  # closed even when close fails: never closed twice
        os.close(fd)
    except BaseException as exc:
        _discard(dst, target)
        if isinstance(exc, OSError):
            return (LOCAL, exc.errno, f"cannot write {target}: {exc.strerror}")
        raise
    return (written_info.st_size, written_info.st_mtime_ns, written_info.st_ino, digest.hexdigest())


def _read_small(src: int, size: int) -> bytes:
    if not size:
        return b""
    try:
        data = os.read(src, size)
        while len(data) < size:  # a short read of a regular file is rare (a signal); finish it
            more = os.read(src, size - len(data))
            if not more:
                break
            data += more
    except OSError as exc:
        raise _SourceFailed(exc) from None
    return data


def _discard(fd: int, path: str) -> None:
    """Close ``fd`` (unless -1) and remove ``path``, ignoring errors: the file is given up."""
    if fd >= 0:
        with contextlib.suppress(OSError):
            os.close(fd)
    with contextlib.suppress(OSError):
        os.unlink(path)


# -- in a worker process -------------------------------------------------------------------------------------------


@contextlib.contextmanager
def shared_marks(path: str) -> Iterator[mmap.mmap]:
    """The caller's marks file, mapped shared: what this process writes there the caller sees, even if it dies."""
    fd = os.open(path, os.O_RDWR)
    try:
        marks = mmap.mmap(fd, 0)
    finally:
        os.close(fd)
    try:
        yield marks
    finally:
        marks.close()


def put_chunk(marks_path: str, token: str, in_place: bool, first: int, items: list[tuple[str, str]]) -> list[Answer]:
    """:func:`put_items` in a worker process, marking the caller's shared marks file."""
    with shared_marks(marks_path) as marks:
        return put_items(items, token, in_place, first, marks)


def get_chunk(marks_path: str, umask: int, first: int, items: list[tuple[str, str, int | None, bool]]) -> list[Answer]:
    """:func:`get_items` in a worker process, marking the caller's shared marks file."""
    with shared_marks(marks_path) as marks:
        return get_items(items, umask, first, marks)
