"""The engine's operations besides the cycle: adding and removing folders, restore, garbage collection, folders
excluded from the folder around them, new folder objects (the client root's life cycle is :mod:`oaiod.engine.roots`,
apps' objects and values :mod:`oaiod.engine.apps`). ``SyncEngine`` holds its lock around each."""

from __future__ import annotations

import datetime as _dt
import logging
import stat as _stat
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from oaiod.engine import history, localfs
from oaiod.engine.context import EngineContext, IntegrityError, Progress, fetch_one, transfer_batches
from oaiod.engine.manifest import MANIFEST_KEY, build_manifest, remote_files
from oaiod.engine.placeholders import _resolved, is_inside
from oaiod.engine.plan import UNKNOWN
from oaiod.errors import OaiodError, ValidationError
from oaiod.model import (
    FILES_VALUES_KEY,
    NAME_VALUES_KEY,
    ROOT_VALUES_KEY,
    STAMP_FORMAT,
    now_stamp,
    object_id,
    storage_key,
)
from oaiod.server_api import NotFound
from oaiod.state.models import (
    KIND_FOLDER,
    KIND_ROOT,
    STATUS_ACTIVE,
    STATUS_HELD,
    STATUS_NEW,
    STATUS_REMOVED,
    FileRow,
    ObjectRow,
)
from oaiod.state.repo import FileStat
from oaiod.storage.base import Transfer
from oaiod.storage.errors import StorageError

log = logging.getLogger("oaiod.engine")


def forget_object(ctx: EngineContext, oaio_id: str, why: str) -> None:
    """Stop syncing an object the server no longer gives us; its local files stay where they are.

    A folder inside another synced folder is excluded from that one on this device (design §1): its files are not
    the outer object's, and taking them in would upload them there (another user's files into your own root)."""
    row = ctx.repo.get_object(oaio_id)
    if row is None or row.status == STATUS_REMOVED:
        return
    log.info("%s: %s; its files stay at %s", oaio_id, why, row.local_root or "-")
    outer = _outer_folder(ctx, row)
    if outer is not None:
        ctx.repo.exclude_folder(str(row.local_root), oaio_id, why)
        log.info("%s stays on disk but is not synced with %s (excluded) until `oaiod ctl add`", row.local_root, outer)
    ctx.repo.delete_object(oaio_id)
    ctx.repo.add_history(oaio_id, "removed", str(row.local_root or ""), why)


def _outer_folder(ctx: EngineContext, row: ObjectRow) -> str | None:
    """The folder of another synced folder object (client root, added folder) that contains ``row``'s folder."""
    if not row.local_root:
        return None
    mine = _resolved(Path(row.local_root))
    for other in ctx.repo.objects(STATUS_ACTIVE, STATUS_NEW, STATUS_HELD, values=False):
        if other.oaio_id == row.oaio_id or other.kind not in (KIND_ROOT, KIND_FOLDER) or not other.local_root:
            continue
        outer = _resolved(Path(other.local_root))
        if outer != mine and is_inside(mine, outer):
            return str(outer)
    return None


def live_exclusions(ctx: EngineContext) -> list[Path]:
    """The excluded folders that still exist; an exclusion whose folder was deleted or moved away ends (design §1:
    a folder that appears at that path later, or the moved folder at its new place, syncs like any other)."""
    live = []
    for excluded in ctx.repo.excluded_folders():
        path = Path(excluded.path)
        try:
            is_folder = _stat.S_ISDIR(path.lstat().st_mode)
        except FileNotFoundError:
            is_folder = False
        except OSError:
            is_folder = True  # cannot tell: keep it excluded
        if is_folder:
            live.append(path)
            continue
        ctx.repo.include_folder(excluded.path)
        log.info("excluded folder %s was deleted or moved away; no longer excluded", path)
        ctx.repo.add_history(excluded.oaio_id, "include", excluded.path, "the excluded folder is gone")
    return live


def add_folder(ctx: EngineContext, path: Path) -> str:
    """Register ``path`` as a folder object at the next cycle; returns its id."""
    local = _resolved(path)
    if not local.is_dir():
        raise ValidationError("path", f"{path} is not a folder")
    if is_inside(local, ctx.mapper.state_dir) or is_inside(ctx.mapper.state_dir, local):
        raise ValidationError("path", f"{path} holds or is inside oaiod's state folder")
    for row in ctx.repo.objects(STATUS_ACTIVE, STATUS_NEW, STATUS_HELD):
        if row.local_root and _resolved(Path(row.local_root)) == local:
            return row.oaio_id
    oaio_id = new_folder_object(ctx, local, KIND_FOLDER)
    for excluded in ctx.repo.excluded_folders():
        if _resolved(Path(excluded.path)) == local:
            ctx.repo.include_folder(excluded.path)  # its own object now: no longer excluded
    ctx.repo.add_history(oaio_id, "add", str(local))
    return oaio_id


