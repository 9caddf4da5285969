"""Every write the engine makes to a synced folder goes through here: safe joins, temp + atomic rename, the trash.

Guarantees: a path from the server is validated (:func:`oaiod.model.validate_file_path`) and joined under its root
without passing through a symlink, so nothing is written outside a synced root; a download replaces a file only
when it is complete and verified and only if the file on disk is still as indexed; a replaced or deleted file is
first linked (same filesystem: hard link or rename, no copy) into ``<root>/.oaiod/trash/<date>/<path>``.

Errors::

    OaiodError
    └── LocalFsError             a local write was refused or failed
        ├── UnsafePath           a path leads outside its root or through a symlink (also a ValidationError)
        └── LocalChanged         the file on disk changed since it was indexed: not replaced, not deleted
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import errno
import functools
import logging
import os
import secrets
import shutil
import stat as _stat
from pathlib import Path

from oaiod.engine.ignore import STATE_FOLDER, TEMP_PREFIX
from oaiod.errors import FailureKind, OaiodError, ValidationError
from oaiod.model import fitted_name, validate_file_path
from oaiod.state.repo import FileStat
from oaiod.storage.fsops import fsync_path, rename_noreplace, sync_filesystem
from oaiod.storage.toolkit import UMASK

log = logging.getLogger("oaiod.engine.localfs")

TRASH_FOLDER = f"{STATE_FOLDER}/trash"


class LocalFsError(OaiodError):
    """A local write was refused or failed."""


class UnsafePath(LocalFsError, ValidationError):
    """A path leads outside its root or through a symlink."""

    def __init__(self, path: str, reason: str) -> None:
        ValidationError.__init__(self, "path", f"{path[:200]!r}: {reason}")


class LocalChanged(LocalFsError):
    """The file on disk is not as indexed (a user edit in flight); the engine leaves it alone this cycle."""

    kind = FailureKind.CONFLICT


def safe_join(root: Path, rel: str) -> Path:
    """``root/rel`` after validating ``rel``; refuses when an existing component below ``root`` is a symlink."""
    try:
        validate_file_path(rel, "path")
    except ValidationError as exc:
        raise UnsafePath(str(rel), exc.reason) from None
    path = root
    for part in rel.split("/"):
        path = path / part
        try:
            mode = path.lstat().st_mode
        except FileNotFoundError:
            break
        except OSError as exc:
            raise LocalFsError(f"cannot check {path}: {exc.strerror}") from exc
        if _stat.S_ISLNK(mode):
            raise UnsafePath(rel, f"{path} is a symlink; oaiod never writes through one")
    return root / rel


@functools.lru_cache(maxsize=8192)
def _validated(rel: str) -> str | None:
    """None when ``rel`` is a valid relative path, else the reason (a pure function of the string: cached, since
    every download checks its path twice, before the temp file and before the rename)."""
    try:
        validate_file_path(rel, "path")
    except ValidationError as exc:
        return exc.reason
    return None


def check_path(rel: str) -> None:
    """UnsafePath unless ``rel`` is a valid relative path (:func:`oaiod.model.validate_file_path`)."""
    reason = _validated(rel) if isinstance(rel, str) else "not a string"
    if reason is not None:
        raise UnsafePath(str(rel), reason)


_checked = check_path


def make_parents(root: Path, rel: str) -> Path:
    """Create the folders of ``root/rel`` (never through a symlink) and return the full path.

    One lstat per existing component (the symlink check) and one mkdir per missing folder: no mkdir-and-recheck of
    folders that exist, which matters when a pull installs thousands of files into a few folders.
    """
    _checked(rel)
    parts = rel.split("/")
    path = root
    for depth, part in enumerate(parts):
        path = path / part
        try:
            mode = path.lstat().st_mode
        except FileNotFoundError:
            _make_folders(root, rel, parts, depth)
            return root / rel
        except OSError as exc:
            raise LocalFsError(f"cannot check {path}: {exc.strerror}") from exc
        if _stat.S_ISLNK(mode):
            raise UnsafePath(rel, f"{path} is a symlink; oaiod never writes through one")
        if depth < len(parts) - 1 and not _stat.S_ISDIR(mode):
            raise UnsafePath(rel, f"{path} exists and is not a folder")
    return root / rel


def _make_folders(root: Path, rel: str, parts: list[str], first_missing: int) -> None:
    if first_missing == 0:
        root.mkdir(parents=True, exist_ok=True)
    folder = root.joinpath(*parts[:first_missing])
    for part in parts[first_missing:-1]:
        folder = folder / part
        try:
            folder.mkdir()
        except FileExistsError:  # made meanwhile: check it like an existing one
            if not folder.is_dir() or folder.is_symlink():
                raise UnsafePath(rel, f"{folder} exists and is not a folder") from None


def temp_beside(target: Path) -> Path:
    """A fresh temp name in ``target``'s folder (ignored by the scanner and the watcher)."""
    return target.with_name(f"{TEMP_PREFIX}{secrets.token_hex(8)}")


