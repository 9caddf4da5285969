"""The local index step of a sync cycle: a stat walk of a root and hashing of only what changed (design §3.1).

The walk uses ``os.scandir`` and never follows a symlink: symlinks are skipped and reported. A file is hashed
(streamed sha256, 1 MiB buffers) only when its ``(size, mtime_ns, inode)`` differs from the index. A file that is
still being written — modified within the quiet period, or changed while it was hashed — is left for the next
cycle (reported as *unstable*). Ignored names (:mod:`oaiod.engine.ignore`) and the folders of other objects' roots
(``exclude``) are not descended into.

An indexed file that the rules ignore now is not missing: it is reported as *ignored* (the index freezes its row
at the synced state, so it is neither uploaded nor deleted on the server); a frozen row whose file the walk finds
again is *unignored*, and one no longer ignored but absent from disk is *to restore* (design §6).
"""

from __future__ import annotations

import hashlib
import logging
import os
import stat as _stat
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from oaiod.engine.ignore import IgnoreRules
from oaiod.state.repo import FileStat, ScanRow, StatRow

log = logging.getLogger("oaiod.engine.scanner")

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
    #: indexed, not frozen yet, and ignored now: to freeze at the synced state
    ignored: list[str] = field(default_factory=list)
    #: frozen as ignored, and found again by the walk: syncs again from what is on disk
    unignored: list[str] = field(default_factory=list)
    #: frozen as ignored, no longer ignored, but absent from disk: to restore from the synced version
    restore: list[str] = field(default_factory=list)
    #: folders the walk entered and found nothing in to sync (no file, no folder it entered): they sync as folders
    empty_dirs: list[str] = field(default_factory=list)
    #: folders that could not be listed: what the index knows of them stays as it was
    unlisted: list[str] = field(default_factory=list)
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
    """Regular files under ``root/prefix`` (or that one file), without following symlinks, sorted by path.

    ``exclude`` holds relative folders that belong to other objects; ignored and excluded folders are not entered.
    """
    for rel, st in _walk_stats(root, prefix, ignore or IgnoreRules(), exclude, on_symlink, None):
        yield _local_file(rel, st)


def _walk_stats(
    root: Path,
    prefix: str,
    ignore: IgnoreRules,
    exclude: frozenset[str],
    on_symlink: Callable[[str], None] | None,
    on_unlisted: Callable[[str], None] | None,
    on_empty: Callable[[str], None] | None = None,
) -> Iterator[tuple[str, os.stat_result]]:
    """``(relative path, lstat)`` of every regular file, in code point order of the path (SQLite's binary order).

    Depth first, each folder's entries sorted by name with ``/`` appended to folders: a folder's files then come
    exactly where their paths sort (``a-b`` < ``a/x`` < ``a0``). ``on_unlisted`` hears of folders that cannot be
    listed, whose indexed files must be left alone rather than taken as deleted; ``on_empty`` of folders below the
    root that hold nothing to sync (see :func:`holds_content`).
    """
    start = root / prefix if prefix else root
    try:
        st = start.lstat()
    except OSError:
        return
    if _stat.S_ISLNK(st.st_mode):
        if on_symlink and prefix:
            on_symlink(prefix)
        return
    if prefix and (prefix in exclude or _outside_scan(prefix, exclude) or ignore.in_ignored_folder(prefix)):
        return
    if _stat.S_ISREG(st.st_mode):
        if prefix and not ignore.ignored(prefix):
            yield prefix, st
        return
    if not _stat.S_ISDIR(st.st_mode) or (prefix and ignore.ignored(prefix, is_dir=True)):
        return
    folder = f"{prefix}/" if prefix else ""
    unlisted: set[str] = set()  # not known to be empty

    def note_unlisted(rel: str) -> None:
        unlisted.add(rel)
        if on_unlisted is not None:
            on_unlisted(rel)

    def listing(path: str, rel: str) -> list[tuple[str, str, os.stat_result | None]]:
        return _listing(path, rel, ignore, note_unlisted)

    # a frame: (entries left, folder path, relative folder with "/", [holds content])
    stack = [(iter(listing(str(start), folder)), str(start), folder, [False])]
    while stack:
        entries, path, folder, content = stack[-1]
        for key, kind, file_stat in entries:
            if file_stat is not None:  # a file (only files carry their lstat)
                content[0] = True
                yield folder + key, file_stat
            elif kind is _FOLDER:
                name = key[:-1]
                rel = folder + name
                if rel in exclude:
                    content[0] = True  # another object's folder: this one is not empty
                elif not ignore.ignored_entry(rel, name, is_dir=True):
                    content[0] = True
                    inner = f"{path}/{name}"
                    stack.append((iter(listing(inner, rel + "/")), inner, rel + "/", [False]))
                    break  # descend now: the folder's files sort right here
            elif on_symlink is not None and not ignore.ignored(folder + key):
                on_symlink(folder + key)
        else:
            stack.pop()
            if on_empty is not None and folder and not content[0] and folder[:-1] not in unlisted:
                on_empty(folder[:-1])


