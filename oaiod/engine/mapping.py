"""Where a server object lives on this device (design §1): its kind and local folder, decided once and stored.

Folder objects with the ``_oaiod`` manifest are folders; ``_file_paths`` without it is an app's file object; no
files at all is a data object. A ``_root_path`` is hostile: it is used only when :meth:`PathMapper.resolve_root`
accepts it (inside a synced root, outside the state dir) and no other object lives there; objects this user did
not register (:func:`is_mine`, as the server attests it) always go under ``client_root/<name> (OWNER)``; file
objects without a root under ``client_root/filez/<oaio_id>``. Such a fallback folder is never one that is
excluded here (it holds the files an earlier object left; a new object there would take them in).
"""

from __future__ import annotations

import logging
from pathlib import Path

from oaiod.engine.context import EngineContext, object_owner
from oaiod.engine.manifest import manifest_kind
from oaiod.engine.placeholders import _resolved
from oaiod.engine.settings import ROOT_OBJECT_NAME
from oaiod.errors import OaiodError
from oaiod.model import CREATE_ACCESS_RIGHT, FILES_DIR, FILES_VALUES_KEY, NAME_VALUES_KEY, ROOT_VALUES_KEY, OaiObject
from oaiod.state.models import KIND_DATA, KIND_FILES, KIND_FOLDER, KIND_ROOT, STATUS_REMOVED, ObjectRow

log = logging.getLogger("oaiod.engine")


def is_mine(obj: OaiObject, username: str) -> bool:
    """True when the server attests that ``username`` registered ``obj``: it lists the object with ``C`` for them.

    Only the registering user holds ``C`` (the hub never grants it, and refuses a ``register/`` of an id that names
    another user). The id must name the user too: a plain oaio server may not check ids, and ``C`` alone would then
    be the only proof. An object another user shares, whatever its id or values claim, is never this user's.
    """
    return obj.csh_access_right == CREATE_ACCESS_RIGHT and object_owner(obj.oaio_id) == username


def is_own_root(obj: OaiObject, username: str) -> bool:
    """True for a client-root object that ``username`` registered (:func:`is_mine`): a candidate to adopt."""
    values = obj.client_values
    return (
        values.get(NAME_VALUES_KEY) == ROOT_OBJECT_NAME
        and manifest_kind(values) == KIND_ROOT
        and is_mine(obj, username)
    )


def owner_label(ctx: EngineContext, obj: OaiObject) -> str:
    """Whose object ``obj`` is, for the folder name of one that is not this user's: the hub's record of its
    creator where it offers one, else the user its id names; "shared" when that would be this user's own name."""
    owner = object_owner(obj.oaio_id)
    if "origin" in ctx.api.features():
        try:
            owner = ctx.api.origin(obj.oaio_id).creator
        except OaiodError as exc:
            log.info("%s: the hub did not say who registered it (%s); naming it by its id", obj.oaio_id, exc)
    return owner if owner and owner != ctx.settings.username else "shared"


def object_kind(obj: OaiObject) -> str:
    values = obj.client_values
    kind = manifest_kind(values)
    if kind in (KIND_ROOT, KIND_FOLDER):
        return KIND_FOLDER
    if FILES_VALUES_KEY in values or ROOT_VALUES_KEY in values or kind == KIND_FILES:
        return KIND_FILES
    return KIND_DATA


def display_name(obj: OaiObject) -> str:
    """The folder name for an object: its ``_name``, else the last part of its ``_root_path``, else its id."""
    values = obj.client_values
    name = values.get(NAME_VALUES_KEY) or values.get(ROOT_VALUES_KEY) or obj.oaio_id
    return str(name)


def map_object(ctx: EngineContext, obj: OaiObject, known: list[ObjectRow]) -> tuple[str, Path | None]:
    """``(kind, local root)`` for an object this device has not seen before."""
    kind = object_kind(obj)
    if kind == KIND_DATA:
        return kind, None
    live = [row for row in known if row.status != STATUS_REMOVED and row.local_root]
    taken = [Path(row.local_root) for row in live if row.local_root]
    taken += [Path(excluded.path) for excluded in ctx.repo.excluded_folders()]  # left files of an earlier object
    if not is_mine(obj, ctx.settings.username):  # its _root_path is another user's wish: never a folder of ours
        return kind, ctx.mapper.fallback_root(display_name(obj), taken, suffix=f" ({owner_label(ctx, obj)})")
    root_path = obj.client_values.get(ROOT_VALUES_KEY)
    if root_path is None:
        if kind == KIND_FILES:
            return kind, ctx.mapper.client_root / FILES_DIR / obj.oaio_id
        return kind, ctx.mapper.fallback_root(display_name(obj), taken)
    synced = [ctx.mapper.client_root] + [
        Path(row.local_root) for row in live if row.kind in (KIND_ROOT, KIND_FOLDER) and row.local_root
    ]
    target = ctx.mapper.resolve_root(root_path, synced)
    if target is not None and not _clashes(target, kind, live, ctx.mapper.client_root):
        return kind, target
    return kind, ctx.mapper.fallback_root(display_name(obj), taken)


def _clashes(target: Path, kind: str, live: list[ObjectRow], client_root: Path) -> bool:
    """True when ``target`` is the client root or the root of another object (file objects of apps may share
    a folder with each other: each owns only its listed files). Nested roots are fine: the innermost one owns."""
    if target == client_root:
        return True
    for row in live:
        same = bool(row.local_root) and _resolved(Path(row.local_root or "")) == target
        if same and not (kind == KIND_FILES and row.kind == KIND_FILES):
            return True
    return False
