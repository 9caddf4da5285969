"""Folder types (Syncthing's, issue 14 §4): the one place that decides what a folder's mode lets a cycle do.

- ``send-receive`` (the default): the three-way merge of design §5, both ways.
- ``send-only``: this device's changes are pushed; the server's are not applied here. The pull only records the
  server's object (``remote_dirty`` while its version differs from the base), and the push commits on top of the
  server's version with each path the server changed kept exactly as the server has it (a :class:`Carry`), so
  nothing of the server's is overwritten until ``ctl override``, which commits every path as it is here (what it
  replaces stays in the server's versions).
- ``receive-only``: the server's changes are merged as usual (a file changed on both sides keeps the local one as a
  conflicted copy); local changes are never pushed, and ``ctl revert`` puts the synced version back (the local
  changes go to the trash first).
"""

from __future__ import annotations

from pathlib import Path

from oaiod.engine import localfs
from oaiod.engine.context import EngineContext
from oaiod.engine.manifest import remote_files
from oaiod.engine.plan import UNKNOWN
from oaiod.engine.push import Carry
from oaiod.errors import ValidationError
from oaiod.model import OaiObject, now_stamp
from oaiod.state.models import MODE_RECEIVE_ONLY, MODE_SEND_ONLY, MODES, ObjectRow

#: journal op: the next push of this send-only folder replaces the server's changes (``ctl override``). A journal
#: row, not memory, so a restart between the command and the push does not drop what the user asked for.
OVERRIDE = "override"


def check_mode(mode: str) -> str:
    """``mode`` when it is a folder type; :class:`ValidationError` naming the choices otherwise."""
    if mode not in MODES:
        raise ValidationError("mode", f"must be one of {', '.join(MODES)}, got {mode!r}")
    return mode


def may_push(row: ObjectRow) -> bool:
    """A receive-only folder never pushes (its local changes stay here, listed as not sent)."""
    return row.mode != MODE_RECEIVE_ONLY


def keeps_server_changes_out(row: ObjectRow) -> bool:
    """A send-only folder applies nothing of the server's here — once it has a base (its first sync merges)."""
    return row.mode == MODE_SEND_ONLY and bool(row.local_root) and bool(row.synced_stamp)


def record_server_version(ctx: EngineContext, row: ObjectRow, remote: OaiObject) -> None:
    """The pull of a send-only folder: the server's object is remembered (the base of the next push), no file of
    the folder is touched; ``remote_dirty`` says the server has changes not applied here."""
    fresh = ctx.repo.get_object(row.oaio_id) or row  # the index may have marked it dirty since ``row`` was read
    for target in (row, fresh):
        ctx.repo.apply_server_object(target, remote)
    row.remote_dirty = fresh.remote_dirty = bool(server_changes(ctx, fresh))
    row.local_dirty = fresh.local_dirty
    ctx.repo.save_object(fresh)


def server_changes(ctx: EngineContext, row: ObjectRow) -> set[str]:
    """Paths whose content in the server's version (as last listed) differs from the version synced here."""
    remote = remote_files(row.client_values, row.client_stamp)
    base = {f.path: f.synced_sha256 for f in ctx.repo.iter_files(row.oaio_id) if f.synced_sha256 is not None}
    changed = {path for path, want in remote.items() if want.sha256 is UNKNOWN or want.sha256 != base.get(path)}
    return changed | (set(base) - set(remote))


def local_changes(ctx: EngineContext, row: ObjectRow) -> list[str]:
    """Paths changed here since the synced version (added, edited or deleted), as last indexed."""
    return [
        f.path
        for f in ctx.repo.iter_files(row.oaio_id)
        if not f.ignored and (f.sha256 if f.present else None) != f.synced_sha256
    ]


def override_pending(ctx: EngineContext, oaio_id: str) -> bool:
    """True when ``ctl override`` asked for this folder and no push has committed since."""
    return any(entry.op == OVERRIDE and entry.oaio_id == oaio_id for entry in ctx.repo.journal())


def request_override(ctx: EngineContext, oaio_id: str) -> None:
    """Remember ``ctl override`` until a push commits (idempotent)."""
    if not override_pending(ctx, oaio_id):
        ctx.repo.journal_add(OVERRIDE, oaio_id, now_stamp(), "", {})


def drop_override(ctx: EngineContext, oaio_id: str) -> None:
    """Forget a pending ``ctl override``: its push committed, or the folder left send-only."""
    for entry in ctx.repo.journal():
        if entry.op == OVERRIDE and entry.oaio_id == oaio_id:
            ctx.repo.journal_remove(entry.id)


def push_carry(ctx: EngineContext, row: ObjectRow, override: bool) -> Carry | None:
    """What a send-only folder's push commits on top of: the server's version, keeping each path the server changed
    as the server has it — none of them with ``override``. None when the folder is not behind the server."""
    if row.mode != MODE_SEND_ONLY or not row.remote_dirty:
        return None
    remote = OaiObject(oaio_id=row.oaio_id, client_stamp=row.client_stamp, client_values=row.client_values)
    return Carry.of(remote, set() if override else server_changes(ctx, row))


def note(ctx: EngineContext, row: ObjectRow) -> str:
    """What ``ctl status`` and ``ctl ls`` say of a folder its mode keeps apart from the server ("" when nothing)."""
    if row.mode == MODE_SEND_ONLY and row.remote_dirty:
        count = _count_server_changes(ctx, row)
        return f"server has changes not applied here: {count} files (ctl override {row.oaio_id} replaces them)"
    if row.mode == MODE_RECEIVE_ONLY and row.local_dirty:
        count = ctx.repo.count_local_changes(row.oaio_id)
        if count:
            return f"local changes not sent: {count} files (ctl revert {row.oaio_id} undoes them)"
    return ""


def _count_server_changes(ctx: EngineContext, row: ObjectRow) -> int:
    """``len(server_changes)``, counted once per server version and base: ``ctl status`` asks every second while a
    status page is open, and counting reads the whole manifest and every index row of the folder."""
    key = (row.oaio_id, row.client_stamp, row.synced_stamp)
    count = ctx.counted.get(key)
    if count is None:
        full = ctx.repo.get_object(row.oaio_id) or row  # with its values (a listing's rows defer them)
        count = len(server_changes(ctx, full))
        if len(ctx.counted) > 256:
            ctx.counted.clear()
        ctx.counted[key] = count
    return count


def trash_local_additions(ctx: EngineContext, row: ObjectRow) -> list[str]:
    """``ctl revert``'s first step: files added here (in no synced version) go to the trash. Returns them."""
    assert row.local_root is not None
    root = Path(row.local_root)
    added = [
        f.path
        for f in ctx.repo.iter_files(row.oaio_id)
        if not f.ignored and f.present and f.synced_sha256 is None and (root / f.path).is_file()
    ]
    for rel in added:
        localfs.to_trash(root, rel)
    return added
