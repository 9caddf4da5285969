"""The engine's operations besides the cycle: journal recovery, adding and removing folders, values, restore,
status and garbage collection. ``SyncEngine`` holds its lock around each."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from oaiod.engine import localfs
from oaiod.engine.context import EngineContext, EngineError
from oaiod.engine.manifest import MANIFEST_KEY, build_manifest, remote_files
from oaiod.engine.plan import UNKNOWN
from oaiod.errors import ValidationError
from oaiod.http import NotFound
from oaiod.model import FILES_VALUES_KEY, NAME_VALUES_KEY, ROOT_VALUES_KEY, now_stamp, object_id, storage_key
from oaiod.placeholders import _resolved, is_inside
from oaiod.scanner import file_sha256
from oaiod.state.models import (
    KIND_DATA,
    KIND_FOLDER,
    KIND_ROOT,
    STATUS_ACTIVE,
    STATUS_HELD,
    STATUS_NEW,
    STATUS_REMOVED,
    ObjectRow,
)
from oaiod.storage.errors import StorageError

if TYPE_CHECKING:
    from oaiod.engine.cycle import SyncEngine

log = logging.getLogger("oaiod.engine")


def recover_journal(ctx: EngineContext) -> None:
    """Finish or undo commits interrupted by a crash (design §4): a commit the server has is left to the next pull
    (all its files are already here, so the merge only records them); a partial one has its prefix deleted."""
    for entry in ctx.repo.journal():
        row = ctx.repo.get_object(entry.oaio_id)
        committed = False
        try:
            listing = ctx.api.stampz(None).objects
            server = next((obj for obj in listing if obj.oaio_id == entry.oaio_id), None)
            committed = server is not None and server.client_stamp == entry.stamp
            if not committed:
                csh_id = entry.data.get("csh_id") or (row.csh_id if row else None)
                if csh_id:
                    ctx.backend(csh_id).delete_prefix(storage_key(entry.oaio_id, entry.stamp))
        except (StorageError, ValidationError) as exc:
            log.warning("%s: cannot clean up interrupted commit %s yet (%s)", entry.oaio_id, entry.stamp, exc)
            continue
        if row is not None:
            ctx.repo.update_object(entry.oaio_id, local_dirty=True)
        ctx.repo.journal_remove(entry.id)
        what = "was committed; merging it" if committed else "was not committed; committing again"
        log.info("%s: interrupted commit %s %s", entry.oaio_id, entry.stamp, what)
        ctx.repo.add_history(entry.oaio_id, "recover", detail=f"commit {entry.stamp} {what}")


def forget_object(ctx: EngineContext, oaio_id: str, why: str) -> None:
    """Stop syncing an object the server no longer gives us; its local files stay where they are."""
    row = ctx.repo.get_object(oaio_id)
    if row is None or row.status == STATUS_REMOVED:
        return
    log.info("%s: %s; its files stay at %s", oaio_id, why, row.local_root or "-")
    ctx.repo.delete_object(oaio_id)
    ctx.repo.add_history(oaio_id, "removed", detail=why)


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
    ctx.repo.add_history(oaio_id, "add", str(local))
    return oaio_id


def remove(ctx: EngineContext, oaio_id: str) -> None:
    """Stop syncing an object everywhere: deleted on the server when we created it, else our subscription ends.
    Local files stay. The client root cannot be removed."""
    row = ctx.repo.get_object(oaio_id)
    if row is None:
        raise ValidationError("oaio_id", f"{oaio_id} is not synced here")
    if row.kind == KIND_ROOT:
        raise ValidationError("oaio_id", "the client root cannot be removed")
    if row.status != STATUS_NEW:
        try:
            if row.csh_access_right in ("C", "D"):
                ctx.api.delete(oaio_id)
            else:
                ctx.api.unsubscribe(oaio_id, ctx.settings.username)
        except NotFound:
            pass
    forget_object(ctx, oaio_id, "removed with `ctl remove`")


def set_values(ctx: EngineContext, oaio_id: str, values: dict[str, Any]) -> None:
    row = ctx.repo.get_object(oaio_id)
    if row is None:
        raise ValidationError("oaio_id", f"{oaio_id} is not synced here")
    reserved = {NAME_VALUES_KEY, ROOT_VALUES_KEY, FILES_VALUES_KEY, MANIFEST_KEY} & values.keys()
    if reserved and row.kind != KIND_DATA:
        raise ValidationError("values", f"{', '.join(sorted(reserved))} are managed by oaiod")
    local = dict(row.local_values if row.local_values is not None else row.synced_values or row.client_values)
    local.update(values)
    ctx.repo.update_object(oaio_id, local_values=local, local_dirty=True)


def restore(ctx: EngineContext, oaio_id: str, stamp: str, to: Path | None) -> list[str]:
    """Download version ``stamp`` of an object into ``to`` (a folder of the user's choice) or over the live files
    (replaced files go to the trash; the restored state is then pushed as a new version). Returns the paths."""
    row = ctx.repo.get_object(oaio_id)
    if row is None or not row.local_root:
        raise ValidationError("oaio_id", f"{oaio_id} is not a synced folder here")
    version = next((v for v in ctx.api.versions(oaio_id) if v.stamp == stamp), None)
    if version is None:
        raise ValidationError("stamp", f"the server keeps no version {stamp} of {oaio_id}")
    backend = ctx.backend(version.csh_id or row.csh_id)
    root = Path(to) if to is not None else Path(row.local_root)
    restored: list[str] = []
    for rel, want in remote_files(version.values, stamp).items():
        target = localfs.make_parents(root, rel)
        temp = localfs.temp_beside(target)
        backend.get_file(storage_key(oaio_id, stamp, rel), temp)
        if want.sha256 is not UNKNOWN and file_sha256(temp) != want.sha256:
            temp.unlink(missing_ok=True)
            raise EngineError(f"{oaio_id}/{stamp}/{rel}: the stored file does not match its manifest")
        localfs.set_meta(temp, want.mtime_ns or None, want.executable)
        expected = localfs.current_stat(target)
        localfs.install(root, rel, temp, expected)
        restored.append(rel)
    ctx.repo.add_history(oaio_id, "restore", str(root), f"version {stamp}: {len(restored)} files")
    return restored


def gc(ctx: EngineContext) -> dict[str, int]:
    """Delete version prefixes on storage beyond the newest ``keep_versions`` (never the two the server names,
    never one in flight) of objects we may delete from, and trash older than ``trash_days``."""
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
    return {"versions": removed_versions, "trash_days": purged_trash}


def status(engine: SyncEngine) -> dict[str, Any]:
    """What ``ctl status`` shows; cheap enough to call from another thread while a cycle runs."""
    repo = engine.repo
    held = [{"oaio_id": row.oaio_id, "reason": row.hold_reason} for row in repo.objects(STATUS_HELD, values=False)]
    report = engine.last_report
    return {
        "state": engine.state,
        "last_sync": engine.last_sync,
        "objects": len(repo.objects(STATUS_ACTIVE, STATUS_NEW, STATUS_HELD, values=False)),
        "held": held,
        "conflicts": len(repo.conflicts()),
        "errors": [row_dict(row) for row in repo.errors()],
        "symlinks_skipped": sorted(engine.symlinks)[:100],
        "last_cycle": None if report is None else {k: v for k, v in vars(report).items()},
        **engine.progress.as_dict(),
    }


def row_dict(row: Any) -> dict[str, Any]:
    """A table row as plain JSON-able data (for ctl)."""
    return {column.key: getattr(row, column.key) for column in row.__table__.columns}


def version_dict(version: Any) -> dict[str, Any]:
    files = version.values.get(FILES_VALUES_KEY) or []
    return {
        "stamp": version.stamp,
        "device_id": version.device_id,
        "username": version.username,
        "files": len(files),
        "created": version.created,
    }


def new_folder_object(ctx: EngineContext, local: Path, kind: str, name: str | None = None) -> str:
    """Record a new, empty folder object for ``local`` (registered by the next push); its oaio id.

    ``kind`` is ``KIND_ROOT`` (the client root, found on other devices by its ``_name``) or ``KIND_FOLDER``.
    """
    settings = ctx.settings
    stamp = now_stamp()
    values: dict[str, Any] = {NAME_VALUES_KEY: name} if name else {}
    values[ROOT_VALUES_KEY] = ctx.mapper.to_placeholder(local)
    values[FILES_VALUES_KEY] = []
    values[MANIFEST_KEY] = build_manifest(kind, stamp, {})
    oaio_id = object_id(settings.username, settings.device_id, settings.app_id, stamp, values)
    ctx.repo.save_object(
        ObjectRow(
            oaio_id=oaio_id,
            kind=kind,
            local_root=str(local),
            status=STATUS_NEW,
            client_values=values,
            synced_values={},
            csh_id=settings.csh_id,
            csh_access_right="C",
            local_dirty=True,
        )
    )
    return oaio_id