def holds_content(root: Path, rel: str, ignore: IgnoreRules, exclude: frozenset[str] = frozenset()) -> bool | None:
    """Whether the folder ``root/rel`` holds anything to sync — a file the ignore rules keep, a folder they keep
    or another object's folder — as the walk decides it (a symlink is not synced: it does not count). None when
    it is not a folder (gone, a file, a symlink) or cannot be listed."""
    path = root / rel
    try:
        if not _stat.S_ISDIR(path.lstat().st_mode):
            return None
    except OSError:
        return None
    unlisted: list[str] = []
    entries = _listing(str(path), f"{rel}/", ignore, unlisted.append)
    if unlisted:
        return None
    for key, kind, _st in entries:
        if kind is _FILE:
            return True
        if kind is _FOLDER:
            name = key[:-1]
            if f"{rel}/{name}" in exclude or not ignore.ignored_entry(f"{rel}/{name}", name, is_dir=True):
                return True
    return False


_FILE, _FOLDER, _SYMLINK = "file", "folder", "symlink"  # entry kinds of a listing (compared by identity)
_OPEN_FOLDER = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def _listing(
    folder: str, rel: str, ignore: IgnoreRules, on_unlisted: Callable[[str], None] | None
) -> list[tuple[str, str, os.stat_result | None]]:
    """The entries of ``folder`` (``rel``: its relative path with ``/``, or "") in walk order: ``(sort key, kind,
    lstat of a file)``, the key a folder's name with ``/`` appended. Ignored files are left out. [] (reported) when
    it cannot be listed.

    Each file is stat-ed here, relative to the open folder (``fstatat``: no walk of the whole path per file, about
    a tenth of a rescan), so a folder is open only while it is listed, however deep the walk goes.
    """
    listed: list[tuple[str, str, os.stat_result | None]] = []
    try:
        fd = os.open(folder, _OPEN_FOLDER)  # O_NOFOLLOW: a folder swapped for a symlink meanwhile is not entered
        try:
            with os.scandir(fd) as it:
                for entry in it:
                    try:
                        if entry.is_dir(follow_symlinks=False):
                            listed.append((entry.name + "/", _FOLDER, None))
                        elif entry.is_file(follow_symlinks=False):
                            if not ignore.ignored_entry(rel + entry.name, entry.name):
                                listed.append((entry.name, _FILE, entry.stat(follow_symlinks=False)))
                        elif entry.is_symlink():
                            listed.append((entry.name, _SYMLINK, None))
                    except OSError:
                        continue  # vanished between listing and stat: the watcher or the next scan sees it
        finally:
            os.close(fd)
    except OSError as exc:
        log.warning("cannot list %s (%s); its files are left as indexed", folder, exc.strerror)
        if on_unlisted is not None:
            on_unlisted(rel.rstrip("/"))
        return []
    listed.sort(key=_first)
    return listed


def _first(item: tuple[str, str, os.stat_result | None]) -> str:
    return item[0]


def _utf8(name: str) -> bool:
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


#: an index row as :func:`scan` reads it: a StatRow, or a ScanRow or one made of a FileStat (executable None: not
#: compared)
_IndexRow = StatRow | tuple[str, int, int, int, bool, bool, bool | None]


