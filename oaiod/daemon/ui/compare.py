"""A conflict's two files side by side: the lines of both text files aligned (``difflib``), or, for files that are
not text or too large to show, their sizes and times. Pure data for the template (which escapes every line)."""

from __future__ import annotations

import datetime
import difflib
import itertools
import os
from dataclasses import dataclass, field
from pathlib import Path

MAX_TEXT_BYTES = 256 * 1024  #: larger files are compared by size and time only
MAX_ROWS = 5000  #: rows shown at most (the rest is summarised)


@dataclass(frozen=True)
class Side:
    """One of the two files: where it is, and what is known of it (``exists`` False: gone meanwhile)."""

    path: str
    exists: bool
    size: int = 0
    modified: str = ""
    text: list[str] | None = None  #: its lines when it is text small enough to show


@dataclass(frozen=True)
class Row:
    """One aligned line: ``kind`` is same, changed, removed (only left) or added (only right)."""

    kind: str
    left_number: int | None
    left: str | None
    right_number: int | None
    right: str | None


@dataclass
class Comparison:
    left: Side
    right: Side
    rows: list[Row] = field(default_factory=list)
    truncated: bool = False
    identical: bool = False

    @property
    def as_text(self) -> bool:
        return self.left.text is not None and self.right.text is not None


def inside(root: Path, rel: str) -> Path | None:
    """``root/rel`` when it stays inside ``root`` once symlinks are resolved; None otherwise."""
    real_root = os.path.realpath(root)
    target = os.path.realpath(root / rel)
    return Path(target) if os.path.commonpath([real_root, target]) == real_root and target != real_root else None


def side(path: Path | None, shown: str) -> Side:
    """What the page shows of one file (read only when it is small text)."""
    if path is None:
        return Side(shown, False)
    try:
        info = path.stat()
    except OSError:
        return Side(shown, False)
    modified = datetime.datetime.fromtimestamp(info.st_mtime).strftime("%Y-%m-%d %H:%M:%S")
    text = None
    if info.st_size <= MAX_TEXT_BYTES and path.is_file():
        try:
            data = path.read_bytes()[: MAX_TEXT_BYTES + 1]
            text = None if b"\0" in data else data.decode("utf-8").splitlines()
        except (OSError, UnicodeDecodeError):
            text = None
    return Side(shown, True, info.st_size, modified, text)


def compare(left: Side, right: Side) -> Comparison:
    """The two sides, with their lines aligned when both are text."""
    result = Comparison(left, right)
    if left.text is None or right.text is None:
        return result
    result.identical = left.text == right.text
    matcher = difflib.SequenceMatcher(None, left.text, right.text, autojunk=False)
    rows: list[Row] = []
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        pairs = itertools.zip_longest(range(i1, i2), range(j1, j2))
        for i, j in pairs:
            kind = {"equal": "same", "replace": "changed", "delete": "removed", "insert": "added"}[tag]
            if kind == "changed" and (i is None or j is None):
                kind = "removed" if j is None else "added"
            rows.append(
                Row(
                    kind,
                    None if i is None else i + 1,
                    None if i is None else left.text[i],
                    None if j is None else j + 1,
                    None if j is None else right.text[j],
                )
            )
            if len(rows) >= MAX_ROWS:
                result.rows, result.truncated = rows, True
                return result
    result.rows = rows
    return result
