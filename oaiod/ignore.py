"""Which local paths never sync: built-in patterns (editor swap and temp files, OS litter, oaiod's own files) plus
the ``.oaioignore`` file at the top of a synced root (gitignore syntax, via pathspec).

Paths are relative to the root, ``/``-separated. A folder is asked with ``is_dir=True`` so that patterns ending in
``/`` match it and the scanner can skip its whole subtree.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path

import pathspec

log = logging.getLogger("oaiod.ignore")

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


class IgnoreRules:
    """The built-ins plus extra patterns (from the config) plus one root's ``.oaioignore``."""

    def __init__(self, extra_patterns: Iterable[str] = (), root_patterns: Iterable[str] = ()) -> None:
        self.patterns = (*BUILTIN_PATTERNS, *extra_patterns, *root_patterns)
        self._spec = pathspec.GitIgnoreSpec.from_lines(self.patterns)

    @classmethod
    def for_root(cls, root: Path, extra_patterns: Iterable[str] = ()) -> IgnoreRules:
        """Rules of a synced root; an unreadable or oversized ``.oaioignore`` is logged and skipped."""
        return cls(extra_patterns, read_ignore_file(root / IGNORE_FILE))

    def ignored(self, rel_path: str, *, is_dir: bool = False) -> bool:
        """True when ``rel_path`` (relative, ``/``-separated) must not sync."""
        return self._spec.match_file(rel_path + "/" if is_dir else rel_path)


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
