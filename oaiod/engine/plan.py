"""The three-way merge of design §5, as pure functions: no disk, no network, no database.

Per file, *base* is the content of the last synced version (``files.synced_sha256``), *local* the disk and *remote*
the server's newest version; each is a sha256 or ``None`` (absent). A remote hash may be :data:`UNKNOWN` (the
manifest is stale, e.g. the published client changed the object): the engine then downloads to a temp file,
hashes it and asks :func:`decide` again with the real hash.
"""

from __future__ import annotations

import bisect
import datetime as _dt
import enum
import posixpath
import re
from collections.abc import Iterable, Mapping
from typing import Any, Final

from oaiod.model import fitted_name


class _Unknown(enum.Enum):
    UNKNOWN = "unknown"


UNKNOWN: Final = _Unknown.UNKNOWN
Sha = str | None


class Action(enum.Enum):
    """What to do with one file."""

    NOTHING = "nothing"  # both sides agree (record the remote version as synced)
    DOWNLOAD = "download"  # remote changed, local not: replace (the old content goes to the trash first)
    FETCH_AND_DECIDE = "fetch"  # remote hash unknown: download to temp, hash, decide again
    TRASH_LOCAL = "trash"  # remote deleted, local unchanged: move the local file to the trash
    PUSH = "push"  # local changed (or deleted), remote not: the next commit carries it
    KEEP_LOCAL = "keep"  # remote deleted, local modified: keep it (pushed again)
    RESTORE = "restore"  # local deleted, remote modified: download it again
    CONFLICT = "conflict"  # both changed differently: local → conflicted copy, remote under the name
    CONFLICT_NO_BASE = "conflict-nobase"  # no base (first sync/rebuild), both differ: remote → copy, local kept
    MOVE_ASIDE = "aside"  # a local file where the server's version has a folder: local → conflicted copy


def decide(base: Sha, local: Sha, remote: Sha | _Unknown, *, has_base: bool = True) -> Action:
    """The action for one file (the table of design §5).

    ``has_base`` is False when this device never synced the object (a first sync or a rebuilt index): then a file
    present on both sides with different content keeps the user's file untouched and the remote one as a copy.
    """
    if remote is UNKNOWN:
        return Action.FETCH_AND_DECIDE
    if local == remote:
        return Action.NOTHING
    if not has_base:
        if local is None:
            return Action.DOWNLOAD
        if remote is None:
            return Action.PUSH
        return Action.CONFLICT_NO_BASE
    if local == base:
        return Action.TRASH_LOCAL if remote is None else Action.DOWNLOAD
    if remote == base:
        return Action.PUSH
    if remote is None:
        return Action.KEEP_LOCAL
    if local is None:
        return Action.RESTORE
    return Action.CONFLICT


def under_remote_folders(local_paths: Iterable[str], remote_paths: Iterable[str]) -> set[str]:
    """The local files whose path is a folder in the server's version (``X`` here, ``X/…`` there): a file and a
    folder of one name, which the per-file table cannot merge (design §5). Sorted once, one bisection each."""
    local = list(local_paths)
    if not local:
        return set()
    remote = sorted(remote_paths)
    clashing = set()
    for path in local:
        prefix = path + "/"
        at = bisect.bisect_left(remote, prefix)
        if at < len(remote) and remote[at].startswith(prefix):
            clashing.add(path)
    return clashing


def is_mass_deletion(deleted: int, total: int, *, ratio: float, minimum: int) -> bool:
    """True when deleting ``deleted`` of ``total`` files must wait for ``confirm-delete`` (design §5)."""
    return total > 0 and deleted >= minimum and deleted > ratio * total


#: bytes of a device id in a conflicted copy's name: another client's id may be 150 characters of any script
DEVICE_IN_NAME_BYTES: Final = 64


def conflict_name(path: str, device_id: str, when: _dt.datetime | None = None, number: int = 1) -> str:
    """``NAME (conflicted copy from DEVICE YYYY-MM-DD HHMMSS[ N]).EXT`` beside ``path`` (``/``-separated); a long
    name is shortened to fit the file system's limit, its extension kept (:func:`~oaiod.model.fitted_name`).

    ``DEVICE`` is the device id without ``/`` or ``\\`` (a path may hold neither) and cut to
    :data:`DEVICE_IN_NAME_BYTES`, so the name is a valid path component for any id the server passes on and an
    extension of up to 15 bytes is always kept."""
    when = when or _dt.datetime.now()
    folder, name = posixpath.split(path)
    device = device_id.replace("/", "_").replace("\\", "_").encode()[:DEVICE_IN_NAME_BYTES].decode(errors="ignore")
    counter = f" {number}" if number > 1 else ""
    copy = fitted_name(name, f" (conflicted copy from {device} {when:%Y-%m-%d %H%M%S}){counter}")
    return posixpath.join(folder, copy) if folder else copy


_CONFLICT_SUFFIX = re.compile(
    r" \(conflicted copy from (?P<device>[^/]*?) (?P<when>\d{4}-\d{2}-\d{2} \d{6})\)(?: \d+)?"
)
CONFLICT_MARK = "(conflicted copy from "  #: what every conflicted copy's name holds (a cheap SQL filter)


def parse_conflict_name(path: str) -> tuple[str, str, str] | None:
    """``(original path, device, "YYYY-MM-DD HHMMSS")`` of a name :func:`conflict_name` made; None for another.
    The original of a name that was shortened to fit is the shortened name without the mark."""
    folder, name = posixpath.split(path)
    marks = list(_CONFLICT_SUFFIX.finditer(name))
    if not marks:
        return None
    found = marks[-1]  # the last mark: a copy of a copy names the newer conflict
    original = name[: found.start()] + name[found.end() :]
    return posixpath.join(folder, original) if folder else original, found["device"], found["when"]


def merge_values(
    base: Mapping[str, Any], local: Mapping[str, Any], remote: Mapping[str, Any], *, local_newer: bool = False
) -> tuple[dict[str, Any], list[str]]:
    """Values merged by key against ``base``; returns ``(merged, keys changed differently on both sides)``.

    A key changed on one side takes that side's value (a key deleted on one side and unchanged on the other is
    deleted); changed differently on both sides takes the newer version's value and is reported.
    """
    missing = object()
    merged: dict[str, Any] = {}
    conflicts: list[str] = []
    for key in sorted({*base, *local, *remote}):
        b, lo, re = base.get(key, missing), local.get(key, missing), remote.get(key, missing)
        if lo in (re, b):
            value = re
        elif re == b:
            value = lo
        else:
            conflicts.append(key)
            value = lo if local_newer else re
        if value is not missing:
            merged[key] = value
    return merged, conflicts
