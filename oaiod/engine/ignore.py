"""Which local paths never sync: built-in patterns (editor swap and temp files, OS litter, oaiod's own files) plus
the ``.oaioignore`` file at the top of a synced root (gitignore syntax, via pathspec).

Paths are relative to the root, ``/``-separated. A folder is asked with ``is_dir=True`` so that patterns ending in
``/`` match it and the scanner can skip its whole subtree.
"""

from __future__ import annotations

import fnmatch
import logging
import re
from collections.abc import Iterable
from pathlib import Path

import pathspec

log = logging.getLogger("oaiod.engine.ignore")

IGNORE_FILE = ".oaioignore"
STATE_FOLDER = ".oaiod"  # trash and other per-root state
TEMP_PREFIX = ".oaiod-tmp-"

#: gitignore-style patterns that are always in force
BUILTIN_PATTERNS: tuple[str, ...] = (
    f"{STATE_FOLDER}/",
    f"{TEMP_PREFIX}*",
    # editors: vim swap/backup and its write test, emacs lock/backup/autosave, generic backups
    "*.swp",
    "*.swo",
    "*.swx",
    "*~",
    ".#*",
    "#*#",
    "4913",
    "*.tmp",
    ".~lock.*#",
    # office lock files and OS litter
    "~$*",
    ".DS_Store",
    "._*",
    "Thumbs.db",
    "desktop.ini",
    ".directory",
    ".Trash-*/",
)

MAX_IGNORE_FILE_BYTES = 1024 * 1024
MAX_REMEMBERED_FOLDERS = 100_000  #: folder verdicts one set of rules keeps (bounded memory on huge trees)

_BUILTIN_ANY = re.compile("|".join(fnmatch.translate(p) for p in BUILTIN_PATTERNS if not p.endswith("/")))
_BUILTIN_DIRS = re.compile("|".join(fnmatch.translate(p[:-1]) for p in BUILTIN_PATTERNS if p.endswith("/")))


class IgnoreRules:
    """The built-ins plus extra patterns (from the config) plus one root's ``.oaioignore``, plus the paths excluded
    from syncing on this device (selective sync, ``ctl exclude``).

    Two kinds of ignored: the built-ins and ``.oaioignore`` (every device of the folder applies them) mean *never
    uploaded*; this device's own choices — ``[sync] ignore_patterns`` and excluded paths — mean *not here* too
    (:meth:`device_only`): a server file there is not downloaded where no local file stands, and stays on the
    server and the other devices.
    """

    def __init__(
        self,
        extra_patterns: Iterable[str] = (),
        root_patterns: Iterable[str] = (),
        excluded: Iterable[str] = (),
    ) -> None:
        extra = _patterns(extra_patterns)
        user = extra + _patterns(root_patterns)
        self.patterns = (*BUILTIN_PATTERNS, *user)
        self.excluded = frozenset(excluded)  #: relative paths (files or folders) not synced on this device
        # the built-ins name single files or folders: one regex on the last component is enough (and fast);
        # pathspec (full gitignore semantics, negations included) runs only when the user gave patterns
        self._spec = pathspec.GitIgnoreSpec.from_lines(self.patterns) if user else None
        self._device_spec = pathspec.GitIgnoreSpec.from_lines(extra) if extra else None
        self._covered: dict[str, bool] = {}  # folder -> itself or a folder above it ignored (the rules never change)

    @classmethod
    def for_root(cls, root: Path, extra_patterns: Iterable[str] = (), excluded: Iterable[str] = ()) -> IgnoreRules:
        """Rules of a synced root; an unreadable or oversized ``.oaioignore`` is logged and skipped."""
        return cls(extra_patterns, read_ignore_file(root / IGNORE_FILE), excluded)

    def device_only(self, rel_path: str) -> bool:
        """True when this device's own rules (excluded paths, ``[sync] ignore_patterns``) cover the file
        ``rel_path``, itself or through a folder: the server's file is not downloaded here."""
        if self._device_spec is None and not self.excluded:
            return False
        parts = rel_path.split("/")
        for depth in range(1, len(parts) + 1):
            path, is_dir = "/".join(parts[:depth]), depth < len(parts)
            if path in self.excluded:
                return True
            if self._device_spec is not None and self._device_spec.match_file(path + "/" if is_dir else path):
                return True
        return False

    def ignored(self, rel_path: str, *, is_dir: bool = False) -> bool:
        """True when ``rel_path`` (relative, ``/``-separated) must not sync."""
        return self.ignored_entry(rel_path, rel_path.rsplit("/", 1)[-1], is_dir=is_dir)

    def ignored_entry(self, rel_path: str, name: str, *, is_dir: bool = False) -> bool:
        """:meth:`ignored` for a walk that holds the last component ``name`` of ``rel_path`` already (once per file
        of every rescan: splitting the path again cost ~5 % of it)."""
        if rel_path in self.excluded:
            return True
        if self._spec is not None:
            return self._spec.match_file(rel_path + "/" if is_dir else rel_path)
        return bool(_BUILTIN_ANY.match(name) or (is_dir and _BUILTIN_DIRS.match(name)))

    def covers(self, rel_path: str) -> bool:
        """True when the file ``rel_path`` is ignored, itself or through one of its folders (the walk never enters
        an ignored folder, so a file inside one is ignored whatever the patterns say about the file)."""
        return self.in_ignored_folder(rel_path) or self.ignored(rel_path)

    def in_ignored_folder(self, rel_path: str) -> bool:
        """True when a folder above ``rel_path`` is ignored (a walk starting below it must not look there)."""
        folder = rel_path.rpartition("/")[0]
        return bool(folder) and self._folder_covered(folder)

    def _folder_covered(self, folder: str) -> bool:
        """True when ``folder`` or a folder above it is ignored; remembered per folder (the files of a pull share
        their folders: one answer per folder instead of one per file and level)."""
        known = self._covered.get(folder)
        if known is not None:
            return known
        chain = [folder]  # the folder and its ancestors not asked yet, deepest first
        while (parent := chain[-1].rpartition("/")[0]) and parent not in self._covered:
            chain.append(parent)
        covered = bool(parent) and self._covered[parent]
        for path in reversed(chain):
            covered = covered or self.ignored(path, is_dir=True)
            if len(self._covered) < MAX_REMEMBERED_FOLDERS:
                self._covered[path] = covered
        return covered


def _patterns(lines: Iterable[str]) -> list[str]:
    return [p for p in lines if p.strip() and not p.lstrip().startswith("#")]


def read_ignore_file(path: Path) -> list[str]:
    """The patterns of one ``.oaioignore``; ``[]`` when there is none."""
    try:
        with path.open("rb") as handle:
            data = handle.read(MAX_IGNORE_FILE_BYTES + 1)
    except FileNotFoundError:
        return []
    except OSError as exc:
        log.warning("cannot read %s (%s); syncing as if it were empty", path, exc)
        return []
    if len(data) > MAX_IGNORE_FILE_BYTES:
        log.warning("%s is larger than %d bytes; ignoring it", path, MAX_IGNORE_FILE_BYTES)
        return []
    return data.decode("utf-8", errors="replace").splitlines()
