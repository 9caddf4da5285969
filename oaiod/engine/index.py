"""Step 1 of a cycle: bring the file index of objects up to date with the disk (design §3.1).

Each local path belongs to the innermost object root containing it. Folder objects are scanned (all of the root,
or the part under a dirty path); file objects of apps only stat their listed files — a new file in their folder is
not theirs. Changes are written with one upsert per batch; an object whose files changed gets ``local_dirty``.

**Ignored after sync** (design §6): a synced file that the ignore rules cover now keeps its row, *frozen* at the
synced state (``ignored``): the push carries it on unchanged (a server-side copy), so it stays on the server and on
the other devices, and nothing this device does to it is uploaded or deleted there. Before a pull,
:func:`settle_ignored` lets a remote change through only when the local file is still as synced; otherwise the
local file is kept and reported, and the row takes the server's version as its base. Un-ignored, the file syncs
again from what is on disk; one that was deleted meanwhile is restored from the synced version (never deleted on
the server by an un-ignore).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.sqlite import insert

from oaiod.engine.context import EngineContext, fetch_one
from oaiod.engine.ignore import IGNORE_FILE, IgnoreRules
from oaiod.engine.localfs import LocalChanged, LocalFsError, current_stat, safe_join, temp_beside
from oaiod.engine.manifest import MANIFEST_KEY, RemoteFile, remote_files
from oaiod.engine.placeholders import _resolved, is_inside
from oaiod.engine.plan import UNKNOWN
from oaiod.engine.scanner import HashedFile, ScanResult, _hash_stable, _local_file, file_sha256, holds_content, scan
from oaiod.model import FILES_VALUES_KEY, OaiObject, storage_key
from oaiod.state.models import KIND_FILES, KIND_FOLDER, KIND_ROOT, STATUS_REMOVED, EmptyDirRow, FileRow, ObjectRow
from oaiod.state.repo import FileStat, prefix_filter

log = logging.getLogger("oaiod.engine.index")

UPSERT_BATCH = 1000


@dataclass
class IndexReport:
    """What the local index step saw: which objects changed, what waits for the next cycle."""

    dirty_objects: set[str] = field(default_factory=set)
    unstable: list[Path] = field(default_factory=list)
    symlinks: list[Path] = field(default_factory=list)
    #: ``oaio_id -> paths`` no longer ignored but absent from disk: restored from the synced version
    restore: dict[str, list[str]] = field(default_factory=dict)
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


def excluded_subroots(
    row: ObjectRow, roots: list[tuple[Path, ObjectRow]], excluded: Iterable[Path] = ()
) -> frozenset[str]:
    """Folders under ``row``'s root that are not its own (relative, ``/``-separated): other objects' roots and the
    ``excluded`` folders (those of objects that stopped syncing here, design §1)."""
    mine = _resolved(Path(row.local_root or "/"))
    others = [root for root, other in roots if other is not row] + [_resolved(Path(path)) for path in excluded]
    return frozenset(root.relative_to(mine).as_posix() for root in others if root != mine and is_inside(root, mine))


def index_paths(
    ctx: EngineContext,
    row: ObjectRow,
    roots: list[tuple[Path, ObjectRow]],
    prefixes: Iterable[str],
    excluded: Iterable[Path] = (),
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
        rules = ctx.ignore_rules(root, reload=any(prefix in ("", IGNORE_FILE) for prefix in parts))
        if IGNORE_FILE in parts:
            parts = [""]  # new rules: every path may be ignored or un-ignored now
        exclude = excluded_subroots(row, roots, excluded)
        quiet = ctx.settings.quiet_period
        for prefix in parts:
            indexed = ctx.repo.iter_scan_rows(row.oaio_id, prefix)  # streamed, merged with the walk in path order
            _merge(result, scan(root, indexed, prefix, ignore=rules, exclude=exclude, quiet_period=quiet))
        if _index_empty_dirs(ctx, row.oaio_id, root, parts, result, rules, exclude):
            report.dirty_objects.add(row.oaio_id)
    report.unstable = [root / rel for rel in result.unstable]
    report.symlinks = [root / rel for rel in result.symlinks]
    report.hashed = len(result.changed)
    if result.restore:
        report.restore[row.oaio_id] = result.restore
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


def _index_empty_dirs(
    ctx: EngineContext,
    oaio_id: str,
    root: Path,
    parts: list[str],
    result: ScanResult,
    rules: IgnoreRules,
    exclude: frozenset[str],
) -> bool:
    """Bring the object's empty folders up to date with the scan of ``parts`` (design §1: they sync as folders);
    True (the object is dirty) when they changed.

    The walk reports the empty folders under each part; a part's parent folders are looked at too, since the
    deletion of a part can leave its folder empty and a new file fills one. Folders that could not be listed keep
    what was known of them."""
    known = ctx.repo.empty_dirs(oaio_id)
    found = set(result.empty_dirs)
    gone = {
        path
        for path in known
        if any(_under(path, part) for part in parts) and not any(_under(path, u) for u in result.unlisted)
    }
    looked: dict[str, bool | None] = {}
    for part in parts:
        folder = part
        while "/" in folder:
            folder = folder.rsplit("/", 1)[0]
            if folder in looked:
                break
            held = looked[folder] = holds_content(root, folder, rules, exclude)
            if held is False:
                found.add(folder)
            else:
                gone.add(folder)
            if held:
                break  # the folders above it hold it: not empty
    add, remove = found - known, (gone & known) - found
    if not (add or remove):
        return False
    ctx.repo.change_empty_dirs(oaio_id, add=add, remove=remove)
    ctx.repo.update_object(oaio_id, local_dirty=True)
    return True


def _under(path: str, prefix: str) -> bool:
    """True when ``path`` is ``prefix`` or lies in the folder ``prefix`` ("" holds everything)."""
    return not prefix or path == prefix or path.startswith(prefix + "/")


def _merge(total: ScanResult, part: ScanResult) -> None:
    """Add the scan of one (disjoint) part of a root to ``total``."""
    total.changed += part.changed
    total.missing += part.missing
    total.unstable += part.unstable
    total.symlinks += part.symlinks
    total.unreadable += part.unreadable
    total.ignored += part.ignored
    total.unignored += part.unignored
    total.restore += part.restore
    total.empty_dirs += part.empty_dirs
    total.unlisted += part.unlisted
    total.seen += part.seen


def _scan_listed(root: Path, indexed: dict[str, FileStat]) -> ScanResult:
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
    if not (result.changed or result.missing or result.ignored or result.unignored):
        return False
    base = _base_entries(ctx, oaio_id) if result.ignored else {}
    with ctx.repo.session() as s:
        for start in range(0, len(result.unignored), UPSERT_BATCH):
            batch = result.unignored[start : start + UPSERT_BATCH]
            s.execute(
                sa.update(FileRow).where(FileRow.oaio_id == oaio_id, FileRow.path.in_(batch)).values(ignored=False)
            )
            log.info("%s: %d file(s) no longer ignored sync again, e.g. %s", oaio_id, len(batch), batch[0])
        for path in result.ignored:
            _freeze(s, oaio_id, path, base)
        if result.ignored:
            log.info(
                "%s: %d synced file(s) ignored now, e.g. %s: they stay on the server as synced, no longer uploaded",
                oaio_id,
                len(result.ignored),
                result.ignored[0],
            )
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


def _base_entries(ctx: EngineContext, oaio_id: str) -> dict[str, RemoteFile]:
    """The files of the object's synced version (their size and mtime, which the index rows do not keep)."""
    row = ctx.repo.get_object(oaio_id)
    return remote_files(row.synced_values, row.synced_stamp) if row is not None else {}


