"""Which files one version of an object holds under a path, and the blob (content, size) of each.

Share links (:mod:`oaiod.hub.links`) and folder archives (:mod:`oaiod.hub.archives`) serve the files a version
lists in ``_file_paths``; each is the blob ``<oaio_id>/<stamp>/<path>`` of the hub's blob store (the storage host
``Hub``). A version's values are hostile input: its paths are validated again here (no ``..``, not absolute, no
control characters) before any of them names a file in a zip.
"""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.orm import Session

from oaiod.errors import ValidationError
from oaiod.hub.blobstore import sha256_text
from oaiod.hub.db import Blob, Object, Version
from oaiod.hub.errors import Conflict, NotFound
from oaiod.model import FILES_VALUES_KEY, NAME_VALUES_KEY, now_stamp, validate_file_path


@dataclass(frozen=True)
class VersionFile:
    """One file of a version: its path in the object, and the content its blob points at."""

    path: str
    sha256: str
    size: int


@dataclass(frozen=True)
class Selection:
    """What a path of a version names: one file (``is_folder`` false, one entry) or the files under a folder."""

    oaio_id: str
    stamp: str
    path: str
    is_folder: bool
    files: list[VersionFile]
    top: str  #: the name of the folder (or file) it is, for the zip's top folder and file names

    def entry(self, file: VersionFile) -> str:
        """The name of ``file`` in a zip of this folder: ``TOP/`` and its path inside the folder."""
        inside = file.path[len(self.path) + 1 :] if self.path else file.path
        return f"{self.top}/{inside}"


def newest_stamp(db: Session, oaio_id: str) -> str:
    """The newest version's stamp; 404 for an object the hub does not hold."""
    row = db.get(Object, oaio_id)
    if row is None:
        raise NotFound(f"no object {oaio_id!r}")
    return row.client_stamp


def version_paths(db: Session, oaio_id: str, stamp: str) -> tuple[list[str], str]:
    """The safe file paths of a version and the object's name then; 404 for a version the hub does not hold."""
    values = db.scalar(sa.select(Version.values).where(Version.oaio_id == oaio_id, Version.stamp == stamp))
    if values is None:
        raise NotFound(f"no version {stamp} of {oaio_id!r}")
    paths = values.get(FILES_VALUES_KEY) or []
    safe = []
    for path in paths if isinstance(paths, list) else []:
        try:
            safe.append(validate_file_path(path))
        except (ValidationError, ValueError, TypeError):
            continue  # a path no client could have written: it is not served
    name = values.get(NAME_VALUES_KEY)
    return safe, safe_component(name if isinstance(name, str) else "", "folder")


def safe_component(name: str, default: str) -> str:
    """``name`` as one file name component (for a zip's top folder and a download's name)."""
    cleaned = "".join(char for char in name if char.isprintable() and char not in '/\\:*?"<>|').strip(" .")
    return cleaned[:120] or default


def select(db: Session, oaio_id: str, stamp: str, path: str) -> Selection:
    """The file ``path`` names in version ``stamp``, or the files under the folder it names (``""``: all).

    404 when the version lists no such file or folder; 409 when the version's files are not all in the hub's blob
    store (an object synced through another storage host, or an upload that never finished)."""
    paths, name = version_paths(db, oaio_id, stamp)
    if path and path in paths:
        chosen, is_folder, top = [path], False, safe_component(path.rsplit("/", 1)[-1], "file")
    else:
        prefix = f"{path}/" if path else ""
        chosen = [each for each in paths if each.startswith(prefix)]
        if path and not chosen:
            raise NotFound(f"version {stamp} of {oaio_id!r} has no file or folder {path!r}")
        is_folder, top = True, safe_component(path.rsplit("/", 1)[-1], "folder") if path else name
    files = _blobs(db, oaio_id, stamp, path if is_folder else "", chosen)
    return Selection(oaio_id, stamp, path, is_folder, files, top)


def _blobs(db: Session, oaio_id: str, stamp: str, folder: str, paths: list[str]) -> list[VersionFile]:
    """The blob of every path (one query over the version's folder); 409 when any is missing."""
    base = f"{oaio_id}/{stamp}/"
    start = base + (f"{folder}/" if folder else "")
    query = sa.select(Blob.name, Blob.sha256, Blob.size, Blob.expires).where(
        Blob.owner == "", Blob.scope == oaio_id, sa.func.substr(Blob.name, 1, len(start)) == start
    )
    if len(paths) == 1 and not folder:
        query = sa.select(Blob.name, Blob.sha256, Blob.size, Blob.expires).where(
            Blob.owner == "", Blob.name_hash == sha256_text(base + paths[0])
        )
    now = now_stamp()
    found = {name[len(base) :]: (sha256, size) for name, sha256, size, expires in db.execute(query)
             if expires is None or expires >= now}  # fmt: skip
    missing = [path for path in paths if path not in found]
    if missing:
        raise Conflict(
            f"{len(missing)} of the {len(paths)} files are not stored on the hub (the object may sync through "
            f"another storage host), e.g. {missing[0]!r}",
            missing=len(missing),
        )
    return [VersionFile(path, *found[path]) for path in paths]
