"""What a person browses on the hub (the web app, and its API twins under ``/api/hub/``): a user's objects with
owner, right, size and last change; a version's folder tree; one file's versions; and restoring a version.

Rights are the hub service's, never checked here: reads go through :meth:`HubService._readable` (404 for a
non-subscriber, as every route), file bytes through the blob store (:mod:`oaiod.hub.blobaccess`), a restore through
:meth:`HubService.upload` (needs ``U``) and :meth:`BlobStore.copy_many` (needs ``U`` on the object).

File contents live in the hub's blob store under ``<oaio_id>/<stamp>/<path>`` (design §2); an object kept on
another storage host has no bytes here, so its files list without size and cannot be downloaded from the hub.
Values are hostile input: paths come from ``_file_paths`` only after :func:`oaiod.model.validate_file_paths`, and
the manifest (``_oaiod``) is read through :func:`oaiod.engine.manifest.remote_files`, which trusts it only for the
version it names.
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass, field
from typing import Any

import sqlalchemy as sa

from oaiod.engine.manifest import MANIFEST_KEY, manifest_kind, remote_files
from oaiod.errors import ValidationError
from oaiod.hub.blobstore import BlobStore
from oaiod.hub.db import Blob, Object, Subscription, Version
from oaiod.hub.errors import Conflict, NotFound
from oaiod.hub.service import Actor, HubService
from oaiod.model import (
    FILES_VALUES_KEY,
    NAME_VALUES_KEY,
    ROOT_VALUES_KEY,
    OaiObject,
    now_stamp,
    validate_file_paths,
)

KIND_FOLDER, KIND_FILES, KIND_DATA = "folder", "files", "data"
KIND_WORDS = {KIND_FOLDER: "folder", KIND_FILES: "file object", KIND_DATA: "data object"}
RIGHT_WORDS = {
    "C": "created it: may read, change and delete it, and share it with others (at most as manager)",
    "D": "may read, change and delete it, and share it with others (at most as manager)",
    "U": "may read and change it, but not delete or share it",
    "r": "may read and download it, nothing more",
    "x": "no access",
}
RIGHT_NAMES = {"C": "owner", "D": "manager", "U": "writer", "r": "reader", "x": "none"}


def object_kind(values: dict[str, Any]) -> str:
    """The kind the daemon gives an object (``oaiod.engine.mapping.object_kind``, design §1)."""
    kind = manifest_kind(values)
    if kind in ("root", "folder"):
        return KIND_FOLDER
    if FILES_VALUES_KEY in values or ROOT_VALUES_KEY in values or kind == "files":
        return KIND_FILES
    return KIND_DATA


def display_name(oaio_id: str, values: dict[str, Any]) -> str:
    """``_name``, else the last part of ``_root_path``, else the id (as the daemon names its folder)."""
    name = values.get(NAME_VALUES_KEY) or str(values.get(ROOT_VALUES_KEY) or "").rstrip("/").rsplit("/", 1)[-1]
    return str(name or oaio_id)


def file_paths(values: dict[str, Any]) -> list[str]:
    """A version's validated file paths (400 naming the field when one is unsafe)."""
    return validate_file_paths(values.get(FILES_VALUES_KEY) or [])


@dataclass
class ObjectSummary:
    oaio_id: str
    name: str
    kind: str
    owner: str  #: the creator the hub recorded at register/
    right: str
    stamp: str  #: the newest version (its client_stamp: when it was made)
    changed_by: str
    device_id: str
    files: int
    size: int | None  #: bytes of the newest version in the hub's blob store; None when it holds none

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Entry:
    """One line of a folder listing: a sub-folder (``is_dir``, ``files`` below it) or a file."""

    name: str
    path: str
    is_dir: bool
    size: int | None = None
    mtime_ns: int = 0
    files: int = 0


@dataclass
class Listing:
    summary: ObjectSummary
    stamp: str
    path: str
    entries: list[Entry] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "object": self.summary.as_dict(),
            "stamp": self.stamp,
            "path": self.path,
            "entries": [asdict(entry) for entry in self.entries],
        }