class BatchFolders:
    """The folders a batch of downloads writes into, each checked (a folder, not a symlink) or made once per batch,
    not once per file: a pull of 10,000 files into 100 folders makes ~100 checks instead of ~30,000 lstats.

    A file is then written as a temp file in its checked folder and renamed within that folder
    (:func:`install_fetched`): if a folder were swapped for a symlink meanwhile, the temp file is not found there.

    **Staged folders** (``stage_new_folders``): a folder missing on disk (and not in ``keep_out``) is made as a temp
    folder beside its place instead, and its files are written there under their own names, ready; after the
    batch's data is durable, :meth:`publish` renames the whole staged folder into place with one no-replace rename.
    An initial sync of 10,000 files in 100 new folders then makes 100 renames, not 10,000. Nothing is replaced: a
    folder that appeared at that place meanwhile keeps what it holds, and the staged one is dropped (its files
    are fetched again next cycle).
    """

    def __init__(self, root: Path, *, stage_new_folders: bool = False, keep_out: frozenset[str] = frozenset()) -> None:
        self.root = str(root)
        self._known: dict[str, str | LocalFsError] = {}
        self._token = f"{TEMP_PREFIX}{secrets.token_hex(8)}-"  # one random name stem per batch, numbered per file
        self._temps = 0
        self._stage = stage_new_folders
        self._keep_out = keep_out  # relative folders that must not be staged (a step there needs the real folder)
        self._staged: dict[str, str] = {}  # staged folder (real path) -> the place it is published at
        self._stage_of: dict[str, str] = {}  # relative folder -> the staged folder it lies in
        self.dropped: set[str] = set()  #: staged folders that could not be published (their files are gone)
        #: each temp file and staged folder made: (its folder, its name), removed by name at :meth:`close`
        self._made: list[tuple[str, str]] = []
        self._dir_fds: dict[str, int] = {}  # folder -> an O_PATH descriptor, which follows the folder if it moves

    def temp_for(self, rel: str) -> str:
        """A fresh temp name in the checked folder of ``rel`` (see :meth:`parent_of`), for its download: ignored
        by the scanner and the watcher, swept after a crash. In a staged folder: ``rel``'s own name there."""
        folder = self.parent_of(rel)
        if rel.rpartition("/")[0] in self._stage_of:
            return f"{folder}/{rel.rpartition('/')[2]}"
        self._temps += 1
        return self._made_in(folder, f"{self._token}{self._temps:x}")

    def _made_in(self, folder: str, name: str) -> str:
        """Note a temp ``name`` made in ``folder`` (holding the folder by a descriptor while few are held)."""
        if folder not in self._dir_fds and len(self._dir_fds) < MAX_DIR_FDS:
            with contextlib.suppress(OSError):  # without one, the path is used
                self._dir_fds[folder] = os.open(folder, os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW)
        self._made.append((folder, name))
        return f"{folder}/{name}"

    def __enter__(self) -> BatchFolders:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Remove every temp file and staged folder of the batch still there (the installed and published ones
        are gone by their temp names already), through the descriptor of its folder: a folder the user moved while
        the batch ran, even out of the synced folders, takes nothing of oaiod's along (sim seed 1002)."""
        for folder, name in self._made:
            fd = self._dir_fds.get(folder)
            try:
                if fd is None:
                    _remove_temp(f"{folder}/{name}")
                else:
                    _remove_temp(name, fd)
            except OSError as exc:
                log.warning("cannot remove the temp file %s/%s (%s); the next start sweeps it", folder, name, exc)
        self._made.clear()
        for fd in self._dir_fds.values():
            os.close(fd)
        self._dir_fds.clear()

    def staged_in(self, rel: str) -> str | None:
        """The staged folder the download of ``rel`` was written into, or None (a temp file beside its place)."""
        return self._stage_of.get(rel.rpartition("/")[0])

    def publish(self) -> list[str]:
        """Rename every staged folder into place, never over anything that appeared there meanwhile; returns the
        places published (for the durability barrier). A staged folder that cannot be placed is removed with the
        downloads in it and noted in :attr:`dropped`."""
        placed = []
        for staged, place in self._staged.items():
            try:
                done = rename_noreplace(staged, place)
            except OSError as exc:
                log.warning("cannot move the downloaded folder %s into place (%s)", place, exc.strerror)
                done = False
            if done:
                placed.append(place)
            else:
                log.info("%s appeared while its files were downloaded; merging them next cycle", place)
                shutil.rmtree(staged, ignore_errors=True)
                self.dropped.add(staged)
        self._staged.clear()
        return placed

    def abandon(self) -> None:
        """Remove the staged folders not published (a batch that stopped before :meth:`publish`)."""
        for staged in self._staged:
            shutil.rmtree(staged, ignore_errors=True)
            self.dropped.add(staged)
        self._staged.clear()

    def parent_of(self, rel: str) -> str:
        """The folder of ``root/rel`` (made when missing) after validating ``rel``; UnsafePath when ``rel`` or a
        folder on the way is unsafe (a symlink, a file), LocalFsError when it cannot be checked or made."""
        _checked(rel)
        return self._folder(rel.rpartition("/")[0])

    def _folder(self, folder: str) -> str:
        known = self._known.get(folder)
        if known is None:
            try:
                known = self._check(folder)
            except LocalFsError as exc:
                known = exc
            self._known[folder] = known
        if isinstance(known, LocalFsError):
            raise known.with_traceback(None)  # the same refusal for every file of the folder
        return known

    def _check(self, folder: str) -> str:
        if not folder:
            try:
                os.makedirs(self.root, exist_ok=True)
            except OSError as exc:
                raise LocalFsError(f"cannot make {self.root}: {exc.strerror}") from exc
            return self.root
        parent, _, name = folder.rpartition("/")
        parent_path = self._folder(parent)
        path = f"{parent_path}/{name}"
        if parent in self._stage_of:  # inside a staged folder, which nobody sees yet: made as it is
            self._stage_of[folder] = self._stage_of[parent]
            _make_folder(path)
            return path
        try:
            mode = os.lstat(path).st_mode
        except FileNotFoundError:
            if self._stage and folder not in self._keep_out:
                self._temps += 1
                staged = self._made_in(parent_path, f"{self._token}{self._temps:x}")
                _make_folder(staged)
                self._staged[staged], self._stage_of[folder] = path, staged
                return staged
            try:
                os.mkdir(path)
                return path
            except FileExistsError:  # made meanwhile: check it like an existing one
                mode = os.lstat(path).st_mode
            except OSError as exc:
                raise LocalFsError(f"cannot make {path}: {exc.strerror}") from exc
        except OSError as exc:
            raise LocalFsError(f"cannot check {path}: {exc.strerror}") from exc
        if _stat.S_ISLNK(mode):
            raise UnsafePath(folder, f"{path} is a symlink; oaiod never writes through one")
        if not _stat.S_ISDIR(mode):
            raise UnsafePath(folder, f"{path} exists and is not a folder")
        return path


