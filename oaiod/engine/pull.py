"""Step 2 of a cycle: merge the server's newest version of one object into the local folder (design §3.2, §5).

Downloads go with ``backend.get_many`` in bounded batches to temp files beside their targets, written with their
mtime and mode; each is verified against the manifest's sha256 (the backend hashes what it wrote: no second read)
and renamed into place only if the local file is still as indexed; its index row takes the stat the backend
returned. A replaced or deleted file goes to the trash first. The object's base (``synced_stamp``)
advances only when every file of the version was merged; otherwise the next cycle merges again (idempotent).
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import functools
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from oaiod.engine import history, localcopy, localfs, moves
from oaiod.engine.context import (
    TRANSFER_PIPELINE,
    EngineContext,
    EngineError,
    IntegrityError,
    in_flight,
    transfer_batches,
)
from oaiod.engine.dirs import merge_remote_dirs
from oaiod.engine.localfs import LocalChanged, LocalFsError
from oaiod.engine.manifest import RemoteFile, confirmed_delete, folders_of, remote_files
from oaiod.engine.plan import (
    UNKNOWN,
    Action,
    _Unknown,
    conflict_name,
    decide,
    is_mass_deletion,
    merge_values,
    under_remote_folders,
)
from oaiod.engine.rows import RowWriter
from oaiod.engine.values import record_clashes
from oaiod.errors import OaiodError, ValidationError
from oaiod.model import OaiObject, right_grants, storage_key
from oaiod.state.models import KIND_DATA, STATUS_ACTIVE, STATUS_HELD, FileRow, ObjectRow
from oaiod.state.repo import FileStat
from oaiod.storage.base import Backend, Transfer, Transferred
from oaiod.storage.errors import StorageError

log = logging.getLogger("oaiod.engine.pull")

#: journal op of a batch of downloads being renamed into place (:func:`~oaiod.engine.recovery.recover_installs`)
INSTALL = "install"
INSTALLED_AT_PATH, INSTALLED_AS_COPY = "", "copy"  #: where the download of an ``install`` entry goes

#: steps per batch: temp files on disk and index rows in memory at most; two syncs per batch (each with a fixed
#: cost, a journal commit: fewer, bigger batches make fewer)
APPLY_BATCH = 10_000


@dataclass
class PullOutcome:
    """What merging one object did; ``complete`` is False when something is left for the next cycle."""

    complete: bool = True
    merged: bool = False  # False: the version was already here (e.g. our own commit coming back)
    held: bool = False
    downloads: int = 0
    #: downloads served by a copy of a file already here (a rename, a copy, a revert): no bytes from storage
    local_copies: int = 0
    trashed: int = 0
    conflicts: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    retry_paths: list[Path] = field(default_factory=list)
    #: paths that could not be merged this time (a failed download, a file changed during the merge): the rest of
    #: the object is merged, and a push may commit on top of the server's version keeping these as the server has
    #: them (push.Carry), so one path that cannot be merged does not hold back the device's other changes
    failed: set[str] = field(default_factory=set)


@dataclass
class _Step:
    row: FileRow | None
    path: str
    remote: RemoteFile | None
    action: Action


def pull_object(ctx: EngineContext, row: ObjectRow, remote: OaiObject) -> PullOutcome:
    """Merge ``remote`` (the server's newest version) into ``row``'s folder and index."""
    ctx.repo.apply_server_object(row, remote)
    outcome = PullOutcome()
    if remote.client_stamp == row.synced_stamp and not row.remote_dirty:  # dirty: a commit carried failed paths
        ctx.repo.save_object(row)
        return outcome
    outcome.merged = True
    if row.kind == KIND_DATA or not row.local_root:
        _merge_values_only(ctx, row, remote)
        return outcome
    remote_map = remote_files(remote.client_values, remote.client_stamp)
    base = history.filled_from_index(
        ctx.repo, row.oaio_id, history.manifest_hashes(row.synced_values, row.synced_stamp)
    )
    steps = _plan(ctx, row, remote_map)
    if not confirmed_delete(remote.client_values, remote.client_stamp) and _held(ctx, row, steps, outcome):
        return outcome
    backend = ctx.backend(remote.csh_id) if any(_needs_backend(step) for step in steps) else None
    merge = _Merge(ctx, row, Path(row.local_root), backend, remote, outcome, RowWriter(ctx.repo, row.oaio_id),
                   remote_map)  # fmt: skip
    steps = _clear_remote_folders(merge, steps, remote_map)
    steps = _move_folders(merge, steps, remote_map)
    steps = _without_backing_off(merge, steps)
    for start in range(0, len(steps), APPLY_BATCH):
        _apply_batch(merge, steps[start : start + APPLY_BATCH])
    merge_remote_dirs(ctx, row, remote)  # after the files: a file removed may have emptied a folder to keep
    _finish(ctx, row, remote, outcome, base)
    return outcome


@dataclass
class _Merge:
    """One object's pull in progress: what every step needs."""

    ctx: EngineContext
    row: ObjectRow
    root: Path
    backend: Backend | None
    remote: OaiObject
    outcome: PullOutcome
    rows: RowWriter
    #: the server's version's files by path
    remote_map: dict[str, RemoteFile]
    #: files renamed into the folder since the last durability barrier
    installed: list[str] = field(default_factory=list)
    #: the folders the current batch's downloads are written into (staged ones among them)
    folders: localfs.BatchFolders | None = None
    #: temp files of failed steps, kept while the batch's journal row names them (None: no such row)
    deferred: list[str] | None = None

    @functools.cached_property
    def remote_names(self) -> frozenset[str]:
        """Every name the server's version uses, its files' and their folders': a conflicted copy takes none of
        them (another device may have made a copy of that name in the same second, which this pull installs)."""
        return frozenset(self.remote_map) | folders_of(self.remote_map)


@dataclass(frozen=True, slots=True)
class _Fetched:
    """A download in its temp file: ``got`` is its stat as written and the sha256 of its content."""

    temp: str
    got: Transferred

    @property
    def stat(self) -> FileStat:
        return FileStat(self.got.size, self.got.mtime_ns, self.got.inode)


Fetched = _Fetched | OaiodError  # a step's download, or why it failed


def _apply_batch(m: _Merge, steps: list[_Step]) -> None:
    """Fetch the batch's downloads (``get_many``), make them durable with one sync, apply every step, make the
    renames durable with one more sync, then write the batch's index rows in one transaction (design §3: no index
    row describes a file a power loss could take back; no file is renamed over another before its data is on
    disk)."""
    fetched: dict[str, Fetched] = {}
    m.folders = localfs.BatchFolders(m.root, stage_new_folders=True, keep_out=_needs_real_folders(steps))
    journal_id: int | None = None
    try:
        if m.backend is not None:
            _prefetch(m, steps, fetched)
        temps = [got.temp for got in fetched.values() if isinstance(got, _Fetched)]
        if temps:
            localfs.make_durable(m.root, temps)
        journal_id = _journal_installs(m, steps, fetched)
        m.installed += m.folders.publish()  # new folders, each renamed into place whole, once its files are durable
        for step in steps:
            _apply_step(m, step, fetched.pop(step.path, None))
    finally:
        try:
            if m.installed:
                localfs.make_durable(m.root, m.installed)
                m.installed = []
            m.rows.flush()
        finally:
            # the rows are written (or this process goes on without them, as before the journal): the row goes
            # before any temp file of the batch is removed, so a journalled temp file is gone only once renamed
            if journal_id is not None:
                m.ctx.repo.journal_remove(journal_id)
            _clean_batch(m, fetched)


#: actions whose download is journalled, and how :func:`~oaiod.engine.recovery.recover_installs` reads its entry:
#: installed under the step's path, or as a conflicted copy beside the local file (which keeps the path)
_JOURNALLED = {
    Action.DOWNLOAD: INSTALLED_AT_PATH,
    Action.RESTORE: INSTALLED_AT_PATH,
    Action.CONFLICT: INSTALLED_AT_PATH,  # the local file went aside to a conflicted copy first
    Action.CONFLICT_NO_BASE: INSTALLED_AS_COPY,
}


def _journal_installs(m: _Merge, steps: list[_Step], fetched: dict[str, Fetched]) -> int | None:
    """Journal the batch's downloads of known content (path, temp file, sha256, executable bit, where it goes)
    before any of them is renamed into place (design §8, no resurrection): after a ``kill -9`` between the renames
    and the index rows, a temp file that is gone was renamed into place — a path with no file then was deleted by
    the user since, and a conflicted copy of the server's side was made, so the conflict is not made twice
    (:func:`~oaiod.engine.recovery.recover_installs`). Until the row goes, a temp file of a failed step is kept
    (:attr:`_Merge.deferred`), so a missing temp file always means a rename."""
    files = [
        [step.path, got.temp, step.remote.sha256, _is_exec(step.remote, step.row), _JOURNALLED[step.action]]
        for step in steps
        if step.action in _JOURNALLED and step.remote is not None
        if isinstance(step.remote.sha256, str) and isinstance(got := fetched.get(step.path), _Fetched)
    ]
    if not files:
        return None
    data = {"root": str(m.root), "files": files}
    m.deferred = []
    return m.ctx.repo.journal_add(INSTALL, m.row.oaio_id, m.remote.client_stamp, "", data)


def _clean_batch(m: _Merge, fetched: dict[str, Fetched]) -> None:
    """Remove what a batch did not install: staged folders never published, temp files of failed steps and of an
    interrupted batch."""
    assert m.folders is not None
    m.folders.abandon()  # an interrupted batch: staged folders never published are removed
    m.folders.close()  # and every temp file not installed, wherever its folder is now
    for temp in m.deferred or ():
        localfs.discard(temp)
    m.deferred = None
    for leftover in fetched.values():  # an interrupted batch: its downloads were never installed
        if isinstance(leftover, _Fetched):
            localfs.discard(leftover.temp)


def _clear_remote_folders(m: _Merge, steps: list[_Step], remote_map: dict[str, RemoteFile]) -> list[_Step]:
    """A local file where the server's version has a folder of the same name (design §5, a file and a folder of one
    name): before any download needs the folder, the file goes to the trash (deleted on the server, unchanged
    here) or aside to a conflicted copy, which the next commit carries. A server file deleted here (and unchanged
    there) makes no folder: the next commit deletes it, so a folder replaced here by a file keeps its name.
    Returns the other steps."""
    local = {step.path: step for step in steps if step.remote is None and step.row is not None and step.row.present}
    deleted_here = {
        step.path for step in steps if step.action is Action.PUSH and step.row is not None and not step.row.present
    }
    staying = [path for path in remote_map if path not in deleted_here] if local and deleted_here else remote_map
    clashing = under_remote_folders(local, staying) if local else set()
    if not clashing:
        return steps
    for path in sorted(clashing):
        step = local[path]
        if step.action is not Action.TRASH_LOCAL:
            step = _Step(step.row, path, None, Action.MOVE_ASIDE)
        _apply_step(m, step, None)
    if m.installed:
        localfs.make_durable(m.root, m.installed)
        m.installed = []
    m.rows.flush()
    return [step for step in steps if step.path not in clashing]


def _move_folders(m: _Merge, steps: list[_Step], remote_map: dict[str, RemoteFile]) -> list[_Step]:
    """A folder the server's version renamed (its files all gone from one folder and arrived, and nothing else, in
    a folder new here) is renamed here whole when it holds exactly its indexed files (:mod:`~oaiod.engine.moves`):
    one rename instead of a copy and a trashing per file. Made durable, then its rows written, like a batch.
    Returns the other steps (a folder that cannot be moved keeps its per-file steps)."""
    leaving = {
        step.path: moves.Leaving(step.row.sha256, step.row.executable, stat)
        for step in steps
        if step.action is Action.TRASH_LOCAL and step.row is not None and step.row.sha256
        if (stat := _stat_of(step.row)) is not None
    }
    arriving = {
        step.path: moves.Arriving(step.remote.sha256, step.remote.executable, step.remote.mtime_ns)
        for step in steps
        if step.action is Action.DOWNLOAD and step.row is None and step.remote is not None
        if isinstance(step.remote.sha256, str)
    }
    found = moves.find_folder_moves(leaving, arriving, remote_map)
    done: set[str] = set()
    for move in found:
        try:
            moved = localfs.move_folder_if_as_indexed(
                m.root, move.old, move.new, {rel: file.stat for rel, file in move.files.items()}
            )
        except (LocalFsError, OSError) as exc:
            log.info("%s: cannot rename %s to %s here (%s); copying its files", m.row.oaio_id, move.old, move.new, exc)
            moved = False
        if not moved:
            continue
        for rel, file in move.files.items():
            m.rows.delete(f"{move.old}/{rel}")
            m.rows.write(f"{move.new}/{rel}", file.stat, file.sha256, file.executable)
            done |= {f"{move.old}/{rel}", f"{move.new}/{rel}"}
        m.installed += [str(m.root / move.new), str(m.root / move.old)]
        m.outcome.downloads += len(move.files)
        m.outcome.local_copies += len(move.files)
        m.ctx.progress.finish(False, sum(file.stat.size for file in move.files.values()), len(move.files))
    if m.installed:
        localfs.make_durable(m.root, m.installed)
        m.installed = []
    m.rows.flush()
    return [step for step in steps if step.path not in done] if done else steps


def _needs_real_folders(steps: list[_Step]) -> frozenset[str]:
    """The folders (with every folder above them) that must not be staged: those of a step that is not a plain
    download of a file this device never had — a step that may leave its download unused, or finds a file there."""
    kept: set[str] = set()
    for step in steps:
        if step.row is not None or step.action is not Action.DOWNLOAD:
            folder = step.path.rpartition("/")[0]
            while folder and folder not in kept:
                kept.add(folder)
                folder = folder.rpartition("/")[0]
    return frozenset(kept)


def _without_backing_off(m: _Merge, steps: list[_Step]) -> list[_Step]:
    """The steps to try now: not those of files whose merge of this server version failed and waits out its
    backoff (a download that keeps failing, e.g. on a full disk, is not fetched again every cycle). They stay
    unmerged like a failed step (the commit carries them); a newer server version, ``ctl sync`` or a restart tries
    them at once."""
    waiting = m.ctx.repo.files_backing_off(m.row.oaio_id, m.remote.client_stamp)
    if not waiting:
        return steps
    m.outcome.complete = False
    m.outcome.failed.update(step.path for step in steps if step.path in waiting)
    return [step for step in steps if step.path not in waiting]


def _apply_step(m: _Merge, step: _Step, fetched: Fetched | None) -> None:
    oaio_id = m.row.oaio_id
    try:
        try:
            _apply(m, step, fetched)
        except BaseException:
            if isinstance(fetched, _Fetched):
                if m.deferred is not None:  # journalled: removed once the batch's journal row is gone
                    m.deferred.append(fetched.temp)
                else:
                    localfs.discard(fetched.temp)  # not installed (gone already when it was)
            raise
    except LocalChanged as exc:
        log.info("%s: %s; merging it next cycle", oaio_id, exc)
        m.outcome.complete = False
        m.outcome.retry_paths.append(m.root / step.path)
        m.outcome.failed.add(step.path)
    except (LocalFsError, EngineError, OaiodError, OSError) as exc:  # one file never stops the cycle
        log.warning("%s: cannot merge %s (%s); trying again later", oaio_id, step.path, exc)
        m.ctx.repo.record_error(f"file:{oaio_id}:{step.path}", exc, oaio_id=oaio_id, path=step.path)
        m.outcome.errors.append(f"{step.path}: {exc}")
        m.outcome.complete = False
        m.outcome.failed.add(step.path)


def _merge_local_values(ctx: EngineContext, row: ObjectRow, local: dict[str, Any], remote: OaiObject) -> dict[str, Any]:
    """Values changed here and not committed yet, merged by key with the server's version (design §5). A key changed
    differently on both sides keeps the server's value — that version was committed first, as a file conflict keeps
    the server's content under its name — and the clash is recorded with both values (``ctl conflicts``, kind
    ``value``), so the value this device loses is never dropped in silence."""
    merged, clashes = merge_values(row.synced_values, local, remote.client_values)
    record_clashes(ctx, row.oaio_id, clashes, local, remote.client_values, kept_local=False)
    return merged


def _merge_values_only(ctx: EngineContext, row: ObjectRow, remote: OaiObject) -> None:
    if row.local_values is not None:
        merged = _merge_local_values(ctx, row, row.local_values, remote)
        row.local_values = merged if merged != remote.client_values else None
        row.local_dirty = row.local_values is not None
    row.synced_stamp, row.synced_values, row.remote_dirty = remote.client_stamp, remote.client_values, False
    ctx.repo.save_object(row)
    ctx.repo.add_history(row.oaio_id, "values", detail=f"version {remote.client_stamp}")


def _plan(ctx: EngineContext, row: ObjectRow, remote_map: dict[str, RemoteFile]) -> list[_Step]:
    """Decide every file (streaming the index); files both sides agree on and already synced need no step."""
    # the object has a base once a pull finished; a file this device synced has its own even before (a first pull
    # cut short by one file leaves synced_stamp empty, but knows what it downloaded): else a file the server deleted
    # or changed meanwhile would look like one this device added, and be pushed back or win its name
    has_base = bool(row.synced_stamp)
    served = functools.cache(lambda: _served_contents(ctx, row.oaio_id))
    remaining = dict(remote_map)
    steps: list[_Step] = []
    ctx.progress.queued_downloads = ctx.progress.queued_download_bytes = 0
    with ctx.repo.session() as s:
        for file in ctx.repo.iter_files(row.oaio_id, session=s):
            remote = remaining.pop(file.path, None)
            local = file.sha256 if file.present else None
            remote_sha = remote.sha256 if remote is not None else None
            base = file.synced_sha256
            if base is None and not has_base and local is not None and (file.path, local) in served():
                base = local  # the server had this very content here: downloaded before a kill lost its row
            action = decide(base, local, remote_sha, has_base=has_base or base is not None)
            if action is Action.NOTHING and file.synced_sha256 == remote_sha and (local is not None or remote is None):
                if remote is None and not file.present:
                    steps.append(_Step(file, file.path, None, action))  # deleted on both sides: drop the row
                if remote is None or file.executable == remote.executable == file.synced_executable:
                    continue  # else only the executable bit differs: merged by _settle_executable
            s.expunge(file)
            file.synced_sha256 = base  # detached: what the step decides on, written only by the step
            steps.append(_Step(file, file.path, remote, action))
    for path, remote in remaining.items():
        steps.append(_Step(None, path, remote, decide(None, None, remote.sha256, has_base=has_base)))
    for step in steps:
        if _needs_backend(step):
            ctx.progress.queued_downloads += 1
            ctx.progress.queued_download_bytes += max(0, step.remote.size if step.remote else 0)
    return steps


def _served_contents(ctx: EngineContext, oaio_id: str) -> frozenset[tuple[str, str]]:
    """``(path, sha256)`` of every file of every version the server keeps of an object (hub ``versions``), asked
    only by a pull without a base that finds a file with no base of its own. A first pull cut short by a kill after
    its renames and before its index rows leaves downloaded files that look added here; a file whose content the
    server had at that path is the server's, so a deletion or change made since on another device applies to it
    instead of bringing it back (sim seed 5). Empty without the feature or when the history cannot be read."""
    try:
        if "versions" not in ctx.api.features():
            return frozenset()
        versions = ctx.api.versions(oaio_id)
    except (OaiodError, ValidationError) as exc:
        log.info("%s: no version history to recognise downloaded files (%s)", oaio_id, exc)
        return frozenset()
    return frozenset(
        (path, str(entry.sha256))
        for version in versions
        for path, entry in remote_files(version.values, version.stamp).items()
        if entry.sha256 is not UNKNOWN
    )


def _needs_backend(step: _Step) -> bool:
    return step.action in (
        Action.DOWNLOAD,
        Action.RESTORE,
        Action.FETCH_AND_DECIDE,
        Action.CONFLICT,
        Action.CONFLICT_NO_BASE,
    )


def _held(ctx: EngineContext, row: ObjectRow, steps: list[_Step], outcome: PullOutcome) -> bool:
    """Hold a pull that would trash most of an object's files until ``confirm_delete`` (design §5)."""
    arriving = {step.remote.sha256 for step in steps if step.remote is not None}
    trash = sum(  # a file that arrives under another path (moved or renamed) is not a deletion
        1
        for step in steps
        if step.action is Action.TRASH_LOCAL and (step.row is None or step.row.synced_sha256 not in arriving)
    )
    if row.delete_confirmed or not trash:
        return False
    total = ctx.repo.count_files(row.oaio_id, synced=True)
    settings = ctx.settings
    if not is_mass_deletion(trash, total, ratio=settings.mass_delete_ratio, minimum=settings.mass_delete_min):
        return False
    reason = f"the server's version deletes {trash} of {total} files; run `oaiod ctl confirm-delete {row.oaio_id}`"
    if row.status != STATUS_HELD:
        log.warning("%s: holding a mass deletion: %s", row.oaio_id, reason)
        ctx.repo.add_history(row.oaio_id, "held", detail=reason)
    row.status, row.hold_reason = STATUS_HELD, reason
    ctx.repo.save_object(row)
    outcome.held, outcome.complete = True, False
    return True


def _apply(m: _Merge, step: _Step, fetched: Fetched | None = None) -> None:
    action, file = step.action, step.row
    if action is Action.FETCH_AND_DECIDE:
        _fetch_and_decide(m, step, _take(step, fetched))
    elif action in (Action.DOWNLOAD, Action.RESTORE):
        assert step.remote is not None
        _install(m, step.path, _take(step, fetched), step.remote, file)
        m.outcome.downloads += 1
    elif action is Action.TRASH_LOCAL:
        moved = localfs.trash_if_unchanged(m.root, step.path, _stat_of(file))
        m.rows.delete(step.path)
        if moved is not None and file is not None:
            _note_trashed(m, [moved], file)
        m.outcome.trashed += 1
    elif action is Action.NOTHING:
        if step.remote is None:
            m.rows.delete(step.path)
        else:
            _settle_executable(m, step)
    elif action is Action.KEEP_LOCAL:
        m.rows.set_synced(step.path, None, False)  # not in the new base: pushed again as a new file
        _report_kept(m.ctx, m.row, step.path, "deleted on the server but modified here; kept")
    elif action is Action.PUSH:
        _report_kept(m.ctx, m.row, step.path, "")
    elif action in (Action.CONFLICT, Action.CONFLICT_NO_BASE):
        _resolve_conflict(m, step, _take(step, fetched))
    elif action is Action.MOVE_ASIDE:
        _move_aside(m, step)


def _take(step: _Step, fetched: Fetched | None) -> _Fetched:
    """The step's download, or the reason it failed raised."""
    if isinstance(fetched, OaiodError):
        raise fetched.with_traceback(None)
    if fetched is None:
        raise EngineError(f"{step.path} was not downloaded")  # a bug: every step that needs storage is prefetched
    return fetched


def _settle_executable(m: _Merge, step: _Step) -> None:
    """Local and remote content agree: merge the executable bit three-way (design §5 for one bit). The remote bit
    changed and the local one is as in the base: chmod here. The local bit changed (or there is no base): it
    wins and is pushed. Either way the remote version becomes the base."""
    file, remote = step.row, step.remote
    assert remote is not None
    if file is None or not file.present or file.executable == remote.executable:
        m.rows.set_synced(step.path, _decided(remote.sha256), remote.executable)
    elif file.synced_sha256 is not None and file.executable == file.synced_executable:
        stat = _stat_of(file)
        assert stat is not None and file.sha256 is not None
        localfs.set_executable(m.root, step.path, remote.executable, stat)
        m.rows.write(step.path, stat, file.sha256, remote.executable)
        m.ctx.repo.add_history(m.row.oaio_id, "chmod", step.path, f"executable: {remote.executable} (server)")
    else:
        m.rows.set_synced(step.path, _decided(remote.sha256), remote.executable)
        _report_kept(m.ctx, m.row, step.path, "")


def _prefetch(m: _Merge, steps: list[_Step], fetched: dict[str, Fetched]) -> None:
    """Download every step that needs a file from storage into a temp file beside its target, ``get_many`` per
    bounded batch (``fetched``: path -> the temp file, or why it failed); a content this device has already is
    copied from its local file instead (:mod:`~oaiod.engine.localcopy`). Folders are checked or made once per
    batch. The temp files are not fsynced: the caller makes the whole batch durable with one sync."""
    wanted = [step for step in steps if _needs_backend(step) and step.remote is not None]
    if not wanted:
        return
    folders = m.folders
    assert folders is not None
    prefix = storage_key(m.remote.oaio_id, m.remote.client_stamp)  # once: rel is checked by parent_of
    items: list[tuple[_Step, Transfer]] = []
    for step in wanted:
        assert step.remote is not None
        try:
            temp = folders.temp_for(step.path)
        except LocalFsError as exc:
            fetched[step.path] = exc
            continue
        mtime = step.remote.mtime_ns or None
        basis = localfs.regular_file(m.root / step.path)  # what it replaces: a backend may reuse its blocks
        items.append((step, Transfer(f"{prefix}/{step.path}", temp, mtime, _is_exec(step.remote, step.row), basis)))
    items = _copy_local(m, items, fetched)
    assert m.backend is not None
    batches = transfer_batches(items, lambda item: item[0].remote.size if item[0].remote else 0)
    limit = min(TRANSFER_PIPELINE, m.backend.capabilities.max_connections)
    # several batches in flight (each fills its own paths of ``fetched``); all ended before this returns
    with contextlib.closing(in_flight(batches, lambda batch: _get_batch(m, batch, fetched), limit)) as got:
        for _batch in got:
            pass


def _copy_local(
    m: _Merge, items: list[tuple[_Step, Transfer]], fetched: dict[str, Fetched]
) -> list[tuple[_Step, Transfer]]:
    """Serve the items whose content a file here has (verified copies into their temp files, design §3); returns
    the others, to download."""
    wanted = [
        localcopy.Wanted(
            step.path, item.local_path, step.remote.sha256, step.remote.size, item.mtime_ns, item.executable
        )
        for step, item in items
        if step.remote is not None and isinstance(step.remote.sha256, str)
    ]
    if not wanted:
        return items
    roots = localcopy.source_roots(m.ctx.repo, m.row, m.ctx.settings.username)
    copied = localcopy.copy_from_local(m.ctx.repo, wanted, roots)
    if not copied:
        return items
    progress, rest = m.ctx.progress, []
    for step, item in items:
        got = copied.get(step.path)
        if got is None:
            rest.append((step, item))
        else:
            fetched[step.path] = _Fetched(item.local_path, got)
            progress.finish(False, got.size)  # off the download queue
    m.outcome.local_copies += len(copied)
    return rest


def _get_batch(m: _Merge, batch: list[tuple[_Step, Transfer]], fetched: dict[str, Fetched]) -> None:
    """One ``get_many`` call; each result verified against the manifest's sha256."""
    assert m.backend is not None
    progress = m.ctx.progress
    total = sum(max(0, step.remote.size) for step, _item in batch if step.remote is not None)
    progress.start(batch[0][0].path, total, len(batch))
    try:
        results = m.backend.get_many([item for _step, item in batch], progress=progress.advance)
    except BaseException as exc:
        for _step, item in batch:  # a failed call may have left some of its files
            localfs.discard(item.local_path)
        if not isinstance(exc, StorageError):
            raise
        results = [Transferred(item.key, error=exc) for _step, item in batch]
    finally:
        progress.finish(False, total, len(batch))
    for (step, item), got in zip(batch, results, strict=True):
        fetched[step.path] = _verified(step, item, got)


def _verified(step: _Step, item: Transfer, got: Transferred) -> Fetched:
    assert step.remote is not None
    if got.error is not None:
        return got.error
    want = step.remote.sha256
    if got.sha256 is None or (want is not UNKNOWN and got.sha256 != want):
        localfs.discard(item.local_path)
        shown = (got.sha256 or "none")[:12]
        return IntegrityError(f"{item.key}: downloaded sha256 {shown}… is not the manifest's {str(want)[:12]}…")
    return _Fetched(item.local_path, got)


def _fetch_and_decide(m: _Merge, step: _Step, fetched: _Fetched) -> None:
    """The manifest is stale: the download's hash decides."""
    assert step.remote is not None and fetched.got.sha256 is not None
    sha = fetched.got.sha256
    known = RemoteFile(sha, step.remote.size, step.remote.mtime_ns, _is_exec(step.remote, step.row))
    file = step.row
    local = file.sha256 if file is not None and file.present else None
    base = file.synced_sha256 if file is not None else None
    action = decide(base, local, known.sha256, has_base=bool(m.row.synced_stamp) or base is not None)
    step = _Step(file, step.path, known, action)
    if action in (Action.DOWNLOAD, Action.RESTORE):
        _install(m, step.path, fetched, known, file)
        m.outcome.downloads += 1
        return
    if action in (Action.CONFLICT, Action.CONFLICT_NO_BASE):
        _resolve_conflict(m, step, fetched)
        return
    localfs.discard(fetched.temp)
    if action is Action.NOTHING:
        m.rows.set_synced(step.path, _decided(known.sha256), known.executable)
    elif action is Action.PUSH:
        _report_kept(m.ctx, m.row, step.path, "")


def _decided(sha: str | _Unknown) -> str:
    """The remote hash of a step :func:`decide` acted on: known (an UNKNOWN one is fetched and decided again)."""
    if sha is UNKNOWN:
        raise EngineError("a remote file of unknown content was taken as synced")  # a bug
    return sha


def _is_exec(remote: RemoteFile, file: FileRow | None) -> bool:
    return remote.executable if remote.sha256 is not UNKNOWN else bool(file and file.executable)


def _note_trashed(m: _Merge, moved: list[Path], file: FileRow) -> None:
    """Index files a step put into the trash (as the row ``file`` described them): sources for later pulls."""
    for path in moved:
        try:
            st = localfs.current_stat(path)
        except LocalFsError:  # not a regular file after all: no source
            continue
        if st is not None and file.sha256:
            m.rows.trashed(str(path), file.sha256, st)


def _install(
    m: _Merge, rel: str, fetched: _Fetched, want: RemoteFile, file: FileRow | None, *, synced: bool = True
) -> None:
    """Rename a verified download into place (its mtime and mode were set as it was written); its index row takes
    the stat ``get_many`` returned (a rename keeps size, mtime and inode). A download into a staged folder is in
    place already (the folder was published whole), unless that folder could not be placed."""
    assert fetched.got.sha256 is not None
    folders = m.folders
    staged = folders.staged_in(rel) if folders is not None else None
    if staged is None:
        try:
            trashed: list[Path] = []
            m.installed.append(localfs.install_fetched(m.root, rel, fetched.temp, _stat_of(file), trashed))
            if trashed and file is not None:
                _note_trashed(m, trashed, file)
        except LocalChanged:
            if not synced or _stat_of(file) is not None or not localfs.is_folder(m.root / rel):
                raise
            if not _removed_empty_folder(m.root / rel):
                _install_beside_folder(m, rel, fetched, want, file)
                return
            m.installed.append(localfs.install_fetched(m.root, rel, fetched.temp, None))
    elif folders is not None and staged in folders.dropped:
        raise LocalChanged(f"the folder of {m.root / rel} appeared while it was downloaded; merging it next cycle")
    m.rows.write(rel, fetched.stat, fetched.got.sha256, _is_exec(want, file), synced=synced)


def _resolve_conflict(m: _Merge, step: _Step, fetched: _Fetched) -> None:
    """Keep both sides: design §5's conflicted copy (or, without a base, the remote side as the copy)."""
    file, rel, remote = step.row, step.path, m.remote
    assert file is not None and step.remote is not None
    if step.action is Action.CONFLICT:
        copy = _local_to_copy(m, file, rel)
        _install(m, rel, fetched, step.remote, None)
    else:
        copy = _free_conflict_name(m, rel, remote.device_id or "server")
        _install(m, copy, fetched, step.remote, None, synced=False)  # not in the base: pushed as a new file
        m.rows.set_synced(rel, _decided(step.remote.sha256), step.remote.executable)
    _record_copy(m, rel, copy, f"changed here and on {remote.device_id or 'the server'}")


def _move_aside(m: _Merge, step: _Step) -> None:
    """The local file at ``step.path`` is a folder in the server's version: rename it to a conflicted copy (this
    device's), a new file for the next commit, so the folder can take the name."""
    assert step.row is not None
    copy = _local_to_copy(m, step.row, step.path)
    _record_copy(m, step.path, copy, f"a file here, a folder on {m.remote.device_id or 'the server'}")


def _local_to_copy(m: _Merge, file: FileRow, rel: str) -> str:
    """Rename the local file at ``rel``, still as indexed, to a free conflicted-copy name of this device; the copy
    is a new file for the next commit and ``rel``'s row goes. Returns the copy's path."""
    root = m.root
    if not localfs.still_as_indexed(root / rel, _stat_of(file)):
        raise LocalChanged(f"{root / rel} changed since it was indexed")
    copy = _free_conflict_name(m, rel, m.ctx.settings.device_id)
    localfs.rename_within(root, rel, copy)
    st = localfs.current_stat(root / copy)
    assert st is not None
    m.installed.append(str(root / copy))
    m.rows.write(copy, st, file.sha256 or "", file.executable, synced=False)
    m.rows.delete(rel)
    return copy


def _removed_empty_folder(path: Path) -> bool:
    """An empty folder where the server has a file holds nothing to lose: it gives the file its name (design §5)."""
    try:
        path.rmdir()
    except OSError:
        return False
    return True


def _install_beside_folder(m: _Merge, rel: str, fetched: _Fetched, want: RemoteFile, file: FileRow | None) -> None:
    """The server's file at ``rel`` is a folder here: install it as a conflicted copy (a new file for the next
    commit) and record ``rel`` as deleted here, so the commit leaves the name to the folder on every device."""
    assert fetched.got.sha256 is not None
    copy = _free_conflict_name(m, rel, m.remote.device_id or "server")
    _install(m, copy, fetched, want, None, synced=False)
    m.rows.absent(rel, fetched.got.sha256, _is_exec(want, file))
    _record_copy(m, rel, copy, f"a folder here, a file on {m.remote.device_id or 'the server'}")


def _record_copy(m: _Merge, rel: str, copy: str, detail: str) -> None:
    """A conflicted copy was made of ``rel``: listed by ``ctl conflicts``, in the history and the log; the object
    has a new local file to commit."""
    oaio_id = m.row.oaio_id
    m.ctx.repo.add_conflict(oaio_id, "file", rel, copy, detail)
    m.ctx.repo.add_history(oaio_id, history.CONFLICT, rel, f"conflicted copy: {copy}", m.remote.device_id or "")
    log.warning("%s: %s: %s; kept both (copy: %s)", oaio_id, rel, detail, copy)
    m.outcome.conflicts.append(copy)
    _mark_dirty(m.ctx, oaio_id)


def _free_conflict_name(m: _Merge, rel: str, device: str) -> str:
    """A conflicted-copy name for ``rel`` that nothing here (file, folder, link) and nothing in the server's version
    has: numbered until free."""
    root, when = m.root, _dt.datetime.now()
    number = 1
    candidate = conflict_name(rel, device, when)
    while candidate in m.remote_names or (root / candidate).exists() or (root / candidate).is_symlink():
        number += 1
        candidate = conflict_name(rel, device, when, number)
    localfs.check_path(candidate)  # made of a checked path and a device id: checked again before it names a file
    return candidate


def _report_kept(ctx: EngineContext, row: ObjectRow, rel: str, note: str) -> None:
    """A local change the server does not have: pushed, or (read-only) kept and reported once."""
    if right_grants(row.csh_access_right, "U"):
        _mark_dirty(ctx, row.oaio_id)
        if note:
            ctx.repo.add_history(row.oaio_id, "keep", rel, note)
    elif not ctx.repo.has_conflict(row.oaio_id, "readonly", rel):
        ctx.repo.add_conflict(row.oaio_id, "readonly", rel, detail="changed here, but the object is read-only")


def _finish(
    ctx: EngineContext, row: ObjectRow, remote: OaiObject, outcome: PullOutcome, base: dict[str, str | None]
) -> None:
    """Make the merged version the base (when the merge is complete: its per-file changes go to the history, against
    ``base``, the previous base's hashes), or leave the object for the next pull."""
    fresh = ctx.repo.get_object(row.oaio_id)
    if fresh is not None:
        row.local_dirty = fresh.local_dirty
    if outcome.complete:
        new = history.manifest_hashes(remote.client_values, remote.client_stamp)
        new = history.filled_from_index(ctx.repo, row.oaio_id, new)  # after the merge: what it downloaded, hashed
        history.record_version(ctx.repo, row.oaio_id, base, new, remote.device_id or "")
        if row.local_values is not None:
            row.local_values = _merge_local_values(ctx, row, row.local_values, remote)
        row.synced_stamp, row.synced_values = remote.client_stamp, remote.client_values
        row.remote_dirty = False
        if row.status == STATUS_HELD:
            row.status, row.hold_reason = STATUS_ACTIVE, ""
        row.delete_confirmed = False
        ctx.repo.clear_errors_of(row.oaio_id)
        if outcome.downloads or outcome.trashed:
            local = f" ({outcome.local_copies} copied from files here)" if outcome.local_copies else ""
            done = f"{outcome.downloads} downloaded{local}, {outcome.trashed} to the trash"
            detail = f"version {remote.client_stamp}: {done}"
            ctx.repo.add_history(row.oaio_id, "pull", detail=detail)
    else:
        row.remote_dirty = True
    ctx.repo.save_object(row)


# -- helpers ------------------------------------------------------------------------------------------------------


def _stat_of(file: FileRow | None) -> FileStat | None:
    if file is None or not file.present:
        return None
    return FileStat(file.size, file.mtime_ns, file.inode)


def _mark_dirty(ctx: EngineContext, oaio_id: str) -> None:
    ctx.repo.update_object(oaio_id, local_dirty=True)