def remove(ctx: EngineContext, oaio_id: str) -> None:
    """Stop syncing an object on this device only (``ctl remove``): nothing changes on the server or on the other
    devices, the local files stay. The row stays with status ``removed``, so the server's listing does not bring
    the object back; ``ctl add`` of its folder syncs it again (:func:`resume_removed`). A folder inside another
    synced folder is excluded from that one (as in :func:`forget_object`). The client root cannot be removed."""
    row = _removable(ctx, oaio_id)
    log.info("%s: no longer synced on this device (ctl remove); its files stay at %s", oaio_id, row.local_root or "-")
    outer = _outer_folder(ctx, row)
    if outer is not None:
        ctx.repo.exclude_folder(str(row.local_root), oaio_id, "removed here with `ctl remove`")
    if row.status == STATUS_NEW:  # never reached the server: nothing to keep apart from
        ctx.repo.delete_object(oaio_id)
    else:
        ctx.repo.forget_files(oaio_id)
        why = f"not synced here (ctl remove); `oaiod ctl add {row.local_root}` syncs it again"[:500]
        ctx.repo.update_object(oaio_id, status=STATUS_REMOVED, hold_reason=why if row.local_root else "ctl remove")
    ctx.repo.add_history(oaio_id, "removed", str(row.local_root or ""), "stopped syncing on this device")


def delete(ctx: EngineContext, oaio_id: str) -> str:
    """Delete an object for everybody (``ctl delete``, confirmed by the user): with the right to delete (``D`` or
    ``C``) it is deleted on the server — the other devices stop syncing it, their files stay; with a weaker right
    our subscription ends instead (the object stays for the others). Local files stay. Returns what was done."""
    row = _removable(ctx, oaio_id)
    done = "deleted on the server"
    if row.status != STATUS_NEW:
        try:
            if row.csh_access_right in ("C", "D"):
                ctx.api.delete(oaio_id)
            else:
                ctx.api.unsubscribe(oaio_id, ctx.settings.username)
                done = "left the share (deleting needs the right D); it stays for the others"
        except NotFound:
            done = "already gone from the server"
    forget_object(ctx, oaio_id, f"{done} with `ctl delete`")
    return done


def _removable(ctx: EngineContext, oaio_id: str) -> ObjectRow:
    row = ctx.repo.get_object(oaio_id)
    if row is None or row.status == STATUS_REMOVED:
        raise ValidationError("oaio_id", f"{oaio_id} is not synced here")
    if row.kind == KIND_ROOT:
        raise ValidationError("oaio_id", "the client root cannot be removed or deleted")
    return row


def resume_removed(ctx: EngineContext, path: Path) -> str | None:
    """The id of the object ``ctl remove`` stopped syncing at ``path``, synced again from now (no base: local and
    server files are merged as on a first sync, nothing is lost); None when there is none."""
    local = _resolved(path)
    for row in ctx.repo.objects(STATUS_REMOVED, values=False):
        if row.local_root and _resolved(Path(row.local_root)) == local:
            ctx.repo.update_object(row.oaio_id, status=STATUS_ACTIVE, hold_reason="", synced_stamp="", local_dirty=True)
            for excluded in ctx.repo.excluded_folders():
                if _resolved(Path(excluded.path)) == local:
                    ctx.repo.include_folder(excluded.path)
            ctx.repo.add_history(row.oaio_id, "add", str(local), "synced again after `ctl remove`")
            return row.oaio_id
    return None