MAX_DIR_FDS = 256  #: folders a batch holds open for its cleanup (a batch writes into at most 500)


def _remove_temp(name: str, dir_fd: int | None = None) -> None:
    """Remove a temp file or staged folder (gone already is fine)."""
    try:
        os.unlink(name, dir_fd=dir_fd)
    except FileNotFoundError:
        pass
    except IsADirectoryError:
        shutil.rmtree(name, dir_fd=dir_fd)


def _make_folder(path: str) -> None:
    try:
        os.mkdir(path)
    except OSError as exc:
        raise LocalFsError(f"cannot make {path}: {exc.strerror}") from exc


def sweep_temp_files(roots: list[Path], before: float) -> int:
    """Delete the download temp files and staged folders (``.oaiod-tmp-*``) under ``roots`` whose inode last
    changed before ``before``: left by a killed daemon, or carried away by a folder the user moved while a download
    into it was in flight. oaiod's own ``.oaiod/`` folders are not entered, symlinks are not followed. Returns how
    many were removed."""
    removed = 0
    for root in roots:
        for folder, dirs, files in os.walk(root):
            staged = [name for name in dirs if name.startswith(TEMP_PREFIX)]
            dirs[:] = [name for name in dirs if name != STATE_FOLDER and name not in staged]
            for name in staged:  # a new folder downloaded under a temp name, never published: ours alone
                path = os.path.join(folder, name)
                try:
                    if os.lstat(path).st_ctime < before:
                        shutil.rmtree(path)
                        removed += 1
                except OSError as exc:
                    log.debug("cannot remove stale staged folder %s: %s", path, exc)
            for name in files:
                if not name.startswith(TEMP_PREFIX):
                    continue
                path = os.path.join(folder, name)
                try:
                    info = os.lstat(path)
                    if _stat.S_ISREG(info.st_mode) and info.st_ctime < before:
                        os.unlink(path)
                        removed += 1
                except OSError as exc:  # gone meanwhile, or not ours to delete: nothing to repair
                    log.debug("cannot remove stale temp file %s: %s", path, exc)
    return removed