def scan(
    root: Path,
    indexed: Iterable[StatRow] | Iterable[ScanRow] | Mapping[str, FileStat],
    prefix: str = "",
    *,
    ignore: IgnoreRules | None = None,
    exclude: frozenset[str] = frozenset(),
    quiet_period: float = 1.0,
) -> ScanResult:
    """Compare ``root/prefix`` with ``indexed`` (the index rows under ``prefix``) and hash what changed.

    ``indexed`` is a stream of ``(path, size, mtime_ns, inode, present[, ignored, executable])`` sorted by path (as
    :meth:`~oaiod.state.repo.StateRepo.iter_scan_rows` gives it), or a mapping. The walk and the rows are merged
    in one pass, so memory stays bounded by a folder listing and a fetch batch however big the root is. An
    unchanged stat is never hashed. Rows not found on disk are reported missing, unless they lie in an excluded
    folder or one that cannot be listed (this scan does not look there) or the ignore rules cover them (then they
    are *ignored*, or *to restore* when a frozen row is no longer ignored; see the module docstring).
    """
    rules = ignore or IgnoreRules()
    result = ScanResult()
    unlisted: list[str] = []
    passed: list[tuple[str, bool, bool]] = []  # (path, present, frozen) of rows the walk did not find
    rows: Iterator[_IndexRow] = iter(
        sorted((p, s.size, s.mtime_ns, s.inode, s.present, s.ignored, s.executable) for p, s in indexed.items())
        if isinstance(indexed, Mapping)
        else indexed
    )
    row = next(rows, None)
    now_ns, quiet_ns = time.time_ns(), int(quiet_period * 1e9)
    previous = ""
    files = _walk_stats(root, prefix, rules, exclude, result.symlinks.append, unlisted.append, result.empty_dirs.append)
    for rel, st in files:
        if rel <= previous:
            raise RuntimeError(f"the walk of {root} is out of order at {rel!r}")  # a bug: missing would be wrong
        previous = rel
        result.seen += 1
        while row is not None and row[0] < rel:
            passed.append((row[0], bool(row[4]), len(row) > 5 and bool(row[5])))
            row = next(rows, None)
        if row is not None and row[0] == rel:
            old, row = row, next(rows, None)
            if len(old) > 5 and old[5]:
                result.unignored.append(rel)
            if (  # unchanged: present, same size, mtime, inode and (rows that have it) executable bit — a chmod
                # changes no other field. Inline: this runs once per file of every rescan (a call costs ~10 %)
                old[4]
                and old[1] == st.st_size
                and old[2] == st.st_mtime_ns
                and old[3] == st.st_ino
                and (len(old) < 7 or old[6] is None or bool(old[6]) == bool(st.st_mode & _stat.S_IXUSR))
            ):
                continue
        # in the quiet period: written less than quiet_period ago. A future mtime (a clock set back, a file from an
        # archive or another machine) is not "being written": it would wait until the clock caught up
        _look_at_changed(root, _local_file(rel, st), 0 <= now_ns - st.st_mtime_ns < quiet_ns, result)
    while row is not None:
        passed.append((row[0], bool(row[4]), len(row) > 5 and bool(row[5])))
        row = next(rows, None)
    _not_found(passed, rules, exclude.union(unlisted), result)
    result.unlisted = unlisted
    return result


def _not_found(
    passed: list[tuple[str, bool, bool]], rules: IgnoreRules, outside: frozenset[str], result: ScanResult
) -> None:
    """Sort the rows the walk did not find: ignored now, to restore, missing, or not this scan's business."""
    for path, present, frozen in passed:
        if _outside_scan(path, outside):
            continue
        if rules.covers(path):
            if not frozen:
                result.ignored.append(path)
        elif frozen:
            result.restore.append(path)
        elif present:
            result.missing.append(path)


def _look_at_changed(root: Path, local: LocalFile, in_quiet_period: bool, result: ScanResult) -> None:
    """Hash a new or changed file, unless it is still being written or its name cannot be stored (not UTF-8: only
    such a name can hold surrogates, and only a file without an index row gets here, so the check costs nothing)."""
    if not local.path.isascii() and not _utf8(local.path):
        log.warning("skipping %s: its name is not valid UTF-8, so it cannot be synced", root / local.path)
        result.unreadable.append(local.path)
        return
    if in_quiet_period:
        result.unstable.append(local.path)
        return
    hashed = _hash_stable(root, local, result)
    if hashed is not None:
        result.changed.append(hashed)


def _outside_scan(path: str, exclude: frozenset[str]) -> bool:
    """True when ``path`` lies in one of the ``exclude`` folders (another object's, or one that cannot be listed)."""
    if not exclude:
        return False
    parts = path.split("/")
    return any("/".join(parts[:depth]) in exclude for depth in range(len(parts)))  # "": the whole root


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