class Catalog:
    """Read (and restore) what an actor may see; every method checks rights through the service or blob store."""

    def __init__(self, service: HubService, store: BlobStore) -> None:
        self.service = service
        self.store = store

    # -- objects ------------------------------------------------------------------------------------------------

    def objects(self, actor: Actor) -> list[ObjectSummary]:
        """The objects the actor may read, by name."""
        found = [summary for summary, _values in self._summaries(actor)]
        return sorted(found, key=lambda item: (item.name.casefold(), item.oaio_id))

    def summary(self, actor: Actor, oaio_id: str) -> ObjectSummary:
        """One object the actor may read; 404 when they may not (as for an unknown id)."""
        return self._summaries(actor, oaio_id)[0][0]

    def newest_stamp(self, actor: Actor, oaio_id: str) -> str:
        """The newest version's stamp of an object the actor may read (no values read: a download asks this)."""
        query = (
            sa.select(Object.client_stamp)
            .join(Subscription, Subscription.oaio_id == Object.oaio_id)
            .where(Subscription.username == actor.username, Object.oaio_id == oaio_id)
        )
        with self.service.sessions() as db:
            stamp = db.scalar(query)
        if stamp is None:
            raise NotFound(f"no object {oaio_id!r} that {actor.username!r} may read")
        return stamp

    def opened(self, actor: Actor, oaio_id: str) -> tuple[ObjectSummary, dict[str, Any]]:
        """:meth:`summary` and the newest values, read once (a large folder's values are megabytes)."""
        return self._summaries(actor, oaio_id)[0]

    def _summaries(self, actor: Actor, oaio_id: str | None = None) -> list[tuple[ObjectSummary, dict[str, Any]]]:
        """``(summary, newest values)`` of the readable objects (only ``oaio_id``'s: 404 when not readable). The
        previous version's values (``server_values``, as large) are not read."""
        columns = (Object.oaio_id, Object.client_values, Object.client_stamp, Object.creator, Object.username,
                   Object.device_id, Subscription.access_right)  # fmt: skip
        query = (
            sa.select(*columns)
            .join(Subscription, Subscription.oaio_id == Object.oaio_id)
            .where(Subscription.username == actor.username)
        )
        if oaio_id is not None:
            query = query.where(Object.oaio_id == oaio_id)
        with self.service.sessions() as db:
            rows = list(db.execute(query))
            sizes = self._sizes(db, [row.oaio_id for row in rows])
        if oaio_id is not None and not rows:
            raise NotFound(f"no object {oaio_id!r} that {actor.username!r} may read")
        return [
            (
                ObjectSummary(
                    oaio_id=row.oaio_id,
                    name=display_name(row.oaio_id, row.client_values),
                    kind=object_kind(row.client_values),
                    owner=row.creator,
                    right=row.access_right,
                    stamp=row.client_stamp,
                    changed_by=row.username,
                    device_id=row.device_id,
                    files=len(row.client_values.get(FILES_VALUES_KEY) or []),
                    size=sizes.get(row.oaio_id),
                ),
                row.client_values,
            )
            for row in rows
        ]

    @staticmethod
    def _sizes(db: Any, oaio_ids: list[str]) -> dict[str, int]:
        """Bytes of each object's newest version in the blob store (one grouped query)."""
        if not oaio_ids:
            return {}
        prefix = Object.oaio_id + "/" + Object.client_stamp + "/"
        query = (
            sa.select(Blob.scope, sa.func.sum(Blob.size))
            .join(Object, Object.oaio_id == Blob.scope)
            .where(Blob.owner == "", Blob.scope.in_(oaio_ids))
            .where(sa.func.substr(Blob.name, 1, sa.func.length(prefix)) == prefix)
            .group_by(Blob.scope)
        )
        return {scope: int(total) for scope, total in db.execute(query)}

    def values(self, actor: Actor, oaio_id: str, stamp: str | None = None) -> tuple[str, dict[str, Any]]:
        """``(stamp, values)`` of a version (the newest when ``stamp`` is None); 404 for one the hub does not keep."""
        if stamp is None:
            with self.service.sessions() as db:
                row, _right = self.service._readable(db, oaio_id, actor)
                return row.client_stamp, row.client_values
        found = self.service.versions(actor, oaio_id, stamp)
        if not found:
            raise NotFound(f"the hub keeps no version {stamp} of {oaio_id!r}")
        return stamp, found[0]["values"]

    def _blob_sizes(self, oaio_id: str, stamp: str, under: str = "") -> dict[str, int]:
        """``path → size`` of a version's files in the blob store (those below ``under`` only, when given). No rights
        check: the caller has made sure the actor may read the object."""
        folder = f"{oaio_id}/{stamp}/" + (f"{under}/" if under else "")
        skip = len(f"{oaio_id}/{stamp}/")
        with self.service.sessions() as db:
            query = sa.select(Blob.name, Blob.size).where(
                Blob.owner == "", Blob.scope == oaio_id, sa.func.substr(Blob.name, 1, len(folder)) == folder
            )
            return {name[skip:]: size for name, size in db.execute(query)}

    # -- folders and files --------------------------------------------------------------------------------------

    def listing(
        self,
        actor: Actor,
        oaio_id: str,
        stamp: str | None = None,
        path: str = "",
        opened: tuple[ObjectSummary, dict[str, Any]] | None = None,
    ) -> Listing:
        """The entries of folder ``path`` ("" the top) in a version: sub-folders first, then files, by name.
        ``opened``: what :meth:`opened` answered for this actor and object, when the caller has it already."""
        summary, values = opened or self.opened(actor, oaio_id)
        if stamp is None or stamp == summary.stamp:
            stamp = summary.stamp
        else:
            stamp, values = self.values(actor, oaio_id, stamp)
        path = path.strip("/")
        folder = path + "/"
        below = [p for p in file_paths(values) if not path or p.startswith(folder)]
        if path and not below and path not in _dirs(values):
            raise NotFound(f"version {stamp} of {oaio_id!r} has no folder {path!r}")
        sizes = self._blob_sizes(oaio_id, stamp, path)
        start = len(path) + 1 if path else 0
        here = [p for p in below if "/" not in p[start:]]  # the manifest is read for this folder's files only
        manifest = remote_files({**values, FILES_VALUES_KEY: here}, stamp)
        folders: dict[str, int] = {}
        files: list[Entry] = []
        for full in below:
            rest = full[start:]
            head, sep, _tail = rest.partition("/")
            if sep:
                folders[head] = folders.get(head, 0) + 1
            else:
                known = manifest.get(full)
                files.append(Entry(head, full, False, sizes.get(full), known.mtime_ns if known else 0))
        for empty in _dirs(values):
            if (not path or empty.startswith(path + "/")) and empty != path:
                folders.setdefault(empty[start:].split("/", 1)[0], 0)
        entries = [
            Entry(name, f"{path}/{name}" if path else name, True, files=count) for name, count in folders.items()
        ]
        entries.sort(key=lambda entry: entry.name.casefold())
        files.sort(key=lambda entry: entry.name.casefold())
        return Listing(summary, stamp, path, entries + files)

    def version_list(self, actor: Actor, oaio_id: str) -> list[dict[str, Any]]:
        """Every kept version, newest first, as ``hub/versions/`` lists them but without their values (a large
        folder's are megabytes each): ``{stamp, csh_id, username, device_id, app_id, created}``."""
        columns = (Version.stamp, Version.csh_id, Version.username, Version.device_id, Version.app_id, Version.created)
        with self.service.sessions() as db:
            self.service._readable(db, oaio_id, actor)
            rows = db.execute(sa.select(*columns).where(Version.oaio_id == oaio_id).order_by(Version.stamp.desc()))
            return [dict(row._mapping) for row in rows]

    def file_versions(self, actor: Actor, oaio_id: str, path: str) -> list[dict[str, Any]]:
        """Every kept version of the object that holds ``path``, newest first, with the file's size and sha256 on the
        hub. A version holds it when the blob store has ``<oaio_id>/<stamp>/<path>`` (every version's files are
        there, design §4); for an object without files on the hub the versions' values decide (size None)."""
        versions = self.version_list(actor, oaio_id)
        names = {f"{oaio_id}/{version['stamp']}/{path}": version for version in versions}
        with self.service.sessions() as db:
            query = sa.select(Blob.name, Blob.size, Blob.sha256).where(Blob.owner == "", Blob.scope == oaio_id)
            found = {name: (size, sha) for name, size, sha in db.execute(query.where(Blob.name.in_(list(names))))}
        if found:
            return [
                {**version, "size": found[name][0], "sha256": found[name][1]}
                for name, version in names.items()
                if name in found
            ]
        return [
            {**{k: v for k, v in version.items() if k != "values"}, "size": None, "sha256": None}
            for version in self.service.versions(actor, oaio_id)
            if path in (version["values"].get(FILES_VALUES_KEY) or [])
        ]

    def storage_used(self) -> dict[str, int]:
        """Bytes each user's blob names hold: in the objects they created, and in their private space. A content
        named twice counts twice (the hub stores it once): this is what the user put there, not the disk used."""
        with self.service.sessions() as db:
            shared = db.execute(
                sa.select(Object.creator, sa.func.sum(Blob.size))
                .join(Object, Object.oaio_id == Blob.scope)
                .where(Blob.owner == "")
                .group_by(Object.creator)
            )
            used = {name: int(total) for name, total in shared}
            private = db.execute(
                sa.select(Blob.owner, sa.func.sum(Blob.size)).where(Blob.owner != "").group_by(Blob.owner)
            )
            for name, total in private:
                used[name] = used.get(name, 0) + int(total)
        return used

    # -- restore ------------------------------------------------------------------------------------------------

    def restore(self, actor: Actor, oaio_id: str, stamp: str, path: str = "") -> str:
        """Make version ``stamp`` (or only its file ``path``) the newest: a new version whose files are server-side
        copies in the blob store (no bytes move) and whose values are the old version's (with ``path``: the newest
        values with that one file as it was). Needs ``U``; answers the new version's stamp. A restore that loses a
        race with another upload is 409 and leaves nothing behind. Restoring a data object restores its values."""
        now_summary = self.summary(actor, oaio_id)
        current_stamp, current = self.values(actor, oaio_id)
        _old, old = self.values(actor, oaio_id, stamp)
        new_stamp = max(now_stamp(), _after(current_stamp))
        if path:
            if path not in file_paths(old):
                raise ValidationError("path", f"version {stamp} holds no file {path!r}")
            values = _with_file(current, current_stamp, old, stamp, path, new_stamp)
            sources = {p: current_stamp for p in file_paths(current)} | {path: stamp}
        else:
            values = _restamped(copy.deepcopy(old), stamp, new_stamp)
            sources = dict.fromkeys(file_paths(old), stamp)
        pairs = [(f"{oaio_id}/{src}/{p}", f"{oaio_id}/{new_stamp}/{p}") for p, src in sources.items()]
        for start in range(0, len(pairs), 1000):
            self.store.copy_many(actor, pairs[start : start + 1000])
        obj = OaiObject(
            oaio_id=oaio_id,
            client_stamp=new_stamp,
            server_stamp=current_stamp,
            client_values=values,
            server_values={},
            csh_id=self._csh_id(oaio_id),
            username=actor.username,
            device_id=actor.device_id,
            app_id=actor.app_id,
            csh_access_right=now_summary.right,
        )
        try:
            self.service.upload(actor, obj)
        except Conflict:
            if pairs:
                self.store.delete_prefix(actor, f"{oaio_id}/{new_stamp}")
            raise
        return new_stamp

    def _csh_id(self, oaio_id: str) -> str | None:
        with self.service.sessions() as db:
            row = db.get(Object, oaio_id)
            return row.csh_id if row is not None else None


