"""oaiod's per-file manifest in an object's values (key ``_oaiod``, design §1) and the remote file list it gives.

The manifest is hostile input like every server value: it is read field by field, paths pass
:func:`oaiod.model.validate_file_path`, and anything malformed makes the whole manifest count as stale (every hash
unknown: the engine downloads and hashes) rather than trusted in part.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from oaiod.engine.plan import UNKNOWN, _Unknown
from oaiod.model import FILES_VALUES_KEY

MANIFEST_KEY = "_oaiod"
MANIFEST_VERSION = 1
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
    kind: str, stamp: str, files: dict[str, list[Any]], *, confirmed_delete: bool = False
) -> dict[str, Any]:
    """The ``_oaiod`` value of a version: ``files`` maps path to ``[size, mtime_ns, sha256, executable]``.

    ``confirmed_delete`` says a user confirmed this version's mass deletion: other devices do not hold it again.
    """
    manifest = {"v": MANIFEST_VERSION, "kind": kind, "stamp": stamp, "files": files}
    if confirmed_delete:
        manifest["confirmed_delete"] = True
    return manifest


def confirmed_delete(values: dict[str, Any], client_stamp: str) -> bool:
    """True when this very version's manifest says its mass deletion was confirmed by a user."""
    manifest = values.get(MANIFEST_KEY)
    return (
        isinstance(manifest, dict)
        and manifest.get("stamp") == client_stamp
        and manifest.get("confirmed_delete") is True
    )
