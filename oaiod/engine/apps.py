"""Objects that apps make through the daemon (:mod:`oaiod.client`, ``ctl new|put|values``): data objects, file
objects, their values, and unregistering them (design §1, *Objects of apps*).

Each operation only records what the next cycle commits — a new row (status ``new``) that the push registers, new
local values that it merges by key with the server's (design §5: a clash is recorded, never lost), new file rows
that it uploads — so an app's object goes through the same journal, conflicts and no-lost-update rules as a folder.
``SyncEngine`` holds its lock around each.

A file object of an app lives where the published client puts it: ``client_root/filez/<oaio_id>/`` without a
``_root_path``, else in its folder (``_root_path``); only its listed files sync. Its file's content is copied
there from the app's ``source`` (beside the target, then renamed: never a torn file), and hashed now, so the next
push uploads it without waiting for the watcher.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from oaiod.engine import localfs, ops
from oaiod.engine.context import EngineContext
from oaiod.engine.manifest import MANIFEST_KEY
from oaiod.engine.placeholders import _resolved, is_inside
from oaiod.engine.scanner import file_sha256
from oaiod.errors import FailureKind, OaiodError, ValidationError
from oaiod.model import (
    FILES_DIR,
    FILES_VALUES_KEY,
    NAME_VALUES_KEY,
    ROOT_VALUES_KEY,
    now_stamp,
    object_id,
    validate_file_path,
    validate_oaio_id,
)
from oaiod.state.models import KIND_DATA, KIND_FILES, KIND_FOLDER, STATUS_NEW, STATUS_REMOVED, FileRow, ObjectRow

log = logging.getLogger("oaiod.engine")

#: values only oaiod writes: an app's values must not name them (``_name`` is the app's, on data objects)
MANAGED_KEYS = frozenset({ROOT_VALUES_KEY, FILES_VALUES_KEY, MANIFEST_KEY})


class UnknownObject(OaiodError):
    """No object of that id is synced here."""

    kind = FailureKind.NOT_FOUND


class NotPermitted(OaiodError):
    """The object's right does not allow it (wiping needs ``C`` or ``D``)."""

    kind = FailureKind.PERMISSION


def synced_row(ctx: EngineContext, oaio_id: str) -> ObjectRow:
    """The row of an object synced here; :class:`UnknownObject` for any other id."""
    row = ctx.repo.get_object(oaio_id)
    if row is None or row.status == STATUS_REMOVED:
        raise UnknownObject(f"{oaio_id} is not synced here")
    return row


def current_values(row: ObjectRow) -> dict[str, Any]:
    """The values as this device has them: its own uncommitted edits, else the synced version's (a new object:
    the values it will be registered with)."""
    if row.local_values is not None:
        return dict(row.local_values)
    return dict(row.synced_values or row.client_values)


def app_values(values: Any) -> dict[str, Any]:
    """An app's values, checked: a JSON object with text keys, none of them one oaiod manages."""
    if not isinstance(values, Mapping) or not all(isinstance(key, str) and key for key in values):
        raise ValidationError("values", "must be an object with non-empty text keys")
    managed = MANAGED_KEYS & values.keys()
    if managed:
        raise ValidationError("values", f"{', '.join(sorted(managed))} are managed by oaiod")
    return dict(values)


def new_data_object(ctx: EngineContext, values: Mapping[str, Any]) -> str:
    """Record a new data object (values only); the next push registers it. Its id, as the published client makes
    it (``_name`` names it)."""
    values = app_values(values)
    return _save_new(ctx, KIND_DATA, values, None, now_stamp())


def new_file_object(
    ctx: EngineContext, name: str, source: Path | None, root: Path | None, values: Mapping[str, Any]
) -> str:
    """Record a new file object holding the file ``name``: in ``root`` (its ``_root_path``) or, without one, in
    ``client_root/filez/<oaio_id>/``. ``source`` is copied there (None: the file is there already)."""
    name = validate_file_path(name, "file_name")
    extra = app_values(values)
    stamp = now_stamp()
    new_values: dict[str, Any] = {FILES_VALUES_KEY: [name]}
    if root is not None:
        folder = _resolved(root)
        if is_inside(folder, ctx.mapper.state_dir) or is_inside(ctx.mapper.state_dir, folder):
            raise ValidationError("root_path", f"{root} holds or is inside oaiod's state folder")
        new_values[ROOT_VALUES_KEY] = ctx.mapper.to_placeholder(folder)
    new_values.update(extra)
    settings = ctx.settings
    oaio_id = object_id(settings.username, settings.device_id, settings.app_id, stamp, new_values)
    folder = _resolved(root) if root is not None else ctx.mapper.client_root / FILES_DIR / validate_oaio_id(oaio_id)
    _place(folder, name, source)
    _save_new(ctx, KIND_FILES, new_values, folder, stamp, oaio_id)
    _index_file(ctx, oaio_id, folder, name)
    return oaio_id


def update_file(ctx: EngineContext, oaio_id: str, name: str, source: Path | None) -> str:
    """Put ``source`` (None: the file as it is now) as the file ``name`` of a file object (a name it does not list
    yet is added); the next push commits it. Returns the file's local path."""
    row = synced_row(ctx, oaio_id)
    if row.kind != KIND_FILES or not row.local_root:
        raise ValidationError("oaio_id", f"{oaio_id} is not a file object")
    listed = list(current_files(row))
    name = validate_file_path(name or (listed[0] if listed else ""), "file_name")
    folder = Path(row.local_root)
    _place(folder, name, source, replace=True)
    if name not in listed:
        values = dict(row.client_values)
        values[FILES_VALUES_KEY] = [*listed, name]  # the index finds a listed file's changes (index.owner_of)
        ctx.repo.update_object(oaio_id, client_values=values)
    _index_file(ctx, oaio_id, folder, name)
    return str(folder / name)