def discard(temp: Path | str) -> None:
    """Remove a temp file that will not be installed (gone already is fine)."""
    with contextlib.suppress(OSError):
        os.unlink(temp)


def install_fetched(
    root: Path, rel: str, temp: str, expected: FileStat | None, trashed: list[Path] | None = None
) -> str:
    """Rename ``temp`` (complete, verified, with its mtime and mode, in the checked folder of ``root/rel``) to
    ``root/rel`` if the file there is still as indexed; the replaced file goes to the trash first (its path there
    appended to ``trashed``). Returns the target path. LocalChanged when the user changed the file meanwhile
    (``temp`` is left to the caller).

    ``rel`` was validated and its folder checked when ``temp`` was written there (:class:`BatchFolders`); the
    target must be a plain name in that same folder (the string compared, no second validation or lstat per
    component), so the rename cannot lead anywhere else. A file expected absent is renamed only if nothing is at the
    target (one atomic call); one expected present is checked, and between that check and the rename lies one
    system call.
    """
    target = f"{root}/{rel}"
    folder, _, name = target.rpartition("/")
    if folder != temp.rpartition("/")[0] or name in ("", ".", "..") or "\x00" in name:
        raise UnsafePath(rel, f"not a file name beside {temp}; not installing it")
    replacing = expected is not None and expected.present
    if replacing:
        if not still_as_indexed(target, expected):
            raise LocalChanged(f"{target} changed since it was indexed; keeping it")
        kept = to_trash(root, rel, keep=True)  # still as indexed, so it is there: keep it in the trash
        if trashed is not None:
            trashed.append(kept)
    try:
        if replacing:
            os.replace(temp, target)
        elif not rename_noreplace(temp, target):  # expected absent: whatever appeared meanwhile is the user's
            raise LocalChanged(f"{target} appeared since the folder was indexed; keeping it")
    except OSError as exc:  # e.g. the folder was swapped for a symlink: the temp file is not found through it
        raise LocalFsError(f"cannot rename {temp} to {target}: {exc.strerror}") from exc
    return target


def is_folder(path: Path) -> bool:
    """True for a real folder at ``path`` (not a symlink to one)."""
    try:
        return _stat.S_ISDIR(path.lstat().st_mode)
    except OSError:
        return False


