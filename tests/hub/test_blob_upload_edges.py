"""createUpload and finishUpload at their edges, on a real hub over loopback (SQLite and PostgreSQL): a refused
createUpload leaves nothing behind, and concurrent finishes of one upload all answer the object's metadata."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import pytest
import sqlalchemy as sa

from oaiod.hub.db import BlobUpload
from oaiod.hub.server import HubServer
from tests.hub.blobhelpers import (
    B,
    blob_store_param,  # noqa: F401 - the fixture blob_store: each test on every content store
    create,
    new_id,
    send,
    sha,
)

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


def finish_at_once(clients: list[Any], name: str, upload_id: str) -> list[Any]:
    """``finish-upload/`` of one upload by every client at the same moment, each on its own thread."""
    answers: list[Any] = [None] * len(clients)
    start = threading.Barrier(len(clients))

    def finish(number: int) -> None:
        start.wait()
        answers[number] = clients[number].post(B + "finish-upload/" + quote(name), json={"uploadId": upload_id})

    threads = [threading.Thread(target=finish, args=(number,)) for number in range(len(clients))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return answers


@pytest.mark.parametrize("size", [3000, 6 * 1024 * 1024])  # hashed as it arrived, and hashed in full at finish
def test_concurrent_finishes_of_one_upload_all_answer_the_metadata(
    hub: HubServer, hub_session: Callable[..., Any], size: int
) -> None:
    clients = [hub_session(hub, "alice") for _ in range(4)]
    for round_ in range(5):
        name, data, upload_id = f"finish/x{round_}", os.urandom(size), new_id()
        assert create(clients[0], name, data, upload_id, inline=False).status_code == 200
        if size > 3000:  # two requests: the running hash does not cover the upload, finish hashes the file
            assert send(clients[0], name, upload_id, data[:1000]).status_code == 200
            assert send(clients[0], name, upload_id, data[500:], offset=500).status_code == 200
        else:
            assert send(clients[0], name, upload_id, data).status_code == 200
        answers = finish_at_once(clients, name, upload_id)
        assert [answer.status_code for answer in answers] == [200] * len(clients), [a.text for a in answers]
        assert {answer.json()["sha256"] for answer in answers} == {sha(data)}
        assert {answer.json()["size"] for answer in answers} == {size}
    assert upload_rows(hub) == 0 and upload_files(hub) == []
    late = clients[1].post(B + "finish-upload/finish/x0", json={"uploadId": new_id()})  # any uploadId, once finished
    assert late.status_code == 200 and late.json()["name"] == "finish/x0"
