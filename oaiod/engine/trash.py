"""What the trash holds and putting it back (``ctl trash``): every synced folder's ``.oaiod/trash/DAY/PATH``.

Files land there when a pull replaces or deletes them, when an exclusion takes a folder off this device, and when
a conflict or an un-ignore needs room (design §2). A name trashed twice on one day is kept as ``NAME (2).EXT``, the
higher number the later. Restoring moves the file back to its place (the next push commits it, like any file the
user made); a file standing there is never replaced: the restored one then gets ``NAME (restored DAY).EXT``.
"""

from __future__ import annotations

import datetime as _dt
import logging
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from oaiod.engine import localfs
from oaiod.engine.context import EngineError
from oaiod.engine.localfs import TRASH_FOLDER
from oaiod.model import fitted_name, split_name

log = logging.getLogger("oaiod.engine.trash")

_NUMBERED = re.compile(r"^(?P<stem>.*) \((?P<number>\d+)\)$")


@dataclass(frozen=True)
class TrashEntry:
    """One file in a folder's trash: ``path`` is where it was (relative to ``folder``), ``number`` its place
    among the same name's trashings that day (1: the first)."""

    folder: str
    day: str
    path: str
    number: int
    size: int
    stored: str  #: where it lies now
    trashed_as: str  #: its path in the day's folder (``path`` with the number, if any)

    @property
    def original(self) -> str:
        return str(Path(self.folder) / self.path)


def entries(roots: Iterable[Path]) -> list[TrashEntry]:
    """Every file in the trash of ``roots``, newest day first, then by path."""
    found: list[TrashEntry] = []
    for root in roots:
        trash = root / TRASH_FOLDER
        try:
            days = sorted((entry for entry in os.scandir(trash) if entry.is_dir(follow_symlinks=False)),
                          key=lambda entry: entry.name, reverse=True)  # fmt: skip
        except OSError:
            continue
        for day in days:
            try:
                _dt.date.fromisoformat(day.name)
            except ValueError:
                continue
            for top, _dirs, files in os.walk(day.path):
                for name in files:
                    stored = Path(top, name)
                    try:
                        st = stored.lstat()
                    except OSError:
                        continue
                    trashed_as = stored.relative_to(day.path).as_posix()
                    rel, number = _original(trashed_as)
                    found.append(TrashEntry(str(root), day.name, rel, number, st.st_size, str(stored), trashed_as))
    found.sort(key=lambda e: (e.folder, e.path, e.number))
    found.sort(key=lambda e: e.day, reverse=True)  # stable: newest day first, paths in order within a day
    return found


def restore(roots: Iterable[Path], path: Path, day: str | None = None) -> list[str]:
    """Put back the newest trashed copy of the file ``path``, or the missing files of the folder ``path`` from the
    newest day that holds it (``day``: that day's); the paths restored (absolute)."""
    absolute = Path(os.path.abspath(path))
    wanted: dict[str, TrashEntry] = {}  # original path -> the entry to restore
    for entry in entries(roots):
        original = Path(entry.original)
        if Path(entry.folder, entry.trashed_as) == absolute:  # a name that only looks numbered: ``x (2).txt``
            original = absolute
        elif original != absolute and absolute not in original.parents:
            continue
        if day is not None and entry.day != day:
            continue
        day = entry.day  # the newest day that holds it
        kept = wanted.get(str(original))
        if kept is None or entry.number > kept.number:
            wanted[str(original)] = entry
    if not wanted:
        raise EngineError(f"the trash holds nothing of {path}" + (f" from {day}" if day else ""))
    if str(absolute) not in wanted:  # a folder: its files that are missing come back, those standing there stay
        wanted = {place: entry for place, entry in wanted.items() if not os.path.lexists(place)}
    return [_put_back(entry, Path(place)) for place, entry in sorted(wanted.items())]


def _put_back(entry: TrashEntry, target: Path) -> str:
    root = Path(entry.folder)
    rel = target.relative_to(root).as_posix()
    place = localfs.make_parents(root, rel)  # never through a symlink
    if os.path.lexists(place):
        place = place.with_name(fitted_name(place.name, f" (restored {entry.day})"))
        if os.path.lexists(place):
            raise EngineError(f"{target} and {place} both exist; move one away and restore again")
    os.rename(entry.stored, place)
    log.info("restored %s from the trash of %s", place, entry.day)
    return str(place)


def _original(rel: str) -> tuple[str, int]:
    """The path a trashed file had and its number (``a/b (2).txt`` -> ``a/b.txt``, 2)."""
    head, _, name = rel.rpartition("/")
    stem, ext = split_name(name)
    match = _NUMBERED.match(stem)
    if match is None:
        return rel, 1
    name = match["stem"] + ext
    return (f"{head}/{name}" if head else name), int(match["number"])