def set_executable(root: Path, rel: str, executable: bool, expected: FileStat | None) -> None:
    """Give ``root/rel`` the executable bit ``executable`` (as umask allows) if it is still as indexed (else
    LocalChanged); a chmod changes neither size, mtime nor inode, so the index row's stat stays true."""
    target = safe_join(root, rel)
    if expected is None or not still_as_indexed(target, expected):
        raise LocalChanged(f"{target} changed since it was indexed; not changing its executable bit")
    mode = target.lstat().st_mode & 0o7777
    wanted = (mode | (0o111 & ~UMASK)) if executable else (mode & ~0o111)  # as umask allows, or cleared
    if wanted != mode:
        os.chmod(target, wanted)


def current_stat(path: Path | str) -> FileStat | None:
    """The stat of a regular file at ``path``; None when absent; LocalChanged for a symlink or a folder."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None
    if not _stat.S_ISREG(st.st_mode):
        raise LocalChanged(f"{path} is not a regular file")
    return FileStat(st.st_size, st.st_mtime_ns, st.st_ino)


def still_as_indexed(path: Path | str, expected: FileStat | None) -> bool:
    """True when ``path`` is absent and expected absent, or present with the expected size, mtime and inode."""
    try:
        now = current_stat(path)
    except LocalChanged:
        return False
    if expected is None or not expected.present:
        return now is None
    return now is not None and (now.size, now.mtime_ns, now.inode) == (
        expected.size,
        expected.mtime_ns,
        expected.inode,
    )


def make_durable(root: Path, paths: list[Path] | list[str]) -> None:
    """Make the data of ``paths`` and their names in their folders survive a power loss: one ``syncfs`` of the
    filesystem holding ``root`` where Linux offers it, else an fsync of every file and folder (a batch barrier:
    one call per batch of downloads instead of one fsync per file)."""
    try:
        if sync_filesystem(root):
            return
        for path in [*paths, *sorted({os.path.dirname(path) for path in paths})]:  # the files, then their folders
            with contextlib.suppress(FileNotFoundError):
                fsync_path(path)
    except OSError as exc:
        raise LocalFsError(f"cannot make the files written to {root} durable: {exc.strerror or exc}") from exc


def trash_path(root: Path, rel: str, day: _dt.date | None = None) -> Path:
    """A free name for ``rel`` in today's trash folder of ``root``."""
    day = day or _dt.date.today()
    base = root / TRASH_FOLDER / day.isoformat() / rel
    candidate, number = base, 1
    while candidate.exists() or candidate.is_symlink():
        number += 1
        candidate = base.with_name(fitted_name(base.name, f" ({number})"))  # `` (N)`` may not fit a long name
    return candidate


def to_trash(root: Path, rel: str, *, keep: bool = False) -> Path:
    """Put ``root/rel`` into the trash: moved (``keep`` False) or hard-linked (``keep`` True: the caller replaces it
    next). Falls back to a copy when the trash is on another filesystem or links are unsupported."""
    source = safe_join(root, rel)
    target = trash_path(root, rel)
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        if keep:
            os.link(source, target)
        else:
            os.rename(source, target)
    except OSError as exc:
        if exc.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP, errno.EOPNOTSUPP):
            raise
        shutil.copy2(source, target)
        if not keep:
            os.unlink(source)
    return target


def install(root: Path, rel: str, temp: Path, expected: FileStat | None) -> FileStat:
    """Rename the complete, verified ``temp`` to ``root/rel`` if the file there is still as indexed.

    ``temp`` lies beside the target (:func:`temp_beside`); the folders on the way are checked here, then
    :func:`install_fetched` renames it. The replaced file goes to the trash first. Returns the installed file's
    stat; raises LocalChanged (and removes ``temp``) when the user changed the file meanwhile.
    """
    target = make_parents(root, rel)
    try:
        install_fetched(root, rel, str(temp), expected)
    except LocalChanged:
        temp.unlink(missing_ok=True)
        raise
    st = target.lstat()
    return FileStat(st.st_size, st.st_mtime_ns, st.st_ino)


def regular_file(path: Path) -> str | None:
    """``path`` when it is a regular file (never a link or a FIFO), else None: a basis for a download
    (:attr:`oaiod.storage.base.Transfer.basis`), of which only the bytes are of use."""
    with contextlib.suppress(OSError):
        if _stat.S_ISREG(os.lstat(path).st_mode):
            return str(path)
    return None