def _freeze(session: sa.orm.Session, oaio_id: str, path: str, base: dict[str, RemoteFile]) -> None:
    """Freeze the row of a file the rules ignore now at its synced state (a never-synced file's row is dropped).

    A local change not pushed yet is not pushed any more: the row goes back to the base content, its size and
    mtime from the base manifest and inode 0, which no file has — so :func:`settle_ignored` sees the disk as
    changed since the base and never lets a download replace it.
    """
    file = session.scalar(sa.select(FileRow).where(FileRow.oaio_id == oaio_id, FileRow.path == path))
    if file is None:
        return
    if file.synced_sha256 is None:
        session.delete(file)
        return
    if not (file.present and file.sha256 == file.synced_sha256 and file.executable == file.synced_executable):
        entry = base.get(path)
        if entry is not None and entry.size >= 0:
            file.size, file.mtime_ns = entry.size, entry.mtime_ns
        file.inode, file.present = 0, True
        file.sha256, file.executable = file.synced_sha256, file.synced_executable
    file.ignored = True


def settle_ignored(ctx: EngineContext, row: ObjectRow, remote: OaiObject) -> list[str]:
    """Before merging ``remote`` into a folder object, for files the ignore rules cover here; returns the paths
    where the local file was kept (reported).

    A frozen file that the server changed and that changed here too keeps the local file; its row takes the
    server's version as the base, so the pull leaves it alone and the next push carries the server's version on.
    A frozen file unchanged here is left to the pull (downloaded). A file the server adds or changes at an ignored
    path where an unindexed local file stands gets a frozen row the same way (the pull would otherwise find a file
    in the way of its download at every cycle, since the index never takes an ignored file in).

    Where this device's own rules (excluded here, ``[sync] ignore_patterns``: see
    :meth:`~oaiod.engine.ignore.IgnoreRules.device_only`) cover a path and no local file stands, nothing is
    downloaded: whatever the server adds, changes or deletes there only moves the frozen row to the server's
    version, which later pushes carry on (a local file there is settled as above).
    """
    if not row.local_root or row.kind not in (KIND_ROOT, KIND_FOLDER):
        return []
    root = Path(row.local_root)
    frozen = ctx.repo.ignored_files(row.oaio_id)
    rules = ctx.ignore_rules(root)
    in_the_way: list[str] = []
    not_here: list[str] = []
    for path in _changed_paths(row, remote):
        if rules.covers(path) and ctx.repo.get_file(row.oaio_id, path) is None:
            if _on_disk(root, path):
                in_the_way.append(path)
            elif rules.device_only(path):
                not_here.append(path)
    if not frozen and not in_the_way and not not_here:
        return []
    wanted = remote_files(remote.client_values, remote.client_stamp)
    kept = []
    for path in not_here:
        want = wanted.get(path)
        if want is not None and want.sha256 is UNKNOWN:
            want = _fetch_hash(ctx, remote, path, root, False)
        if want is not None:
            _stay_remote(ctx, row.oaio_id, path, want, new=True)
    for file in frozen:
        want = wanted.get(file.path)
        if want is not None and (want.sha256, want.executable) == (file.synced_sha256, file.synced_executable):
            continue  # the server did not change it
        if rules.device_only(file.path) and not _on_disk(root, file.path):
            if want is not None and want.sha256 is UNKNOWN:
                want = _fetch_hash(ctx, remote, file.path, root, file.synced_executable)
            _stay_remote(ctx, row.oaio_id, file.path, want)
            continue
        if _unchanged_on_disk(root / file.path, file):
            continue  # as synced: the pull applies the server's change (content or executable bit)
        if want is not None and want.sha256 is UNKNOWN:
            want = _fetch_hash(ctx, remote, file.path, root, file.synced_executable)
            if want.sha256 == file.synced_sha256:
                continue
        _keep_local(ctx, row.oaio_id, file.path, want)
        kept.append(file.path)
    for path in in_the_way:
        want = wanted.get(path)
        if want is None:
            continue  # named by the manifest only, not by _file_paths: not a file of this version
        if want.sha256 is UNKNOWN:
            want = _fetch_hash(ctx, remote, path, root, False)
        if _keep_local(ctx, row.oaio_id, path, want, disk=root / path):
            kept.append(path)
    return kept


