"""Objects with files on a hub, as a syncing device leaves them, for the web app tests: a folder object whose files
are in the hub's blob store under ``<oaio_id>/<stamp>/<path>`` with a manifest describing that version."""

from __future__ import annotations

import hashlib
import time
from typing import Any
from urllib.parse import quote

from oaiod.model import now_stamp
from tests.hub.blobhelpers import put_blob
from tests.hub.objects import new_object


def _values(stamp: str, files: dict[str, bytes], name: str) -> dict[str, Any]:
    manifest = {
        path: [len(data), time.time_ns(), hashlib.sha256(data).hexdigest(), False] for path, data in files.items()
    }
    return {
        "_name": name,
        "_root_path": f"~/{name}",
        "_file_paths": sorted(files),
        "_oaiod": {"v": 1, "kind": "folder", "stamp": stamp, "files": manifest},
    }


def make_folder(session: Any, name: str, files: dict[str, bytes]) -> dict[str, Any]:
    """Register a folder object holding ``files`` (blobs first, as the daemon commits); the stored object."""
    obj = new_object(session.username, name)
    obj["csh_id"] = "Hub"
    obj["client_values"] = _values(obj["client_stamp"], files, name)
    for path, data in files.items():
        put_blob(session, f"{obj['oaio_id']}/{obj['client_stamp']}/{path}", data)
    answer = session.post("register/", json=obj)
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


def new_version(session: Any, stored: dict[str, Any], files: dict[str, bytes]) -> dict[str, Any]:
    """Commit a new version of ``stored`` holding exactly ``files``; the stored object."""
    stamp = now_stamp()
    for path, data in files.items():
        put_blob(session, f"{stored['oaio_id']}/{stamp}/{path}", data)
    obj = {
        **stored,
        "server_stamp": stored["client_stamp"],
        "server_values": stored["client_values"],
        "client_stamp": stamp,
        "client_values": _values(stamp, files, stored["client_values"]["_name"]),
    }
    answer = session.post("upload/", json=obj)
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


def web_url(hub: Any, path: str = "") -> str:
    """The URL of a web app page on ``hub`` (``hub.url`` is the API's ``…/api/``)."""
    return hub.url.removesuffix("api/") + "web/" + path


def object_path(oaio_id: str, view: str = "") -> str:
    return f"o/{quote(oaio_id, safe='')}" + (f"/{view}" if view else "")
