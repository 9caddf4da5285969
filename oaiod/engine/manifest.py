"""oaiod's per-file manifest in an object's values (key ``_oaiod``, design §1) and the remote file list it gives.

The manifest is hostile input like every server value: it is read field by field, paths pass
:func:`oaiod.model.validate_file_path`, and anything malformed makes the whole manifest count as stale (every hash
unknown: the engine downloads and hashes) rather than trusted in part.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from oaiod.engine.plan import UNKNOWN, _Unknown
from oaiod.model import FILES_VALUES_KEY, validate_file_path

MANIFEST_KEY = "_oaiod"
MANIFEST_VERSION = 1
MAX_DIRS = 100_000  #: more empty folders than this in one manifest: its ``dirs`` counts as malformed
_SHA = re.compile(r"\A[0-9a-f]{64}\Z")


@dataclass(frozen=True)
class RemoteFile:
    """A file of the server's newest version: its sha256 (or UNKNOWN), size, mtime and executable bit."""

    sha256: str | _Unknown
    size: int = -1
    mtime_ns: int = 0
    executable: bool = False


def manifest_kind(values: dict[str, Any]) -> str | None:
    """The ``kind`` the manifest declares (``root``, ``folder``, ``files``), or None without a usable one."""
    manifest = values.get(MANIFEST_KEY)
    kind = manifest.get("kind") if isinstance(manifest, dict) else None
    return kind if isinstance(kind, str) else None


def remote_files(values: dict[str, Any], client_stamp: str) -> dict[str, RemoteFile]:
    """``path -> RemoteFile`` for every entry of ``_file_paths`` (already validated by the model).

    Hashes come from the manifest only when it describes this very version (``stamp == client_stamp``).
    """
    paths = values.get(FILES_VALUES_KEY) or []
    entries = _fresh_entries(values.get(MANIFEST_KEY), client_stamp, paths)
    return {path: entries.get(path, RemoteFile(UNKNOWN)) for path in paths}


def _fresh_entries(manifest: Any, client_stamp: str, paths: list[str]) -> dict[str, RemoteFile]:
    """The manifest's entries of ``paths`` (validated ``_file_paths``: other keys are never looked at, so they need
    no validation); empty when the manifest is not this version's or any entry is malformed."""
    if not isinstance(manifest, dict) or manifest.get("v") != MANIFEST_VERSION:
        return {}
    files = manifest.get("files")
    if manifest.get("stamp") != client_stamp or not isinstance(files, dict):
        return {}
    entries: dict[str, RemoteFile] = {}
    try:
        for path in paths:
            entry = files.get(path)
            if entry is None:
                continue
            size, mtime_ns, sha, executable = entry
            if not (isinstance(size, int) and size >= 0 and isinstance(mtime_ns, int) and mtime_ns >= 0):
                return {}
            if not (isinstance(sha, str) and _SHA.match(sha) and isinstance(executable, bool)):
                return {}
            entries[path] = RemoteFile(sha, size, mtime_ns, executable)
    except (TypeError, ValueError):
        return {}
    return entries


def build_manifest(
    kind: str,
    stamp: str,
    files: dict[str, list[Any]],
    *,
    dirs: list[str] | None = None,
    confirmed_delete: bool = False,
) -> dict[str, Any]:
    """The ``_oaiod`` value of a version: ``files`` maps path to ``[size, mtime_ns, sha256, executable]``, ``dirs``
    lists the version's empty folders (sorted; the key is left out when there are none, as manifests before it had).

    ``confirmed_delete`` says a user confirmed this version's mass deletion: other devices do not hold it again.
    """
    manifest: dict[str, Any] = {"v": MANIFEST_VERSION, "kind": kind, "stamp": stamp, "files": files}
    if dirs:
        manifest["dirs"] = dirs
    if confirmed_delete:
        manifest["confirmed_delete"] = True
    return manifest


def remote_dirs(values: dict[str, Any], client_stamp: str) -> frozenset[str] | None:
    """The empty folders of this version (design §1), or None when unknown: the manifest is not this version's (the
    published client changed the object) or its ``dirs`` is malformed. A folder that is a file of the version or
    holds one is not empty: such an entry is left out, never trusted over ``_file_paths``."""
    manifest = values.get(MANIFEST_KEY)
    if not isinstance(manifest, dict) or manifest.get("v") != MANIFEST_VERSION or manifest.get("stamp") != client_stamp:
        return None
    dirs = manifest.get("dirs", [])
    if not isinstance(dirs, list) or len(dirs) > MAX_DIRS:
        return None
    paths = values.get(FILES_VALUES_KEY) or []
    found: set[str] = set()
    for path in dirs:
        try:
            if not isinstance(path, str) or validate_file_path(path) != path:
                return None
        except ValueError:
            return None
        found.add(path)
    if not found:
        return frozenset()  # the usual case: no pass over every path of a large folder
    return frozenset(found.difference(paths, folders_of(paths)))


def folders_of(paths: Iterable[str]) -> set[str]:
    """Every folder that holds one of ``paths`` (``a/b/c`` is held by ``a/b`` and ``a``)."""
    return {path.rsplit("/", depth)[0] for path in paths for depth in range(1, path.count("/") + 1)}


def confirmed_delete(values: dict[str, Any], client_stamp: str) -> bool:
    """True when this very version's manifest says its mass deletion was confirmed by a user."""
    manifest = values.get(MANIFEST_KEY)
    return (
        isinstance(manifest, dict)
        and manifest.get("stamp") == client_stamp
        and manifest.get("confirmed_delete") is True
    )
