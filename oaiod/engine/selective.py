"""Selective sync: files and folders of a synced folder that this device does not hold (``ctl exclude``).

An excluded path is ignored here in both directions (:meth:`~oaiod.engine.ignore.IgnoreRules.device_only`): its
files' index rows are frozen at the server's version, so the push carries them on unchanged (server-side copies)
and nothing is deleted on the server or the other devices for being absent here; the pull never downloads there,
and only moves the frozen rows along with the server (:func:`oaiod.engine.index.settle_ignored`). Excluding moves
the local copies that are as synced to the trash; a file changed here and not committed stays on disk (it is
reported, never lost). Including again restores the server's files from the synced version, as an un-ignore does.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

from oaiod.engine import localfs
from oaiod.engine.context import EngineContext, EngineError
from oaiod.engine.dirs import restore_dirs
from oaiod.engine.files import locate_file
from oaiod.engine.index import index_paths, rooted
from oaiod.errors import ValidationError
from oaiod.model import validate_file_path
from oaiod.state.models import KIND_FOLDER, KIND_ROOT, STATUS_ACTIVE, STATUS_HELD, STATUS_NEW, ObjectRow
from oaiod.state.repo import FileStat

log = logging.getLogger("oaiod.engine.selective")


@dataclass
class Exclusion:
    """What excluding (or a dry run of it) does here: ``trashed`` local files (``size`` bytes) go to the trash,
    ``kept`` ones changed here stay on disk."""

    oaio_id: str
    path: str  #: relative to the object's folder
    folder: str  #: the object's folder
    trashed: list[str] = field(default_factory=list)
    size: int = 0
    kept: list[str] = field(default_factory=list)


def locate(ctx: EngineContext, path: Path) -> tuple[ObjectRow, str]:
    """The folder object whose folder holds ``path`` (innermost) and ``path`` relative to it; EngineError when no
    synced folder holds it or it is the folder itself (``ctl remove`` stops syncing a whole folder)."""
    row, rel = locate_file(ctx, path, (KIND_ROOT, KIND_FOLDER))
    if not rel:
        raise EngineError(f"{path} is a synced folder itself; `oaiod ctl remove` stops syncing it here")
    try:
        validate_file_path(rel, "path")
    except ValidationError as exc:
        raise EngineError(f"{path} cannot be excluded: {exc.reason}") from None
    return row, rel


def exclude(ctx: EngineContext, row: ObjectRow, rel: str, *, dry_run: bool = False) -> Exclusion:
    """Stop holding ``rel`` of ``row`` here: record it, freeze its files' rows, move the unchanged local copies to
    the trash. ``dry_run``: only say what would go."""
    root = Path(row.local_root or "")
    outcome = Exclusion(row.oaio_id, rel, str(root))
    if dry_run:
        for file in ctx.repo.iter_files(row.oaio_id, rel):
            if file.present and file.sha256 is not None:
                _sort(outcome, root, file.path, file.sha256 == file.synced_sha256, file.size)
        return outcome
    if ctx.repo.set_excluded_path(row.oaio_id, rel, True):
        log.info("%s: %s is no longer synced on this device", row.oaio_id, root / rel)
        ctx.repo.add_history(row.oaio_id, "exclude", rel, "not synced on this device")
    ctx.ignore_rules(root, reload=True)
    changed = {
        file.path: FileStat(file.size, file.mtime_ns, file.inode)
        for file in ctx.repo.iter_files(row.oaio_id, rel)
        if file.present and file.sha256 is not None and file.sha256 != file.synced_sha256
    }
    index_paths(ctx, row, _roots(ctx), [rel])  # freezes the rows at the synced version: never pushed from here
    for file in ctx.repo.iter_files(row.oaio_id, rel):
        if not file.ignored:
            continue
        disk = root / file.path
        unchanged = file.path not in changed and localfs.still_as_indexed(disk, FileStat(file.size, file.mtime_ns,
                                                                                         file.inode))  # fmt: skip
        if not os.path.lexists(disk):
            continue
        _sort(outcome, root, file.path, unchanged, file.size)
        if unchanged:
            localfs.trash_if_unchanged(root, file.path, FileStat(file.size, file.mtime_ns, file.inode))
    _prune(root / rel)
    for path in outcome.kept:
        detail = "excluded here, but changed here and not committed: kept on disk, not synced"
        log.warning("%s: %s %s", row.oaio_id, root / path, detail)
        ctx.repo.add_conflict(row.oaio_id, "excluded", path, detail=detail)
    return outcome


def include(ctx: EngineContext, row: ObjectRow, rel: str) -> list[str]:
    """Sync ``rel`` of ``row`` here again; the paths whose server files come back at the next cycle."""
    root = Path(row.local_root or "")
    if ctx.repo.set_excluded_path(row.oaio_id, rel, False):
        log.info("%s: %s syncs on this device again", row.oaio_id, root / rel)
        ctx.repo.add_history(row.oaio_id, "include", rel, "synced on this device again")
    ctx.ignore_rules(root, reload=True)
    report = index_paths(ctx, row, _roots(ctx), [rel])
    fresh = ctx.repo.get_object(row.oaio_id)
    if fresh is not None:
        restore_dirs(ctx, fresh, rel)
    return sorted(report.restore.get(row.oaio_id, []))


def _roots(ctx: EngineContext) -> list[tuple[Path, ObjectRow]]:
    return rooted(ctx.repo.objects(STATUS_ACTIVE, STATUS_NEW, STATUS_HELD, values=False))


def _sort(outcome: Exclusion, root: Path, rel: str, unchanged: bool, size: int) -> None:
    if unchanged:
        outcome.trashed.append(rel)
        outcome.size += max(0, size)
    else:
        outcome.kept.append(rel)


def _prune(folder: Path) -> None:
    """Remove the empty folders left under ``folder`` (and itself if empty), deepest first."""
    if not folder.is_dir() or folder.is_symlink():
        return
    for top, dirs, _files in os.walk(folder, topdown=False):
        for name in dirs:
            try:
                (Path(top) / name).rmdir()
            except OSError:
                pass
    try:
        folder.rmdir()
    except OSError:
        pass