def restore(ctx: EngineContext, oaio_id: str, stamp: str, to: Path | None, under: str = "") -> list[str]:
    """Download version ``stamp`` of an object — or only its file or folder ``under`` — into ``to`` (a folder of the
    user's choice, paths relative to the object's folder) or over the live files (replaced files go to the trash;
    the restored state is then pushed as a new version; a file that is as the version has it is not moved).
    Returns the paths.

    Files come with ``get_many`` in bounded batches into temp files beside their targets, are verified, made
    durable with one sync per batch and then renamed into place (a file changed meanwhile is not replaced)."""
    row = ctx.repo.get_object(oaio_id)
    if row is None or not row.local_root:
        raise ValidationError("oaio_id", f"{oaio_id} is not a synced folder here")
    version = next((v for v in ctx.api.versions(oaio_id) if v.stamp == stamp), None)
    if version is None:
        raise ValidationError("stamp", f"the server keeps no version {stamp} of {oaio_id}")
    backend = ctx.backend(version.csh_id or row.csh_id)
    root = Path(to) if to is not None else Path(row.local_root)
    folders, prefix = localfs.BatchFolders(root), storage_key(oaio_id, stamp)
    chosen = {
        rel: want
        for rel, want in remote_files(version.values, stamp).items()
        if not under or rel == under or rel.startswith(under + "/")
    }
    if under and not chosen:
        raise ValidationError("path", f"version {stamp} of {oaio_id} holds no {under}")
    if to is None:  # in place: only what differs
        chosen = {rel: want for rel, want in chosen.items() if not _as_version(ctx, oaio_id, root, rel, want)}
    wanted = [
        (rel, want, Transfer(f"{prefix}/{rel}", folders.temp_for(rel), want.mtime_ns or None,
                             want.executable))
        for rel, want in chosen.items()
    ]  # fmt: skip
    restored: list[str] = []
    progress = ctx.progress  # ctl restore --wait and ctl activity show it, as a pull's
    progress.queued_downloads, progress.queued_download_bytes = len(wanted), sum(max(0, w.size) for _r, w, _t in wanted)
    try:
        for batch in transfer_batches(wanted, lambda entry: entry[1].size):
            _restore_batch(root, backend, batch, restored, progress)
    finally:
        folders.close()
        progress.queued_downloads = progress.queued_download_bytes = 0
    ctx.repo.add_history(oaio_id, "restore", str(root), f"version {stamp}: {len(restored)} files")
    return restored


def _as_version(ctx: EngineContext, oaio_id: str, root: Path, rel: str, want: Any) -> bool:
    """True when the local file ``rel`` holds the version's content (as indexed, and unchanged since)."""
    file = ctx.repo.get_file(oaio_id, rel)
    if file is None or not file.present or file.sha256 != want.sha256 or want.sha256 is UNKNOWN:
        return False
    return file.executable == want.executable and localfs.still_as_indexed(
        root / rel, FileStat(file.size, file.mtime_ns, file.inode)
    )


def _restore_batch(
    root: Path, backend: Any, batch: list[tuple[str, Any, Transfer]], restored: list[str], progress: Progress
) -> None:
    """One ``get_many`` of a restore; the first failed or corrupt file stops it (its temp files removed)."""
    total = sum(max(0, want.size) for _rel, want, _item in batch)
    progress.start(batch[0][0], total, len(batch))
    try:
        results = backend.get_many([item for _rel, _want, item in batch], progress=progress.advance)
        for (_rel, want, item), got in zip(batch, results, strict=True):
            if got.error is not None:
                raise got.error
            if want.sha256 is not UNKNOWN and got.sha256 != want.sha256:
                raise IntegrityError(f"{item.key}: the stored file does not match its manifest")
        localfs.make_durable(root, [item.local_path for _rel, _want, item in batch])
        for rel, _want, item in batch:
            localfs.install_fetched(root, rel, item.local_path, localfs.current_stat(root / rel))
            restored.append(rel)
    finally:
        progress.finish(False, total, len(batch))
        for _rel, _want, item in batch:  # installed ones are gone already
            localfs.discard(item.local_path)


def gc(ctx: EngineContext) -> dict[str, int]:
    """Delete version prefixes on storage beyond the newest ``keep_versions`` (never the two the server names,
    never one in flight) of objects we may delete from, trash older than ``trash_days``, and all but the newest
    :data:`~oaiod.engine.history.KEEP_ROWS` history rows."""
    removed_versions = purged_trash = 0
    in_flight = {(entry.oaio_id, entry.stamp) for entry in ctx.repo.journal()}
    for row in ctx.repo.objects(STATUS_ACTIVE, STATUS_HELD):
        if row.local_root:
            purged_trash += localfs.purge_trash(Path(row.local_root), int(ctx.settings.trash_days))
        if row.csh_access_right not in ("C", "D") or not row.csh_id or not row.client_stamp:
            continue
        try:
            backend = ctx.backend(row.csh_id)
            stamps = {info.key.split("/")[1] for info in backend.list(row.oaio_id) if info.key.count("/") >= 2}
            keep = set(sorted(stamps, reverse=True)[: max(1, ctx.settings.keep_versions)])
            keep |= {row.client_stamp, row.server_stamp, row.synced_stamp}
            for stamp in sorted(stamps - keep):
                if (row.oaio_id, stamp) not in in_flight and stamp < row.client_stamp:
                    backend.delete_prefix(storage_key(row.oaio_id, stamp))
                    removed_versions += 1
        except (StorageError, ValidationError) as exc:
            log.warning("%s: garbage collection failed (%s); trying again later", row.oaio_id, exc)
    oldest_kept = _dt.datetime.now(_dt.UTC) - _dt.timedelta(days=int(ctx.settings.trash_days) + 1)
    ctx.repo.forget_trash(before=oldest_kept.strftime(STAMP_FORMAT))  # rows of purged trash days: sources no more
    pruned = ctx.repo.prune_history(history.KEEP_ROWS)
    return {"versions": removed_versions, "trash_days": purged_trash, "history_rows": pruned}