def _changed_paths(row: ObjectRow, remote: OaiObject) -> list[str]:
    """Paths whose manifest entry in ``remote`` differs from the synced version's: compared raw, in one pass over
    the new entries (100,000 files: a few ms), as candidates only; what is used later is validated
    (:func:`remote_files`, :func:`~oaiod.engine.localfs.safe_join`). A manifest not of this version: every path."""
    before, now = _raw_files(row.synced_values or {}), _raw_files(remote.client_values)
    manifest = remote.client_values.get(MANIFEST_KEY)
    if now is None or not isinstance(manifest, dict) or manifest.get("stamp") != remote.client_stamp:
        return list(remote.client_values.get(FILES_VALUES_KEY) or [])
    before = before or {}
    return [path for path, entry in now.items() if before.get(path) != entry]


def _raw_files(values: dict[str, Any]) -> dict[str, Any] | None:
    manifest = values.get(MANIFEST_KEY)
    files = manifest.get("files") if isinstance(manifest, dict) else None
    return files if isinstance(files, dict) else None


def _on_disk(root: Path, rel: str) -> bool:
    try:
        return current_stat(safe_join(root, rel)) is not None
    except LocalFsError:
        return False


def _unchanged_on_disk(path: Path, file: FileRow) -> bool:
    try:
        now = current_stat(path)
    except LocalChanged:
        return False
    return now is not None and (now.size, now.mtime_ns, now.inode) == (file.size, file.mtime_ns, file.inode)


