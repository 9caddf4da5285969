"""Requests on the hub's blob store (``hub/blobs/``) as a client sends them, for the blob tests."""

from __future__ import annotations

import base64
import hashlib
import secrets
import time
from typing import Any
from urllib.parse import quote

from oaiod.hub.blobstore import BlobStore
from oaiod.hub.server import HubServer

B = "hub/blobs/"
STAMP = "20250101120000123456"


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def new_id() -> str:
    return secrets.token_urlsafe(24)


def create(session: Any, name: str, data: bytes, upload_id: str, *, inline: bool = True, **extra: Any) -> Any:
    if inline:
        methods = {
            "dataInline": {"contentType": "application/octet-stream", "objectData": base64.b64encode(data).decode()}
        }
    else:
        methods = {"putUrl": {"contentType": "application/octet-stream", "contentLength": len(data)}}
    body = {"uploadId": upload_id, "sha256": sha(data), "size": len(data), "proposedUploadMethods": methods, **extra}
    return session.put(B + "upload/" + quote(name), json=body)


def put_blob(session: Any, name: str, data: bytes) -> None:
    upload_id = new_id()
    assert create(session, name, data, upload_id).status_code == 200
    answer = session.post(B + "finish-upload/" + quote(name), json={"uploadId": upload_id})
    assert answer.status_code == 200, answer.text


def send(session: Any, name: str, upload_id: str, data: bytes, offset: int = 0) -> Any:
    params = {"uploadId": upload_id, "offset": offset}
    return session.put(B + "data/" + quote(name), params=params, data=data)


def download(session: Any, name: str) -> Any:
    return session.get(B + "download/" + quote(name))


def minted(user: str, name: str = "x") -> str:
    """An unregistered id as ``oaiod.model.object_id`` mints it for ``user``."""
    return f"testapp⫻{user}﹫dev1⁄{name}⁄{STAMP}"


def put_large(session: Any, name: str, data: bytes) -> None:
    """Upload ``data`` through the ``putUrl`` method (any size), in one ``data/`` request."""
    upload_id = new_id()
    assert create(session, name, data, upload_id, inline=False).status_code == 200
    assert send(session, name, upload_id, data).json() == {"received": len(data)}
    answer = session.post(B + "finish-upload/" + quote(name), json={"uploadId": upload_id})
    assert answer.status_code == 200, answer.text


def wait_for_no_downloads(hub: HubServer) -> None:
    """The hub releases a download's content after its last byte went out: wait (bounded) until none is held."""
    assert hub.service is not None
    [store] = [part for part in hub.service.attachments if isinstance(part, BlobStore)]
    deadline = time.monotonic() + 10
    while store.downloads_in_flight() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert store.downloads_in_flight() == 0
