"""Folder archives (oaiod.hub.archives): prepare, poll, download; rights, limits, expiry (SQLite and PostgreSQL)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
import requests

from oaiod.hub.server import HubServer
from tests.hub.sharehelpers import archives_of, folder_object, new_files_version, zip_content

A = "hub/archives/"
FILES = {"a.txt": b"alpha", "docs/b.md": b"# bravo\n", "docs/deep/c.bin": bytes(range(256)) * 100}


def wait_prepared(session: Any, archive_id: str, timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        status: dict[str, Any] = session.get(A + archive_id).json()
        if status["status"] != "preparing" or time.monotonic() > deadline:
            return status
        time.sleep(0.05)


def prepare(session: Any, oaio_id: str, **body: Any) -> Any:
    return session.post(A, json={"oaio_id": oaio_id, **body})


def test_prepare_poll_download(hub: HubServer, sessions: dict[str, Any]) -> None:
    bob = sessions["bob"]
    stored = folder_object(bob, FILES)
    oaio_id = stored["oaio_id"]
    assert bob.get(A, params={"oaio_id": oaio_id}).json()["status"] == "not prepared"
    answer = prepare(bob, oaio_id)
    assert answer.status_code in (200, 202), answer.text
    status = wait_prepared(bob, answer.json()["id"])
    assert status["status"] == "prepared", status
    assert status["progress"] == 1.0 and status["total"] == sum(map(len, FILES.values()))
    got = bob.get(A + status["id"] + "/download")
    assert got.status_code == 200 and got.headers["content-type"] == "application/zip"
    assert 'filename="work.zip"' in got.headers["content-disposition"]
    assert zip_content(got.content) == {f"work/{path}": data for path, data in FILES.items()}
    assert status["size"] == len(got.content)
    # asking again finds the same archive; so does the lookup by folder
    assert prepare(bob, oaio_id).json()["id"] == status["id"]
    assert bob.get(A, params={"oaio_id": oaio_id}).json()["id"] == status["id"]


def test_sub_folder_and_pinned_version(hub: HubServer, sessions: dict[str, Any]) -> None:
    bob = sessions["bob"]
    stored = folder_object(bob, FILES)
    newer = new_files_version(bob, stored, {"docs/b.md": b"changed", "new.txt": b"n"})
    old = wait_prepared(bob, prepare(bob, stored["oaio_id"], path="docs", stamp=stored["client_stamp"]).json()["id"])
    assert zip_content(bob.get(A + old["id"] + "/download").content) == {
        "docs/b.md": b"# bravo\n",
        "docs/deep/c.bin": FILES["docs/deep/c.bin"],
    }
    new = wait_prepared(bob, prepare(bob, stored["oaio_id"], path="docs").json()["id"])
    assert new["stamp"] == newer["client_stamp"]
    assert zip_content(bob.get(A + new["id"] + "/download").content) == {"docs/b.md": b"changed"}


def test_rights(hub: HubServer, sessions: dict[str, Any]) -> None:
    bob, carol, alice = sessions["bob"], sessions["carol"], sessions["alice"]
    stored = folder_object(bob, FILES)
    oaio_id = stored["oaio_id"]
    assert prepare(carol, oaio_id).status_code == 404  # not subscribed: as an unknown id
    archive_id = wait_prepared(bob, prepare(bob, oaio_id).json()["id"])["id"]
    for path in (A + archive_id, A + archive_id + "/download"):
        assert carol.get(path).status_code == 404  # another user's archive
        assert alice.get(path).status_code == 404  # a supervisor gets no more
    assert bob.post("subscribe/", json={"oaio_id": oaio_id, "username": "carol", "access_right": "r"}).ok
    mine = wait_prepared(carol, prepare(carol, oaio_id).json()["id"])  # read is enough
    assert mine["status"] == "prepared" and mine["id"] != archive_id
    assert bob.post("subscribe/", json={"oaio_id": oaio_id, "username": "carol", "access_right": "x"}).ok
    assert carol.get(A + mine["id"] + "/download").status_code == 404  # the right went: so did the archive
    assert bob.post("delete/", json={"oaio_id": oaio_id}).ok
    assert bob.get(A + archive_id).status_code == 404


def test_bad_input(hub: HubServer, sessions: dict[str, Any]) -> None:
    bob = sessions["bob"]
    stored = folder_object(bob, FILES)
    oaio_id = stored["oaio_id"]
    for body, status in (
        ({"oaio_id": oaio_id, "path": "../x"}, 400),
        ({"oaio_id": oaio_id, "path": "/abs"}, 400),
        ({"oaio_id": oaio_id, "path": "nothing"}, 404),
        ({"oaio_id": oaio_id, "path": "a.txt"}, 404),  # a file, not a folder
        ({"oaio_id": oaio_id, "stamp": "2023"}, 400),
        ({"oaio_id": oaio_id, "stamp": "20240101000000000000"}, 404),
        ({"oaio_id": oaio_id, "extra": 1}, 400),
    ):
        answer = bob.post(A, json=body)
        assert answer.status_code == status, (body, answer.text)
        assert "error" in answer.json()
    assert bob.get(A + "nope").status_code == 404
    assert bob.get(A + "nope/download").status_code == 404


def test_files_not_on_the_hub(hub: HubServer, sessions: dict[str, Any]) -> None:
    from tests.hub.objects import new_object

    bob = sessions["bob"]
    obj = new_object("bob", "elsewhere", _file_paths=["x.txt"])  # files on another storage host
    assert bob.post("register/", json=obj).ok
    answer = prepare(bob, obj["oaio_id"])
    assert answer.status_code == 409 and answer.json()["missing"] == 1


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_disk_limit(db_url: str, hub_factory: Callable[..., HubServer], hub_session: Callable[..., Any]) -> None:
    hub = hub_factory(db_url=db_url, archive_disk_limit=30_000)
    bob = hub_session(hub, "bob")
    big = folder_object(bob, {"big.bin": b"x" * 40_000}, name="big")
    answer = prepare(bob, big["oaio_id"])
    assert answer.status_code == 413 and answer.json()["limit"] == 30_000
    small = folder_object(bob, {"s.bin": b"y" * 20_000}, name="small")
    other = folder_object(bob, {"t.bin": b"z" * 20_000}, name="other")
    first = prepare(bob, small["oaio_id"])
    assert first.status_code in (200, 202)
    refused = prepare(bob, other["oaio_id"])  # the first takes the room until it expires
    assert refused.status_code == 429 and int(refused.headers["Retry-After"]) > 0
    assert bob.delete(A + first.json()["id"]).json() == {"deleted": True}
    assert prepare(bob, other["oaio_id"]).status_code in (200, 202)


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_expiry(db_url: str, hub_factory: Callable[..., HubServer], hub_session: Callable[..., Any]) -> None:
    hub = hub_factory(db_url=db_url, archive_ttl=0.5)
    bob = hub_session(hub, "bob")
    stored = folder_object(bob, FILES)
    status = wait_prepared(bob, prepare(bob, stored["oaio_id"]).json()["id"])
    archives = archives_of(hub)
    assert archives.path(status["id"]).is_file()
    time.sleep(0.6)
    assert archives.sweep(force=True) == 1
    assert not archives.path(status["id"]).exists()
    assert bob.get(A + status["id"]).status_code == 404


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_time_limit(db_url: str, hub_factory: Callable[..., HubServer], hub_session: Callable[..., Any]) -> None:
    """A build past the time limit ends as ``error`` with the reason, leaves no file, and asking again retries."""
    hub = hub_factory(db_url=db_url, archive_time_limit=0.0)
    bob = hub_session(hub, "bob")
    stored = folder_object(bob, FILES)
    status = wait_prepared(bob, prepare(bob, stored["oaio_id"]).json()["id"])
    assert status["status"] == "error" and "longer than" in status["error"], status
    assert bob.get(A + status["id"] + "/download").status_code == 409
    assert not list((hub.settings.data_dir / "archives").iterdir())
    assert prepare(bob, stored["oaio_id"]).json()["id"] != status["id"]


@pytest.mark.parametrize("db_url", ["postgres"], indirect=True)
def test_two_hubs_on_one_database(
    db_url: str, hub_factory: Callable[..., HubServer], hub_session: Callable[..., Any], tmp_path: Any
) -> None:
    """Two hub processes' worth (one database, one data folder, as ``--workers``): an archive asked for through
    one is polled and downloaded through the other, and a link made on one works on the other."""
    first = hub_factory(db_url=db_url, data_dir=tmp_path / "shared")
    second = hub_factory(db_url=db_url, data_dir=tmp_path / "shared", users=False)
    second.users = first.users
    bob_one, bob_two = hub_session(first, "bob"), hub_session(second, "bob")
    stored = folder_object(bob_one, FILES)
    archive_id = prepare(bob_one, stored["oaio_id"]).json()["id"]
    assert wait_prepared(bob_two, archive_id)["status"] == "prepared"
    got = bob_two.get(A + archive_id + "/download")
    assert zip_content(got.content) == {f"work/{path}": data for path, data in FILES.items()}
    link = bob_one.post("hub/links/", json={"oaio_id": stored["oaio_id"], "path": "a.txt"}).json()
    assert requests.get(link["url"].replace(first.url, second.url), timeout=30).content == b"alpha"
