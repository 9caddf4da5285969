"""Step 1 of a cycle: bring the file index of objects up to date with the disk (design §3.1).

Each local path belongs to the innermost object root containing it. Folder objects are scanned (all of the root,
or the part under a dirty path); file objects of apps only stat their listed files — a new file in their folder is
not theirs. Changes are written with one upsert per batch; an object whose files changed gets ``local_dirty``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.dialects.sqlite import insert

from oaiod.engine.context import EngineContext
from oaiod.placeholders import _resolved, is_inside
from oaiod.scanner import HashedFile, ScanResult, _hash_stable, _local_file, scan
from oaiod.state.models import KIND_FILES, STATUS_REMOVED, FileRow, ObjectRow
from oaiod.state.repo import prefix_filter

log = logging.getLogger("oaiod.engine.index")

UPSERT_BATCH = 1000


@dataclass
class IndexReport:
    """What the local index step saw: which objects changed, what waits for the next cycle."""

    dirty_objects: set[str] = field(default_factory=set)
    unstable: list[Path] = field(default_factory=list)
    symlinks: list[Path] = field(default_factory=list)
    hashed: int = 0


def rooted(rows: Iterable[ObjectRow]) -> list[tuple[Path, ObjectRow]]:
    """``(resolved root, row)`` of live objects with a folder, innermost (longest) first."""
    pairs = [(_resolved(Path(row.local_root)), row) for row in rows if row.local_root and row.status != STATUS_REMOVED]
    return sorted(pairs, key=lambda pair: len(pair[0].parts), reverse=True)


def owner_of(path: Path, roots: list[tuple[Path, ObjectRow]]) -> tuple[ObjectRow, str] | None:
    """The object owning ``path`` (the innermost root containing it) and the path relative to that root."""
    path = Path(os.path.normpath(path))
    for root, row in roots:
        if is_inside(path, root):
            rel = path.relative_to(root).as_posix()
            if row.kind == KIND_FILES and rel != "." and not _listed(row, rel):
                continue
            return row, "" if rel == "." else rel
    return None


def _listed(row: ObjectRow, rel: str) -> bool:
    listed = row.client_values.get("_file_paths") or []
    return any(path == rel or path.startswith(rel + "/") for path in listed)


def excluded_subroots(row: ObjectRow, roots: list[tuple[Path, ObjectRow]]) -> frozenset[str]:
    """Folders under ``row``'s root that belong to other objects (relative, ``/``-separated)."""
    mine = _resolved(Path(row.local_root or "/"))
    return frozenset(
        root.relative_to(mine).as_posix()
        for root, other in roots
        if other is not row and root != mine and is_inside(root, mine)
    )


def index_paths(
    ctx: EngineContext, row: ObjectRow, roots: list[tuple[Path, ObjectRow]], prefixes: Iterable[str]
) -> IndexReport:
    """Scan the parts of ``row``'s root at ``prefixes`` ("": all of it) and store what changed in one transaction.

    The watcher hands over thousands of paths after a burst of writes: each is scanned (a stat, a range query of
    its rows), but the ignore rules are loaded once and the results written together, so the cost per path is a
    stat and an indexed lookup rather than a transaction. A path under another one given is covered by that one.
    """
    report = IndexReport()
    root = Path(row.local_root or "")
    if not root.is_dir():
        return report
    parts = covering(prefixes)
    result = ScanResult()
    if row.kind == KIND_FILES:
        for prefix in parts:
            _merge(result, _scan_listed(root, ctx.repo.file_stats(row.oaio_id, prefix)))
    else:
        rules = ctx.ignore_rules(root, reload=any(prefix in ("", ".oaioignore") for prefix in parts))
        exclude = excluded_subroots(row, roots)
        quiet = ctx.settings.quiet_period
        for prefix in parts:
            indexed = ctx.repo.iter_file_stats(row.oaio_id, prefix)  # streamed, merged with the walk in path order
            _merge(result, scan(root, indexed, prefix, ignore=rules, exclude=exclude, quiet_period=quiet))
    report.unstable = [root / rel for rel in result.unstable]
    report.symlinks = [root / rel for rel in result.symlinks]
    report.hashed = len(result.changed)
    if _store(ctx, row.oaio_id, result):
        report.dirty_objects.add(row.oaio_id)
    return report


