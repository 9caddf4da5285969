"""Objects with files on a hub, as a syncing device leaves them (a manifest describing each version), and the web
app's URLs, for the web app tests."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from tests.hub.sharehelpers import folder_object, new_files_version


def make_folder(session: Any, name: str, files: dict[str, bytes]) -> dict[str, Any]:
    """Register a folder object holding ``files`` (blobs first, as the daemon commits); the stored object."""
    return folder_object(session, files, name, manifest=True)


def new_version(session: Any, stored: dict[str, Any], files: dict[str, bytes]) -> dict[str, Any]:
    """Commit a new version of ``stored`` holding exactly ``files``; the stored object."""
    return new_files_version(session, stored, files, manifest=True)


def web_url(hub: Any, path: str = "") -> str:
    """The URL of a web app page on ``hub`` (``hub.url`` is the API's ``…/api/``)."""
    return hub.url.removesuffix("api/") + "web/" + path


def object_path(oaio_id: str, view: str = "") -> str:
    return f"o/{quote(oaio_id, safe='')}" + (f"/{view}" if view else "")
