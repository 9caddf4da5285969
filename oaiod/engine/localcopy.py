"""Never download what the device already has (issue 13 §1): a pull's file whose content is here already — in any
synced folder's index (a rename, a move, a copy) or in the trash (a revert, a file restored from the trash) — is
copied from that local file into the download's temp file instead of fetched from storage.

The copy takes the download's place and nothing else changes (design §3): it is written to the same temp file
beside its target, gets the manifest's mtime and mode, is made durable by the batch's one ``syncfs`` and renamed
into place by the same no-replace rename, and its index row is written after the same barrier. Its guarantee is the
download's: the temp file holds exactly the wanted content, since its sha256 is computed from the bytes written
(while copying, or read back after a reflink) and compared with the manifest's. A source changed since it was
indexed, or while it is copied, fails that check and the file is downloaded instead; the source is only read.

A copy is a reflink (``FICLONE``: shared extents, no data written) where the filesystem offers one, else a plain
copy. Never a hard link: the user's two files would then be one, and an edit of either would change both.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import logging
import os
import stat as _stat
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from oaiod.engine.context import object_owner
from oaiod.engine.localfs import TRASH_FOLDER
from oaiod.model import CREATE_ACCESS_RIGHT
from oaiod.state.models import ObjectRow
from oaiod.state.repo import LocalSource, StateRepo
from oaiod.storage.base import Transferred
from oaiod.storage.toolkit import new_file_mode, set_local_meta

log = logging.getLogger("oaiod.engine.localcopy")

#: Linux ``FICLONE`` (``_IOW(0x94, 9, int)``): make the target share the source's extents (btrfs, XFS, bcachefs…)
FICLONE = 0x40049409
CHUNK = 1 << 20
#: candidates tried per file before it is downloaded instead (each failure is a file changed since it was indexed)
MAX_TRIES = 3


@dataclass(frozen=True, slots=True)
class Wanted:
    """A file a pull needs: its content (``sha256``, ``size``), the temp file to write it to (absent yet), and the
    mtime and executable bit the written file gets (as ``Backend.get_many`` gives them)."""

    key: str
    temp: str
    sha256: str
    size: int
    mtime_ns: int | None
    executable: bool


def source_roots(repo: StateRepo, row: ObjectRow, username: str) -> dict[str, str]:
    """The objects (oaio id -> local folder) whose files may serve a pull of ``row``: every object of this user's
    when ``row`` is one (registered by them); only ``row`` itself when another user shares it with them. A shared
    object's manifest is written by others, and a file served here from a private one would tell them which content
    this device holds (the hub sees no download of it): content crosses no owner boundary."""
    if not _is_mine(row, username):
        return {row.oaio_id: row.local_root} if row.local_root else {}
    return {
        obj.oaio_id: obj.local_root for obj in repo.objects(values=False) if obj.local_root and _is_mine(obj, username)
    }


def _is_mine(row: ObjectRow, username: str) -> bool:
    return row.csh_access_right == CREATE_ACCESS_RIGHT and object_owner(row.oaio_id) == username


def copy_from_local(repo: StateRepo, wanted: Sequence[Wanted], roots: Mapping[str, str]) -> dict[str, Transferred]:
    """Write each of ``wanted`` that has a source in the objects of ``roots`` (oaio id -> local folder: see
    :func:`source_roots`) into its temp file, verified; returns the ones written by ``key`` (their stat as written
    and their sha256, like ``get_many``). The others are left to download: their temp file is absent as before. A
    trash row whose file is gone or changed is forgotten."""
    if not wanted:
        return {}
    sources = repo.local_sources((item.sha256 for item in wanted), roots)
    done: dict[str, Transferred] = {}
    for item in wanted:
        candidates = [source for source in sources.get(item.sha256, ()) if source[2] == item.size]
        for source in candidates[:MAX_TRIES]:
            got = copy_verified(source, item)
            if got is not None:
                done[item.key] = got
                break
            if f"/{TRASH_FOLDER}/" in source[1]:
                repo.forget_trash(path=source[1])
    if done:
        log.debug("%d of %d files copied from local files instead of downloaded", len(done), len(wanted))
    return done


def copy_verified(source: LocalSource, item: Wanted) -> Transferred | None:
    """Copy ``source`` (still as indexed: a regular file of its size, mtime and inode) to ``item.temp`` and check the
    copy's sha256; None (and no temp file) when the source is not as indexed or the copy is not the wanted content.
    """
    _sha, path, size, mtime_ns, inode = source
    try:
        src = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        st = os.fstat(src)
        if not _stat.S_ISREG(st.st_mode) or (st.st_size, st.st_mtime_ns, st.st_ino) != (size, mtime_ns, inode):
            return None
        return _copy_into(src, item)
    finally:
        os.close(src)


def _copy_into(src: int, item: Wanted) -> Transferred | None:
    try:
        dst = os.open(
            item.temp, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, new_file_mode(item.executable)
        )
    except OSError as exc:
        log.debug("cannot create %s for a local copy: %s", item.temp, exc.strerror)
        return None
    written = False
    try:
        sha = _hash_of(dst) if _clone(src, dst) else _copy_and_hash(src, dst)
        if sha != item.sha256:
            log.info("%s changed while it was copied; downloading it instead", item.key)
            return None
        set_local_meta(item.temp, item.mtime_ns, item.executable)
        st = os.fstat(dst)
        written = True
        return Transferred(item.key, st.st_size, st.st_mtime_ns, st.st_ino, sha)
    except OSError as exc:  # e.g. a full disk: the download may fail the same way, and says so
        log.info("cannot copy %s from a local file (%s); downloading it instead", item.key, exc.strerror)
        return None
    finally:
        os.close(dst)
        if not written:
            with contextlib.suppress(OSError):
                os.unlink(item.temp)


def _clone(src: int, dst: int) -> bool:
    """Reflink ``src`` into the empty ``dst``; False where the filesystem cannot (then the caller copies)."""
    try:
        fcntl.ioctl(dst, FICLONE, src)
    except OSError as exc:
        if exc.errno not in (errno.EOPNOTSUPP, errno.ENOTTY, errno.EXDEV, errno.EINVAL, errno.ENOSYS, errno.EPERM):
            log.debug("reflink failed (%s); copying instead", exc.strerror)
        return False
    return True


def _hash_of(dst: int) -> str:
    """The sha256 of a reflinked copy, read back from the copy itself (what will be installed)."""
    digest = hashlib.sha256()
    offset = 0
    while chunk := os.pread(dst, CHUNK, offset):
        digest.update(chunk)
        offset += len(chunk)
    return digest.hexdigest()


def _copy_and_hash(src: int, dst: int) -> str:
    """Copy ``src`` into ``dst`` and return the sha256 of the bytes written (one read of the source)."""
    digest = hashlib.sha256()
    while chunk := os.read(src, CHUNK):
        digest.update(chunk)
        view = memoryview(chunk)
        while view:
            view = view[os.write(dst, view) :]
    return digest.hexdigest()