def _fetch_hash(ctx: EngineContext, remote: OaiObject, rel: str, root: Path, executable: bool) -> RemoteFile:
    """The server's file of a stale manifest (which knows no executable bit: ``executable`` stands in), hashed
    (downloaded to a temp file beside it, then removed)."""
    temp = temp_beside(root / rel)
    try:
        got = fetch_one(ctx.backend(remote.csh_id), storage_key(remote.oaio_id, remote.client_stamp, rel), temp)
        assert got.sha256 is not None  # get_many always hashes
        return RemoteFile(got.sha256, got.size, 0, executable)
    finally:
        temp.unlink(missing_ok=True)


def _stay_remote(ctx: EngineContext, oaio_id: str, path: str, want: RemoteFile | None, *, new: bool = False) -> None:
    """A file not synced here (``device_only``): its frozen row takes the server's version — made for a ``new``
    one, dropped for one the server deleted — and nothing touches the disk."""
    where = (FileRow.oaio_id == oaio_id, FileRow.path == path)
    with ctx.repo.session() as s:
        if want is None:
            s.execute(sa.delete(FileRow).where(*where))
            return
        assert isinstance(want.sha256, str)
        if new:
            s.add(FileRow(oaio_id=oaio_id, path=path, synced_stamp=""))
            s.flush()
        s.execute(
            sa.update(FileRow)
            .where(*where)
            .values(present=True, size=max(0, want.size), mtime_ns=want.mtime_ns, inode=0, ignored=True)
            .values(sha256=want.sha256, executable=want.executable)
            .values(synced_sha256=want.sha256, synced_executable=want.executable)
        )


def _keep_local(ctx: EngineContext, oaio_id: str, path: str, want: RemoteFile | None, disk: Path | None = None) -> bool:
    """The server changed an ignored file that differs here: keep the local one, take the server's as the base (a
    frozen row; ``disk``: a file not indexed yet). False when ``disk`` holds the server's content already."""
    where = (FileRow.oaio_id == oaio_id, FileRow.path == path)
    with ctx.repo.session() as s:
        if want is None:  # deleted on the server: the local file stays, outside the index (it is ignored)
            s.execute(sa.delete(FileRow).where(*where))
        else:
            assert isinstance(want.sha256, str)
            stat = (max(0, want.size), want.mtime_ns, 0)  # inode 0 is no file's: the disk stays "changed"
            same = disk is not None and file_sha256(disk) == want.sha256
            if same and disk is not None:
                now = current_stat(disk)
                stat = (now.size, now.mtime_ns, now.inode) if now is not None else stat
            if disk is not None:
                s.add(FileRow(oaio_id=oaio_id, path=path, synced_stamp=""))
                s.flush()
            s.execute(
                sa.update(FileRow)
                .where(*where)
                .values(present=True, size=stat[0], mtime_ns=stat[1], inode=stat[2], ignored=True)
                .values(sha256=want.sha256, executable=want.executable)
                .values(synced_sha256=want.sha256, synced_executable=want.executable)
            )
            if same:
                return False
    what = "deleted" if want is None else "changed"
    detail = f"ignored here and different here; {what} on the server: the local file was kept"
    log.warning("%s: %s %s", oaio_id, path, detail)
    ctx.repo.add_conflict(oaio_id, "ignored", path, detail=detail)
    ctx.repo.add_history(oaio_id, "keep", path, detail)
    return True


def forget_under(ctx: EngineContext, oaio_id: str, prefix: str) -> None:
    """Drop the index rows of ``oaio_id`` under ``prefix`` (a subtree that now belongs to another object)."""
    with ctx.repo.session() as s:
        s.execute(sa.delete(FileRow).where(FileRow.oaio_id == oaio_id, prefix_filter(prefix)))
        under = (
            sa.or_(EmptyDirRow.path == prefix, EmptyDirRow.path.startswith(prefix + "/", autoescape=True))
            if prefix
            else sa.true()
        )
        s.execute(sa.delete(EmptyDirRow).where(EmptyDirRow.oaio_id == oaio_id, under))
