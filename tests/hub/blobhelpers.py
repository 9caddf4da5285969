"""Requests on the hub's blob store (``hub/blobs/``) as a client sends them, for the blob tests."""

from __future__ import annotations

import base64
import hashlib
import secrets
import time
from typing import Any
from urllib.parse import quote

import pytest
import requests

from oaiod.hub.blobstore import BlobStore
from oaiod.hub.server import HubServer
from oaiod.hub.settings import BlobStoreSettings

B = "hub/blobs/"


@pytest.fixture(name="blob_store", params=["local", "s3"])
def blob_store_param(request: pytest.FixtureRequest) -> BlobStoreSettings:
    """The fixture ``blob_store`` (of ``tests/conftest.py``) once per content store: a blob test module imports
    this to run every test on both.
    The S3 store runs on SQLite only (``tests/hub/conftest.py`` deselects it on PostgreSQL: the database and the
    content store are independent, and the pair would double the wall time)."""
    if request.param == "local":
        return BlobStoreSettings()
    bucket = request.getfixturevalue("hub_bucket")
    return bucket.settings()  # type: ignore[no-any-return]


def store_of(hub: HubServer) -> BlobStore:
    assert hub.service is not None
    [store] = [part for part in hub.service.attachments if isinstance(part, BlobStore)]
    return store


def stored_content(hub: HubServer) -> list[str]:
    """The sha256 of every content the hub's content store holds (its folder or its bucket prefix), sorted."""
    return sorted(store_of(hub).content.iter_content())


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
    """The hub releases a download's content after its last byte went out, then removes content that lost its last
    name meanwhile: wait (bounded) until no content is held or being removed."""
    store = store_of(hub)
    deadline = time.monotonic() + 10
    while store.content_in_use() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert store.content_in_use() == 0


def blob_store_args(hub: HubServer) -> list[str]:
    """The ``--blob-store``/``--s3-…`` options of an ``oaiod hub`` command on the hub's content store."""
    settings = hub.settings.blob_store
    if settings.kind == "local":
        return []
    return ["--blob-store", "s3", "--s3-bucket", settings.s3_bucket, "--s3-endpoint", settings.s3_endpoint,
            "--s3-prefix", settings.s3_prefix, "--s3-credentials-file", str(settings.s3_credentials_file)]  # fmt: skip


# -- block transfer (recipe/, blocks/) ------------------------------------------------------------------------


def framed(blocks: list[bytes]) -> bytes:
    return b"".join(len(block).to_bytes(4, "big") + block for block in blocks)


def put_recipe(session: Any, name: str, blocks: list[bytes], whole: str | None = None) -> Any:
    body = {"sha256": whole or sha(b"".join(blocks)), "blocks": [[sha(block), len(block)] for block in blocks]}
    return session.put(B + "recipe/" + quote(name), json=body)


def send_blocks(session: Any, name: str, blocks: list[bytes]) -> Any:
    return session.put(B + "blocks/" + quote(name), data=framed(blocks),
                       headers={"Content-Type": "application/octet-stream"})  # fmt: skip


def store_blocks(session: Any, name: str, blocks: list[bytes]) -> list[str]:
    """The whole protocol: name the blocks, send the missing ones, name them again; the blocks that were sent."""
    first = put_recipe(session, name, blocks)
    assert first.status_code == 200, first.text
    missing = first.json()["missing"]
    if missing:
        sent = [block for block in {sha(block): block for block in blocks}.values() if sha(block) in missing]
        assert send_blocks(session, name, sent).json() == {"stored": [sha(block) for block in sent]}
        second = put_recipe(session, name, blocks)
        assert second.status_code == 200, second.text
        assert second.json()["missing"] == []
        assert second.json()["sha256"] == sha(b"".join(blocks))
    return missing  # type: ignore[no-any-return]


def blob_bytes(hub: Any) -> tuple[float, float]:
    """The hub's ``oaiod_hub_blob_received_bytes_total`` and ``…_sent_bytes_total``: the blob bodies it streamed."""
    text = requests.get(hub.url.removesuffix("api/") + "metrics", timeout=10).text
    found = []
    for metric in ("oaiod_hub_blob_received_bytes_total ", "oaiod_hub_blob_sent_bytes_total "):
        [line] = [line for line in text.splitlines() if line.startswith(metric)]
        found.append(float(line.split()[1]))
    return found[0], found[1]
