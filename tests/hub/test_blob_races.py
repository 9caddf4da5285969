"""Downloads racing deletes on the hub's blob store: a download that found its name gets the whole content (the
hub holds the content until the answer ends), one that did not gets 404 — never a 5xx. Real hub over loopback,
on SQLite and PostgreSQL; the race runs for a few seconds, bounded in requests and time.
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import pytest
import requests
import sqlalchemy as sa

from oaiod.hub.db import Blob, BlobUpload
from oaiod.hub.server import HubServer
from tests.hub.blobhelpers import (
    STAMP,
    B,
    blob_store_param,  # noqa: F401 - the fixture blob_store: each test on every content store
    create,
    download,
    new_id,
    put_large,
    sha,
    stored_content,
    wait_for_no_downloads,
)
from tests.hub.objects import new_object

pytestmark = pytest.mark.integration

RACE_SECONDS = 3.0  #: at least this long, until both outcomes were seen …
RACE_LIMIT = 30.0  #: … but never longer than this
MAX_REQUESTS = 3000  #: per downloading thread


def content_files(hub: HubServer) -> list[str]:
    return stored_content(hub)


def test_downloads_racing_deletes_answer_the_content_or_404(
    db_url: str, hub_factory: Callable[..., Any], hub_session: Callable[..., Any]
) -> None:
    hub = hub_factory(db_url=db_url)
    writer = hub_session(hub, "alice")
    readers = [hub_session(hub, "alice") for _ in range(3)]
    data = os.urandom(256 * 1024)
    digest = hashlib.sha256(data).hexdigest()
    seen: Counter[str] = Counter()
    wrong: list[str] = []
    stop = threading.Event()
    lock = threading.Lock()

    def churn() -> None:  # the name appears and disappears; its content goes each time with it
        try:
            while not stop.is_set():
                put_large(writer, "race/x", data)
                writer.delete(B + "object/race/x").raise_for_status()
        except Exception as exc:  # reported by the assertion on ``wrong``
            wrong.append(f"the writer failed: {exc!r}")
            stop.set()

    def read(session: Any, ranged: bool) -> None:
        for _ in range(MAX_REQUESTS):
            if stop.is_set():
                return
            headers = {"Range": "bytes=1000-"} if ranged else {}
            try:
                answer = session.get(B + "download/race/x", headers=headers)
            except requests.RequestException as exc:  # the hub dropped the connection: as wrong as a 5xx
                with lock:
                    wrong.append(f"no answer: {exc!r}")
                session.close()
                continue
            expected = data[1000:] if ranged else data
            good = {200: not ranged, 206: ranged, 404: True}.get(answer.status_code, False)
            if answer.status_code in (200, 206) and answer.content != expected:
                good = False
            with lock:
                seen["found" if answer.status_code in (200, 206) else str(answer.status_code)] += 1
                if not good:
                    wrong.append(f"{answer.status_code} {len(answer.content)} bytes {answer.text[:100]!r}")

    threads = [threading.Thread(target=churn)]
    threads += [threading.Thread(target=read, args=(s, n == 2)) for n, s in enumerate(readers)]
    for thread in threads:
        thread.start()
    started = time.monotonic()
    while time.monotonic() - started < RACE_LIMIT and any(t.is_alive() for t in threads[1:]):
        if time.monotonic() - started > RACE_SECONDS and seen["found"] and seen["404"]:
            break
        time.sleep(0.1)
    stop.set()
    for thread in threads:
        thread.join(timeout=60)
    print(f"downloads racing deletes: {dict(seen)}")
    assert not wrong, wrong[:10]
    assert seen["found"] and seen["404"]  # both sides of the race happened

    wait_for_no_downloads(hub)
    put_large(writer, "race/x", data)
    assert content_files(hub) == [digest]
    assert writer.delete(B + "object/race/x").json() == {"deleted": True}
    assert content_files(hub) == []  # no content is kept by a download that never released it


def test_content_deleted_during_a_download_is_served_fully_then_removed(
    hub: HubServer, sessions: dict[str, Any], hub_session: Callable[..., Any]
) -> None:
    alice, reader = sessions["alice"], hub_session(hub, "alice")
    data = os.urandom(24 * 1024 * 1024)  # more than loopback buffers hold: the hub is still reading the file
    put_large(alice, "big/x", data)
    with reader.get(B + "download/big/x", stream=True) as answer:
        assert answer.status_code == 200
        first = answer.raw.read(1024 * 1024)
        assert alice.delete(B + "object/big/x").json() == {"deleted": True}
        assert alice.get(B + "metadata/big/x").status_code == 404  # the name is gone at once …
        assert content_files(hub) == [sha(data)]  # … its content stays while a download reads it
        rest = answer.raw.read()
    assert first + rest == data
    wait_for_no_downloads(hub)
    assert content_files(hub) == []


def test_a_download_the_client_cuts_releases_its_content(
    hub: HubServer, sessions: dict[str, Any], hub_session: Callable[..., Any]
) -> None:
    alice, reader = sessions["alice"], hub_session(hub, "alice")
    data = os.urandom(24 * 1024 * 1024)
    put_large(alice, "big/y", data)
    answer = reader.get(B + "download/big/y", stream=True)
    assert answer.raw.read(1024 * 1024) == data[: 1024 * 1024]
    assert alice.delete(B + "object/big/y").json() == {"deleted": True}
    answer.close()  # the connection is dropped in the middle of the answer
    reader.close()
    wait_for_no_downloads(hub)
    assert content_files(hub) == []
    assert download(alice, "big/y").status_code == 404


def test_uploads_racing_an_object_delete_leave_nothing_behind(
    db_url: str, hub_factory: Callable[..., Any], hub_session: Callable[..., Any]
) -> None:
    hub = hub_factory(db_url=db_url)
    alice, bob = hub_session(hub, "alice"), hub_session(hub, "bob")
    answers: Counter[int] = Counter()
    failures: list[str] = []

    def upload_until_gone(oaio_id: str, started: threading.Event, gone: threading.Event) -> None:
        try:
            for number in range(300):  # bounded; ends soon after the object went
                name = f"{oaio_id}/{STAMP}/f{number}"
                data, upload_id = os.urandom(2000), new_id()
                try:
                    created = create(bob, name, data, upload_id)
                    finish = bob.post(B + "finish-upload/" + quote(name), json={"uploadId": upload_id})
                    statuses = [created.status_code, finish.status_code]
                except requests.RequestException:
                    statuses = [0]  # no answer: the hub dropped the connection
                    bob.close()
                answers.update(statuses)
                if statuses == [200, 200]:
                    started.set()
                if gone.is_set() and 404 in statuses:
                    return
        except Exception as exc:  # reported below
            failures.append(repr(exc))
        finally:
            started.set()

    for round_ in range(4):
        obj = new_object("alice", f"doc{round_}")
        assert alice.post("register/", json=obj).ok
        oaio_id = obj["oaio_id"]
        assert alice.post("subscribe/", json={"oaio_id": oaio_id, "username": "bob", "access_right": "U"}).ok
        started, gone = threading.Event(), threading.Event()
        uploader = threading.Thread(target=upload_until_gone, args=(oaio_id, started, gone))
        uploader.start()
        started.wait(timeout=60)  # at least one file went up under the object
        time.sleep(0.05 * round_)  # the delete lands at different points of an upload
        assert alice.post("delete/", json={"oaio_id": oaio_id}).status_code == 200
        gone.set()
        uploader.join(timeout=120)
    print(f"uploads racing deletes: {dict(answers)}")
    assert not failures, failures
    assert answers[200] and answers[404] and set(answers) == {200, 404}, answers  # never a 5xx
    assert content_files(hub) == [] and list((hub.data_dir / "blobs" / "uploads").iterdir()) == []
    assert hub.service is not None
    with hub.service.sessions() as db:
        assert db.scalar(sa.select(sa.func.count()).select_from(Blob)) == 0
        assert db.scalar(sa.select(sa.func.count()).select_from(BlobUpload)) == 0