def _dirs(values: dict[str, Any]) -> list[str]:
    """The empty folders a manifest lists (only plain strings; each checked like a file path)."""
    manifest = values.get(MANIFEST_KEY)
    dirs = manifest.get("dirs") if isinstance(manifest, dict) else None
    if not isinstance(dirs, list):
        return []
    try:
        return validate_file_paths([d for d in dirs if isinstance(d, str)], "dirs")
    except ValidationError:
        return []


def _after(stamp: str) -> str:
    """The smallest stamp after ``stamp`` (one microsecond later), for a restore on a clock that lags."""
    from oaiod.hub.db import stamp_add

    return stamp_add(stamp, 0.000001)


def _restamped(values: dict[str, Any], old_stamp: str, new_stamp: str) -> dict[str, Any]:
    """The values of a restored version: its manifest (when it described that version) now describes the new one;
    a stale manifest stays stale, so daemons hash the files instead of trusting it."""
    manifest = values.get(MANIFEST_KEY)
    if isinstance(manifest, dict) and manifest.get("stamp") == old_stamp:
        values[MANIFEST_KEY] = {**manifest, "stamp": new_stamp}
    return values


def _with_file(
    current: dict[str, Any], current_stamp: str, old: dict[str, Any], old_stamp: str, path: str, new_stamp: str
) -> dict[str, Any]:
    """The newest values with ``path`` as version ``old_stamp`` had it; the manifest stays trusted only when both
    versions' manifests were (else it is left stale: daemons hash)."""
    values = copy.deepcopy(current)
    paths = list(values.get(FILES_VALUES_KEY) or [])
    if path not in paths:
        paths.append(path)
    values[FILES_VALUES_KEY] = paths
    manifest, old_manifest = values.get(MANIFEST_KEY), old.get(MANIFEST_KEY)
    fresh = isinstance(manifest, dict) and manifest.get("stamp") == current_stamp
    old_fresh = isinstance(old_manifest, dict) and old_manifest.get("stamp") == old_stamp
    if fresh and old_fresh and isinstance(manifest, dict) and isinstance(old_manifest, dict):
        entry = (old_manifest.get("files") or {}).get(path)
        files = dict(manifest.get("files") or {})
        if entry is not None and isinstance(files, dict):
            files[path] = entry
            values[MANIFEST_KEY] = {**manifest, "stamp": new_stamp, "files": files}
    return values