def new_folder_object(ctx: EngineContext, local: Path, kind: str, name: str | None = None) -> str:
    """Record a new, empty folder object for ``local`` (registered by the next push); its oaio id.

    ``kind`` is ``KIND_ROOT`` (the client root, found on other devices by its ``_name``) or ``KIND_FOLDER``.
    """
    row = ctx.repo.save_object(new_folder_row(ctx, local, kind, name))
    return row.oaio_id


def new_folder_row(ctx: EngineContext, local: Path, kind: str, name: str | None) -> ObjectRow:
    """The row of a new, empty folder object for ``local``, not saved yet (see :func:`new_folder_object`)."""
    settings = ctx.settings
    stamp = now_stamp()
    values: dict[str, Any] = {NAME_VALUES_KEY: name} if name else {}
    values[ROOT_VALUES_KEY] = ctx.mapper.to_placeholder(local)
    values[FILES_VALUES_KEY] = []
    values[MANIFEST_KEY] = build_manifest(kind, stamp, {})
    oaio_id = object_id(settings.username, settings.device_id, settings.app_id, stamp, values)
    return unregistered_row(ctx, oaio_id, kind, local, values)


def unregistered_row(
    ctx: EngineContext, oaio_id: str, kind: str, local: Path | None, values: dict[str, Any]
) -> ObjectRow:
    """The row of an object made on this device and not registered yet: its creator holds ``C``, its values are
    a local change the next push registers."""
    return ObjectRow(
        oaio_id=oaio_id,
        kind=kind,
        local_root=str(local) if local is not None else None,
        status=STATUS_NEW,
        client_values=values,
        synced_values={},
        csh_id=ctx.settings.csh_id,
        csh_access_right="C",
        local_dirty=True,
    )


# -- files no longer ignored ---------------------------------------------------------------------------------------


def restore_unignored(ctx: EngineContext, oaio_id: str, paths: list[str]) -> list[str]:
    """Download the synced version of files that are no longer ignored but were deleted while they were (design §6:
    an un-ignore never deletes on the server). Returns the paths to try again."""
    row = ctx.repo.get_object(oaio_id)
    if row is None or not row.local_root or not row.synced_stamp:
        return []
    root, failed = Path(row.local_root), []
    rules = ctx.ignore_rules(root)
    for rel in paths:
        file = ctx.repo.get_file(oaio_id, rel)
        if file is None or not file.ignored or file.synced_sha256 is None or rules.covers(rel):
            continue
        try:
            st = _fetch_synced(ctx, row, file, root)
        except (StorageError, OaiodError) as exc:
            log.warning("%s: cannot restore %s, no longer ignored (%s); trying again", oaio_id, rel, exc)
            failed.append(rel)
            continue
        with ctx.repo.session() as s:
            s.execute(
                sa.update(FileRow)
                .where(FileRow.oaio_id == oaio_id, FileRow.path == rel)
                .values(present=True, size=st.size, mtime_ns=st.mtime_ns, inode=st.inode, ignored=False)
                .values(sha256=FileRow.synced_sha256, executable=FileRow.synced_executable)
            )
        log.info("%s: %s is no longer ignored; restored the synced version deleted meanwhile", oaio_id, rel)
        ctx.repo.add_history(oaio_id, "restore", rel, "no longer ignored; restored the synced version")
    return failed


def _fetch_synced(ctx: EngineContext, row: ObjectRow, file: FileRow, root: Path) -> FileStat:
    target = localfs.make_parents(root, file.path)
    temp = localfs.temp_beside(target)
    key = storage_key(row.oaio_id, row.synced_stamp, file.path)
    got = fetch_one(ctx.backend(row.csh_id), key, temp, file.mtime_ns or None, file.synced_executable)
    if got.sha256 != file.synced_sha256:
        temp.unlink(missing_ok=True)
        raise IntegrityError(f"{row.oaio_id}/{row.synced_stamp}/{file.path}: the stored file does not match")
    return localfs.install(root, file.path, temp, None)
