"""Filesystem calls the durable, no-overwrite writes of Local storage, the hub's blob store and the engine share.

* :func:`sync_filesystem`: one ``syncfs(2)`` makes a whole batch durable instead of an fsync per file and folder.
* :func:`start_writeback`: writing a file's bytes to disk starts as they are written, so the sync that later makes
  a batch durable waits for the last bytes only, not for the whole batch.
* :func:`rename_noreplace`: a rename that never replaces what appeared at the target meanwhile (Linux
  ``renameat2(RENAME_NOREPLACE)``; elsewhere a hard link and an unlink), so "the target is absent" is checked
  and acted on in one system call rather than an ``lstat`` and a rename with a gap between them.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

PathLike = str | os.PathLike[str]

_AT_FDCWD = -100
_RENAME_NOREPLACE = 1
#: errors meaning "this call (or this filesystem) cannot do it", as opposed to a real failure of the rename
_UNSUPPORTED = frozenset({errno.ENOSYS, errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EPERM})


def _libc(name: str, argtypes: Sequence[type[Any]] = ()) -> Callable[..., int] | None:
    try:
        func = ctypes.CDLL(None, use_errno=True)[name]  # ctypes releases the GIL during the call
    except (AttributeError, OSError):
        return None
    if argtypes:
        func.argtypes = argtypes
    return func


_SYNCFS = _libc("syncfs")
_SYNC_FILE_RANGE = _libc("sync_file_range", [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint])
_SYNC_FILE_RANGE_WRITE = 2  #: start writeback of the range's dirty pages; do not wait for it
_RENAMEAT2 = _libc(  # glibc ≥ 2.28
    "renameat2", [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
)


def sync_filesystem(path: PathLike) -> bool:
    """Write out every dirty file of the filesystem holding the folder ``path`` (Linux ``syncfs(2)``): one call
    instead of an fsync per file and folder. False where the call does not exist (then fsync what you wrote)."""
    if _SYNCFS is None:
        return False
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        if _SYNCFS(fd) != 0:
            code = ctypes.get_errno()
            raise OSError(code, os.strerror(code), str(path))
    finally:
        os.close(fd)
    return True


def start_writeback(fd: int, offset: int = 0, length: int = 0) -> None:
    """Start writing the dirty bytes ``offset`` to ``offset + length`` (0: to the end) of the open file ``fd`` to
    disk, without waiting for them (Linux ``sync_file_range(SYNC_FILE_RANGE_WRITE)``). A hint, never a durability
    step: the fsync or ``syncfs`` that makes the file durable still runs, and finds its bytes written or on their
    way instead of starting a gigabyte at once (the kernel's own writeback waits up to 30 s). Does nothing where
    the call does not exist or fails."""
    if _SYNC_FILE_RANGE is not None:
        _SYNC_FILE_RANGE(fd, offset, length, _SYNC_FILE_RANGE_WRITE)


def fsync_path(path: PathLike) -> None:
    """fsync a file or folder by name (a folder: the renames in it); best effort where folders cannot be opened."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except IsADirectoryError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def rename_noreplace(source: PathLike, target: PathLike) -> bool:
    """Rename ``source`` to ``target`` only if nothing (file, folder, symlink) is at ``target``: True when renamed,
    False when something is there (``source`` is left as it was). Other failures raise ``OSError``.

    Atomic where the kernel offers it (Linux ``renameat2``) or the filesystem has hard links (link, then unlink the
    source). On a filesystem with neither the check and the rename are two calls (the last resort, logged nowhere:
    it is what a plain rename tool does).
    """
    global _RENAMEAT2
    src, dst = _encoded(source), _encoded(target)
    if _RENAMEAT2 is not None:
        if _RENAMEAT2(_AT_FDCWD, src, _AT_FDCWD, dst, _RENAME_NOREPLACE) == 0:
            return True
        code = ctypes.get_errno()
        if code == errno.EEXIST:
            return False
        if code not in _UNSUPPORTED:
            raise OSError(code, os.strerror(code), os.fsdecode(src), None, os.fsdecode(dst))
        if code == errno.ENOSYS:
            _RENAMEAT2 = None  # the kernel lacks it: do not ask again
    return _link_then_unlink(src, dst)


def _encoded(path: PathLike) -> bytes:
    """``os.fsencode`` without its Python-level dispatch for the common ``str`` (a call per renamed file)."""
    return path.encode(_FS_ENCODING, _FS_ERRORS) if isinstance(path, str) else os.fsencode(path)


_FS_ENCODING, _FS_ERRORS = sys.getfilesystemencoding(), sys.getfilesystemencodeerrors()


def _link_then_unlink(src: bytes, dst: bytes) -> bool:
    try:
        os.link(src, dst, follow_symlinks=False)
    except FileExistsError:
        return False
    except OSError as exc:
        if exc.errno not in _UNSUPPORTED and exc.errno != errno.EXDEV:
            raise
        if os.path.lexists(dst):
            return False
        os.rename(src, dst)
        return True
    with contextlib.suppress(FileNotFoundError):
        os.unlink(src)
    return True