def current_files(row: ObjectRow) -> list[str]:
    listed = row.client_values.get(FILES_VALUES_KEY) or []
    return [str(path) for path in listed]


def set_values(ctx: EngineContext, oaio_id: str, values: Mapping[str, Any], unset: Iterable[str] = ()) -> None:
    """Change and delete keys of an object's values; merged by key with the server's at the next push (design
    §5). ``_name`` is the app's on a data object only: a folder's or file object's name is its folder's."""
    row = synced_row(ctx, oaio_id)
    changed, gone = app_values(values), list(unset)
    app_values(dict.fromkeys(gone, None))  # the same check for the keys to delete
    if row.kind != KIND_DATA and NAME_VALUES_KEY in (changed.keys() | set(gone)):
        raise ValidationError("values", f"{NAME_VALUES_KEY} of a {row.kind} object is managed by oaiod")
    local = current_values(row)
    local.update(changed)
    for key in gone:
        local.pop(key, None)
    ctx.repo.update_object(oaio_id, local_values=local, local_dirty=True)


def wipe(ctx: EngineContext, row: ObjectRow) -> None:
    """After ``row``'s object was deleted on the server: delete its versions on the storage host and its files on
    this device (``unregister_object(wipe_files=True)``, as the published client does). A folder object's folder
    goes whole; a file object's listed files, and its folder when that is left empty."""
    if row.status != STATUS_NEW and row.csh_id:
        ctx.backend(row.csh_id).delete_prefix(validate_oaio_id(row.oaio_id))
    if not row.local_root:
        return
    folder = Path(row.local_root)
    if row.kind == KIND_FOLDER:
        shutil.rmtree(folder, ignore_errors=True)
    elif row.kind == KIND_FILES:
        for name in current_files(row):
            (folder / name).unlink(missing_ok=True)
        _prune(folder, current_files(row))
    log.info("%s: its files were wiped on the storage host and at %s", row.oaio_id, folder)


def check_wipe(ctx: EngineContext, row: ObjectRow) -> None:
    """Only who may delete an object may wipe its files (the others only leave the share), and a folder that holds
    another synced object's folder is never wiped (those files are not this object's)."""
    if row.csh_access_right not in ("C", "D") and row.status != STATUS_NEW:
        raise NotPermitted(f"{row.oaio_id}: wiping its files needs the right C or D (it has {row.csh_access_right!r})")
    if row.kind != KIND_FOLDER or not row.local_root:
        return
    mine = _resolved(Path(row.local_root))
    for other in ctx.repo.objects(values=False):
        inner = other.local_root and other.status != STATUS_REMOVED and other.oaio_id != row.oaio_id
        if inner and is_inside(_resolved(Path(str(other.local_root))), mine):
            raise NotPermitted(f"{row.oaio_id}: its folder holds {other.local_root}, another object's; not wiped")


def _prune(folder: Path, names: list[str]) -> None:
    """Remove the folders the listed files leave empty, the object's folder last (never one holding anything)."""
    candidates = {parent for name in names for parent in (folder / name).parents if is_inside(parent, folder)}
    for candidate in sorted(candidates, key=lambda path: -len(path.parts)):
        try:
            candidate.rmdir()
        except OSError:
            continue


def _save_new(
    ctx: EngineContext, kind: str, values: dict[str, Any], folder: Path | None, stamp: str, oaio_id: str = ""
) -> str:
    settings = ctx.settings
    oaio_id = oaio_id or object_id(settings.username, settings.device_id, settings.app_id, stamp, values)
    if ctx.repo.get_object(oaio_id) is not None:
        raise ValidationError("values", f"{oaio_id} exists already (the same values in the same microsecond)")
    ctx.repo.save_object(ops.unregistered_row(ctx, oaio_id, kind, folder, values))
    ctx.repo.add_history(oaio_id, "new", str(folder or ""), f"a {kind} object of an app")
    log.info("%s: new %s object; registered by the next sync cycle", oaio_id, kind)
    return oaio_id


def _place(folder: Path, name: str, source: Path | None, *, replace: bool = False) -> None:
    """Copy ``source`` to ``folder/name`` through a temp file beside it (an existing file is replaced only with
    ``replace``); with no ``source`` the file must be there."""
    target = localfs.safe_join(folder, name)
    if source is None:
        if not target.is_file():
            raise ValidationError("file_name", f"{target} is not a file")
        return
    if not source.is_file():
        raise ValidationError("source", f"{source} is not a file")
    if target.exists() and not replace and not os.path.samefile(source, target):
        raise ValidationError("file_name", f"{target} exists already")
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.exists() and os.path.samefile(source, target):
        return
    temp = localfs.temp_beside(target)
    try:
        shutil.copyfile(source, temp)
        os.replace(temp, target)
    finally:
        temp.unlink(missing_ok=True)


def _index_file(ctx: EngineContext, oaio_id: str, folder: Path, name: str) -> None:
    """Index ``folder/name`` now (stat and sha256), so the next push commits it whatever the watcher saw."""
    path = folder / name
    st = path.lstat()
    sha = file_sha256(path)
    executable = bool(st.st_mode & 0o100)
    with ctx.repo.session() as s:
        file = ctx.repo.get_file(oaio_id, name, session=s)
        if file is None:
            file = FileRow(oaio_id=oaio_id, path=name)
            s.add(file)
        file.present, file.size, file.mtime_ns, file.inode = True, st.st_size, st.st_mtime_ns, st.st_ino
        file.sha256, file.executable, file.ignored = sha, executable, False
    ctx.repo.update_object(oaio_id, local_dirty=True)