def covering(prefixes: Iterable[str]) -> list[str]:
    """The given relative paths without those inside another one given ("" covers everything), sorted."""
    wanted = set(prefixes)
    if "" in wanted:
        return [""]
    kept = []
    for prefix in sorted(wanted):
        parts = prefix.split("/")
        if not any("/".join(parts[:depth]) in wanted for depth in range(1, len(parts))):
            kept.append(prefix)
    return kept


def _merge(total: ScanResult, part: ScanResult) -> None:
    """Add the scan of one (disjoint) part of a root to ``total``."""
    total.changed += part.changed
    total.missing += part.missing
    total.unstable += part.unstable
    total.symlinks += part.symlinks
    total.unreadable += part.unreadable
    total.seen += part.seen


def _scan_listed(root: Path, indexed: dict) -> ScanResult:
    """Stat only the files an app's file object lists (its rows); hash what changed."""
    result = ScanResult()
    for rel, old in indexed.items():
        try:
            st = (root / rel).lstat()
        except FileNotFoundError:
            if old.present:
                result.missing.append(rel)
            continue
        except OSError:
            result.unreadable.append(rel)
            continue
        local = _local_file(rel, st)
        if old.present and (old.size, old.mtime_ns, old.inode) == (local.size, local.mtime_ns, local.inode):
            continue
        hashed = _hash_stable(root, local, result)
        if hashed is not None:
            result.changed.append(hashed)
    return result


def _store(ctx: EngineContext, oaio_id: str, result: ScanResult) -> bool:
    """Write scan results; True when anything changed."""
    if not result.changed and not result.missing:
        return False
    with ctx.repo.session() as s:
        for start in range(0, len(result.changed), UPSERT_BATCH):
            _upsert(s, oaio_id, result.changed[start : start + UPSERT_BATCH])
        for start in range(0, len(result.missing), UPSERT_BATCH):
            batch = result.missing[start : start + UPSERT_BATCH]
            s.execute(
                sa.update(FileRow)
                .where(FileRow.oaio_id == oaio_id, FileRow.path.in_(batch))
                .values(present=False, sha256=None)
            )
        s.execute(sa.update(ObjectRow).where(ObjectRow.oaio_id == oaio_id).values(local_dirty=True))
    return True


def _upsert(session: sa.orm.Session, oaio_id: str, batch: list[HashedFile]) -> None:
    rows = [
        {
            "oaio_id": oaio_id,
            "path": h.file.path,
            "present": True,
            "size": h.file.size,
            "mtime_ns": h.file.mtime_ns,
            "inode": h.file.inode,
            "sha256": h.sha256,
            "executable": h.file.executable,
            "synced_sha256": None,
            "synced_stamp": "",
            "synced_executable": False,
        }
        for h in batch
    ]
    statement = insert(FileRow)
    statement = statement.on_conflict_do_update(
        index_elements=[FileRow.oaio_id, FileRow.path],
        set_={
            name: statement.excluded[name] for name in ("present", "size", "mtime_ns", "inode", "sha256", "executable")
        },
    )
    session.connection().execute(statement, rows)  # one statement compiled, executed for every row (executemany)


def forget_under(ctx: EngineContext, oaio_id: str, prefix: str) -> None:
    """Drop the index rows of ``oaio_id`` under ``prefix`` (a subtree that now belongs to another object)."""
    with ctx.repo.session() as s:
        s.execute(sa.delete(FileRow).where(FileRow.oaio_id == oaio_id, prefix_filter(prefix)))
