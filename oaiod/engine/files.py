"""Files, not only objects (``ctl filestatus``, ``ctl versions PATH``): one file's state here, and its versions.

The state says what a user wants to know of a path — ``up to date``, ``syncing`` (a change here not committed yet,
or the server's not merged yet), ``conflict``, ``ignored``, ``excluded``, ``error`` — with why. The versions of a
file are read off the object's versions the server keeps (``hub/versions/``): one row per version in which the
file changed (its content, or it was deleted), newest first.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from oaiod.engine.context import EngineContext, EngineError
from oaiod.engine.index import owner_of, rooted
from oaiod.engine.manifest import remote_files
from oaiod.engine.placeholders import _resolved
from oaiod.engine.plan import UNKNOWN
from oaiod.state.models import STATUS_ACTIVE, STATUS_HELD, STATUS_NEW, ObjectRow


@dataclass(frozen=True)
class FileStatus:
    path: str  #: absolute
    oaio_id: str
    state: str  #: up to date, syncing, conflict, ignored, excluded, error, not synced
    why: str = ""


@dataclass(frozen=True)
class FileVersion:
    """The file as version ``stamp`` had it: its size and sha256 (``deleted`` when the version dropped it)."""

    stamp: str
    device_id: str
    username: str
    size: int
    sha256: str
    deleted: bool = False


def locate_file(ctx: EngineContext, path: Path, kinds: tuple[str, ...] = ()) -> tuple[ObjectRow, str]:
    """The object (of ``kinds``; any by default) whose folder holds ``path`` most closely and ``path`` relative to
    it ("" for the folder); EngineError when no synced folder holds it."""
    rows = ctx.repo.objects(STATUS_ACTIVE, STATUS_NEW, STATUS_HELD, values=False)
    if kinds:
        rows = [row for row in rows if row.kind in kinds]
    absolute = Path(os.path.abspath(path))
    owner = owner_of(_resolved(absolute.parent) / absolute.name, rooted(rows))
    if owner is None:
        raise EngineError(f"{path} is not inside a synced folder")
    return owner


def status(ctx: EngineContext, path: Path) -> FileStatus:
    """What oaiod does with ``path`` now, and why."""
    row, rel = locate_file(ctx, path)
    shown = str(Path(os.path.abspath(path)))

    def said(state: str, why: str = "") -> FileStatus:
        return FileStatus(shown, row.oaio_id, state, why)

    if not rel:
        if row.remote_dirty:
            return said("syncing", "the server's newest version is not merged here yet")
        return said("syncing", "changes here wait to be committed") if row.local_dirty else said("up to date")
    root = Path(row.local_root or "")
    rules = ctx.ignore_rules(root)
    if any(rel == excluded or rel.startswith(excluded + "/") for excluded in rules.excluded):
        return said("excluded", "not synced on this device (ctl exclude)")
    if rules.covers(rel):
        return said("ignored", "an ignore rule covers it (.oaioignore, [sync] ignore_patterns or a built-in)")
    for conflict in ctx.repo.conflicts():
        if conflict.oaio_id == row.oaio_id and rel in (conflict.path, conflict.copy_path):
            return said("conflict", conflict.detail or f"conflicted copy {conflict.copy_path}")
    for error in ctx.repo.errors():
        if error.oaio_id == row.oaio_id and error.path in (rel, ""):
            return said("error", f"{error.kind}: {error.message}")
    file = ctx.repo.get_file(row.oaio_id, rel)
    on_disk = os.path.lexists(root / rel)
    if file is None:
        if on_disk and (root / rel).is_dir():
            return said("up to date", "a folder: its files have a state each")
        return said("syncing", "new here, not indexed yet") if on_disk else said("not synced", "no such file here")
    if not file.present:
        return said("syncing", "deleted here; the deletion is not committed yet")
    if file.sha256 != file.synced_sha256 or file.executable != file.synced_executable:
        return said("syncing", "changed here; the change is not committed yet")
    if row.remote_dirty:
        return said("syncing", "the server's newest version of its folder is not merged here yet")
    return said("up to date")


def versions(ctx: EngineContext, path: Path) -> list[FileVersion]:
    """The versions of the file ``path`` the server keeps, one per change of it, newest first."""
    row, rel = locate_file(ctx, path)
    if not rel:
        raise EngineError(f"{path} is a synced folder; `oaiod ctl versions` lists its object's versions")
    runs: list[tuple[tuple[str, bool], FileVersion]] = []  # runs of versions holding the file alike
    for version in ctx.api.versions(row.oaio_id):  # newest first
        entry = remote_files(version.values, version.stamp).get(rel)
        if entry is None:
            this = FileVersion(version.stamp, version.device_id, version.username, 0, "", deleted=True)
        else:
            sha = "" if entry.sha256 is UNKNOWN else str(entry.sha256)
            this = FileVersion(version.stamp, version.device_id, version.username, max(entry.size, 0), sha)
        key = (this.sha256, this.deleted)
        if runs and runs[-1][0] == key:
            runs[-1] = (key, this)  # an older version of the same run: the run began here (or earlier)
        else:
            runs.append((key, this))
    if runs and runs[-1][0][1]:
        runs.pop()  # the oldest run without the file: before it was made
    return [version for _key, version in runs]
