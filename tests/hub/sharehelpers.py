"""Folder objects whose files are in the hub's blob store under ``<oaio_id>/<stamp>/<path>``, put before the
commit as a syncing device does — for the archive, share-link and web app tests. ``manifest=True`` describes each
version with the daemon's manifest (``_oaiod``); without it only the published client's ``_file_paths`` list it."""

from __future__ import annotations

import hashlib
import io
import time
import zipfile
from typing import Any

from oaiod.hub.archives import Archives
from oaiod.hub.server import HubServer
from tests.hub.blobhelpers import put_blob
from tests.hub.objects import new_object, next_version


def _put_files(session: Any, oaio_id: str, stamp: str, files: dict[str, bytes]) -> None:
    for path, data in files.items():
        put_blob(session, f"{oaio_id}/{stamp}/{path}", data)


def _manifest(stamp: str, files: dict[str, bytes], name: str) -> dict[str, Any]:
    entries = {
        path: [len(data), time.time_ns(), hashlib.sha256(data).hexdigest(), False] for path, data in files.items()
    }
    return {"_root_path": f"~/{name}", "_oaiod": {"v": 1, "kind": "folder", "stamp": stamp, "files": entries}}


def folder_object(
    session: Any, files: dict[str, bytes], name: str = "work", *, manifest: bool = False
) -> dict[str, Any]:
    """Register a folder object holding ``files`` (path → bytes), its files put first; the stored object."""
    obj = new_object(session.username, name, _file_paths=sorted(files))
    if manifest:
        obj["csh_id"] = "Hub"
        obj["client_values"].update(_manifest(obj["client_stamp"], files, name))
    _put_files(session, obj["oaio_id"], obj["client_stamp"], files)
    answer = session.post("register/", json=obj)
    assert answer.status_code == 200, answer.text
    stored: dict[str, Any] = answer.json()
    return stored


def new_files_version(
    session: Any, stored: dict[str, Any], files: dict[str, bytes], *, manifest: bool = False
) -> dict[str, Any]:
    """Upload a new version of ``stored`` holding exactly ``files``; the stored object."""
    obj = next_version(stored, _file_paths=sorted(files))
    if manifest:
        obj["client_values"].update(_manifest(obj["client_stamp"], files, stored["client_values"]["_name"]))
    _put_files(session, obj["oaio_id"], obj["client_stamp"], files)
    answer = session.post("upload/", json=obj)
    assert answer.status_code == 200, answer.text
    newer: dict[str, Any] = answer.json()
    return newer


def zip_content(data: bytes) -> dict[str, bytes]:
    """Name → bytes of every entry of a zip, after checking that no name could leave the folder it unpacks in."""
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        assert archive.testzip() is None
        names = archive.namelist()
        for name in names:
            assert not name.startswith("/") and "\\" not in name, name
            assert ".." not in name.split("/") and "" not in name.split("/"), name
        return {name: archive.read(name) for name in names}


def archives_of(hub: HubServer) -> Archives:
    """The archives of a running hub (its application's state)."""
    archives: Archives = hub._server.config.app.state.archives  # type: ignore[union-attr]
    return archives
