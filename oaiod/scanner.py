"""The local index step of a sync cycle: a stat walk of a root and hashing of only what changed (design §3.1).

The walk uses ``os.scandir`` and never follows a symlink: symlinks are skipped and reported. A file is hashed
(streamed sha256, 1 MiB buffers) only when its ``(size, mtime_ns, inode)`` differs from the index. A file that is
still being written — modified within the quiet period, or changed while it was hashed — is left for the next
cycle (reported as *unstable*). Ignored names (:mod:`oaiod.ignore`) and the folders of other objects' roots
(``exclude``) are not descended into.
"""

from __future__ import annotations

import hashlib
import logging
import os
import stat as _stat
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from oaiod.ignore import IgnoreRules
from oaiod.state.repo import FileStat

log = logging.getLogger("oaiod.scanner")

HASH_BUFFER = 1024 * 1024


@dataclass(frozen=True)
class LocalFile:
    """A regular file found by the walk: path relative to the root (``/``-separated) and its stat."""

    path: str
    size: int
    mtime_ns: int
    inode: int
    executable: bool

    @property
    def stat(self) -> FileStat:
        return FileStat(self.size, self.mtime_ns, self.inode)


@dataclass(frozen=True)
class HashedFile:
    """A changed file, hashed: its stat as it was before and after the hash (identical) and its sha256."""

    file: LocalFile
    sha256: str


@dataclass
class ScanResult:
    """What a scan of one root (or part of it) found."""

    changed: list[HashedFile] = field(default_factory=list)
    #: indexed as present under the scanned prefix, but gone from disk
    missing: list[str] = field(default_factory=list)
    #: still being written: left for the next cycle
    unstable: list[str] = field(default_factory=list)
    symlinks: list[str] = field(default_factory=list)
    #: could not be read (permissions, vanished while hashed…)
    unreadable: list[str] = field(default_factory=list)
    seen: int = 0


def file_sha256(path: Path | str) -> str:
    """The sha256 hex digest of a file, streamed in 1 MiB buffers."""
    digest = hashlib.sha256()
    with open(path, "rb", buffering=0) as handle:
        buffer = bytearray(HASH_BUFFER)
        view = memoryview(buffer)
        while count := handle.readinto(buffer):
            digest.update(view[:count])
    return digest.hexdigest()


def _local_file(rel: str, st: os.stat_result) -> LocalFile:
    return LocalFile(rel, st.st_size, st.st_mtime_ns, st.st_ino, bool(st.st_mode & _stat.S_IXUSR))


def walk(
    root: Path,
    prefix: str = "",
    *,
    ignore: IgnoreRules | None = None,
    exclude: frozenset[str] = frozenset(),
    on_symlink: Callable[[str], None] | None = None,
) -> Iterator[LocalFile]:
    """Regular files under ``root/prefix`` (or that one file), without following symlinks.

    ``exclude`` holds relative folders that belong to other objects; ignored and excluded folders are not entered.
    """
    ignore = ignore or IgnoreRules()
    start = root / prefix if prefix else root
    try:
        st = start.lstat()
    except OSError:
        return
    if _stat.S_ISLNK(st.st_mode):
        if on_symlink and prefix:
            on_symlink(prefix)
        return
    if _stat.S_ISREG(st.st_mode):
        if prefix and not ignore.ignored(prefix):
            yield _local_file(prefix, st)
        return
    if not _stat.S_ISDIR(st.st_mode) or (prefix and (prefix in exclude or ignore.ignored(prefix, is_dir=True))):
        return
    stack = [(str(start), prefix)]
    while stack:
        folder, rel_folder = stack.pop()
        try:
            entries = list(os.scandir(folder))
        except OSError as exc:
            log.warning("cannot list %s (%s); its files are left as indexed", folder, exc.strerror)
            continue
        for entry in entries:
            rel = f"{rel_folder}/{entry.name}" if rel_folder else entry.name
            try:
                if entry.is_symlink():
                    if on_symlink and not ignore.ignored(rel):
                        on_symlink(rel)
                elif entry.is_dir(follow_symlinks=False):
                    if rel not in exclude and not ignore.ignored(rel, is_dir=True):
                        stack.append((entry.path, rel))
                elif entry.is_file(follow_symlinks=False) and not ignore.ignored(rel):
                    yield _local_file(rel, entry.stat(follow_symlinks=False))
            except OSError:
                continue  # vanished between listing and stat: the watcher or the next scan sees it


def scan(
    root: Path,
    indexed: dict[str, FileStat],
    prefix: str = "",
    *,
    ignore: IgnoreRules | None = None,
    exclude: frozenset[str] = frozenset(),
    quiet_period: float = 1.0,
) -> ScanResult:
    """Compare ``root/prefix`` with ``indexed`` (the index rows under ``prefix``) and hash what changed.

    An unchanged stat is never hashed. ``indexed`` entries not found on disk are reported missing (unless they lie
    in an excluded or ignored folder, which this scan does not look at).
    """
    result = ScanResult()
    seen: set[str] = set()
    now_ns = time.time_ns()
    quiet_ns = int(quiet_period * 1e9)
    for local in walk(root, prefix, ignore=ignore, exclude=exclude, on_symlink=result.symlinks.append):
        seen.add(local.path)
        result.seen += 1
        old = indexed.get(local.path)
        if (
            old is not None
            and old.present
            and (old.size, old.mtime_ns, old.inode)
            == (
                local.size,
                local.mtime_ns,
                local.inode,
            )
        ):
            continue
        if now_ns - local.mtime_ns < quiet_ns:
            result.unstable.append(local.path)
            continue
        hashed = _hash_stable(root, local, result)
        if hashed is not None:
            result.changed.append(hashed)
    for path, old in indexed.items():
        if old.present and path not in seen and not _outside_scan(path, exclude, ignore):
            result.missing.append(path)
    return result


def _outside_scan(path: str, exclude: frozenset[str], ignore: IgnoreRules | None) -> bool:
    parts = path.split("/")
    for depth in range(1, len(parts)):
        folder = "/".join(parts[:depth])
        if folder in exclude:
            return True
    return False


def _hash_stable(root: Path, local: LocalFile, result: ScanResult) -> HashedFile | None:
    """Hash ``local``; None (noted as unstable or unreadable) when it changed meanwhile or cannot be read."""
    full = root / local.path
    try:
        digest = file_sha256(full)
        after = full.lstat()
    except OSError as exc:
        log.info("cannot read %s (%s); trying again next cycle", full, exc.strerror)
        result.unreadable.append(local.path)
        return None
    if (after.st_size, after.st_mtime_ns, after.st_ino) != (local.size, local.mtime_ns, local.inode):
        result.unstable.append(local.path)
        return None
    return HashedFile(local, digest)
