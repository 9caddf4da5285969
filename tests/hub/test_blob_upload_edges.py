"""createUpload at its edges, on a real hub over loopback (SQLite and PostgreSQL): a refused createUpload leaves
nothing behind."""

from __future__ import annotations

import os
from typing import Any

import pytest
import sqlalchemy as sa

from oaiod.hub.db import BlobUpload
from oaiod.hub.server import HubServer
from tests.hub.blobhelpers import B, create, new_id, send, sha

pytestmark = pytest.mark.integration


def upload_rows(hub: HubServer) -> int:
    assert hub.service is not None
    with hub.service.sessions() as db:
        return db.scalar(sa.select(sa.func.count()).select_from(BlobUpload)) or 0


def upload_files(hub: HubServer) -> list[str]:
    return [path.name for path in (hub.data_dir / "blobs" / "uploads").iterdir()]


@pytest.mark.parametrize(
    "change",
    [
        {"size": 11},  # inline data shorter than the announced size
        {"size": 9},  # … and longer
        {"sha256": "0" * 63},  # a malformed field
        {"proposedUploadMethods": {"dataInline": {"contentType": "x", "objectData": "not base64!"}}},
    ],
)
def test_a_refused_create_upload_leaves_nothing(hub: HubServer, sessions: dict[str, Any], change: dict) -> None:
    alice = sessions["alice"]
    answer = create(alice, "refused/x", b"0123456789", new_id(), **change)
    assert answer.status_code == 400, answer.text
    assert upload_rows(hub) == 0 and upload_files(hub) == []
    upload_id = new_id()  # the name is free for a new upload at once (it answered 409 for a day)
    assert create(alice, "refused/x", b"0123456789", upload_id).status_code == 200
    finish = alice.post(B + "finish-upload/refused/x", json={"uploadId": upload_id})
    assert finish.status_code == 200 and finish.json()["sha256"] == sha(b"0123456789")


def test_a_refused_renewal_keeps_the_upload_it_renewed(hub: HubServer, sessions: dict[str, Any]) -> None:
    alice, data, upload_id = sessions["alice"], os.urandom(100), new_id()
    assert create(alice, "renew/x", data, upload_id, inline=False).status_code == 200
    assert send(alice, "renew/x", upload_id, data[:40]).json() == {"received": 40}
    assert create(alice, "renew/x", data, upload_id, size=99).status_code == 400
    assert upload_rows(hub) == 1  # the caller's own upload, with what it received, is still there
    assert send(alice, "renew/x", upload_id, data[40:], offset=40).json() == {"received": 100}
    assert alice.post(B + "finish-upload/renew/x", json={"uploadId": upload_id}).status_code == 200