def trash_if_unchanged(root: Path, rel: str, expected: FileStat | None) -> Path | None:
    """Move ``root/rel`` to the trash if it is still as indexed; None when it was already gone."""
    target = safe_join(root, rel)
    if not still_as_indexed(target, expected):
        raise LocalChanged(f"{target} changed since it was indexed; not deleting it")
    if not target.exists():
        return None
    moved = to_trash(root, rel)
    _prune_empty_folders(root, rel)
    return moved


def move_folder_if_as_indexed(root: Path, old: str, new: str, expected: dict[str, FileStat]) -> bool:
    """Rename the folder ``root/old`` to ``root/new`` (absent: a no-replace rename) if it holds exactly the files of
    ``expected`` (path inside the folder -> the indexed stat), each still as indexed, and no other entry: no other
    file, symlink or empty folder (which might be another object's folder). False, with nothing changed, otherwise.

    A file the user writes into the folder between the check and the rename moves with it and is found as a local
    change at its new place: nothing is lost."""
    source, target = safe_join(root, old), safe_join(root, new)
    folders = {rel.rpartition("/")[0] for rel in expected}
    needed = {"/".join(parts[:depth]) for parts in (f.split("/") for f in folders) for depth in range(len(parts) + 1)}
    if _files_held(str(source), "", expected, needed) != len(expected):
        return False
    make_parents(root, new)
    try:
        moved = rename_noreplace(source, target)
    except OSError as exc:
        log.info("cannot rename %s to %s (%s); copying its files instead", source, target, exc.strerror)
        return False
    if moved:
        _prune_empty_folders(root, old)
    return moved


def _files_held(path: str, rel: str, expected: dict[str, FileStat], folders: set[str]) -> int:
    """How many expected files the folder ``path`` (``rel`` inside the moved folder) holds, each as indexed; -1
    when it holds anything else (another file, a changed one, a symlink, a folder no expected file lies in)."""
    try:
        entries = list(os.scandir(path))
    except OSError:
        return -1
    held = 0
    for entry in entries:
        inner = f"{rel}/{entry.name}" if rel else entry.name
        try:
            st = entry.stat(follow_symlinks=False)
        except OSError:
            return -1
        if _stat.S_ISDIR(st.st_mode):
            inside = _files_held(entry.path, inner, expected, folders) if inner in folders else -1
            if inside < 0:
                return -1
            held += inside
            continue
        want = expected.get(inner)
        if not _stat.S_ISREG(st.st_mode) or want is None:
            return -1
        if (st.st_size, st.st_mtime_ns, st.st_ino) != (want.size, want.mtime_ns, want.inode):
            return -1
        held += 1
    return held


def rename_within(root: Path, rel: str, new_rel: str) -> None:
    """Rename ``rel`` to ``new_rel`` in the same root (a conflicted copy); refuses to replace an existing file."""
    source, target = safe_join(root, rel), make_parents(root, new_rel)
    if target.exists() or target.is_symlink():
        raise LocalChanged(f"{target} exists; not renaming {source} onto it")
    os.rename(source, target)


def _prune_empty_folders(root: Path, rel: str) -> None:
    """Remove folders left empty by a deletion, up to (not including) the root."""
    parts = rel.split("/")[:-1]
    while parts:
        try:
            (root / "/".join(parts)).rmdir()
        except OSError:
            return
        parts.pop()


def purge_trash(root: Path, days: int, today: _dt.date | None = None) -> int:
    """Delete trash folders of ``root`` older than ``days`` days; returns how many day folders went."""
    today = today or _dt.date.today()
    trash = root / TRASH_FOLDER
    removed = 0
    try:
        entries = list(os.scandir(trash))
    except OSError:
        return 0
    for entry in entries:
        try:
            day = _dt.date.fromisoformat(entry.name)
        except ValueError:
            continue
        if (today - day).days > days and entry.is_dir(follow_symlinks=False):
            shutil.rmtree(entry.path, ignore_errors=True)
            removed += 1
    return removed
