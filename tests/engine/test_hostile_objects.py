"""One hostile object from the server fails alone (issue 9 §4): reported in ``ctl status`` errors and backed off,
while every other object keeps syncing, and nothing of it touches the disk.

A real engine against a real hub over loopback. The hub refuses such objects at the door, so they are written
straight into its database, as a hostile plain oaio server (or a hub with a bug) could list them: a path that
leaves its folder, an id that is no folder name, a ``_root_path`` with a control character, a value of the wrong
type. Runs on SQLite and PostgreSQL.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from oaiod.daemon.ctl import present
from oaiod.hub.db import Object, Subscription, Version
from oaiod.hub.server import HubServer
from oaiod.model import CREATE_ACCESS_RIGHT, now_stamp
from tests.engine.conftest import Device, converge, write

pytestmark = pytest.mark.integration

HOSTILE_VALUES: dict[str, dict[str, Any]] = {
    "path leaving its folder": {"_name": "evil", "_file_paths": ["ok.txt", "../../../escape.txt"]},
    "absolute path": {"_name": "evil", "_file_paths": ["/tmp/escape.txt"]},
    "root path with a control character": {"_name": "evil", "_root_path": "{usr}/x\x07y"},
    "file list of the wrong type": {"_name": "evil", "_file_paths": "escape.txt"},
}


@pytest.fixture
def hub(db_url: str, hub_factory: Any) -> HubServer:
    """The engines' hub, on SQLite and on PostgreSQL."""
    return hub_factory(db_url=db_url)


def corrupt(hub: HubServer, oaio_id: str, values: dict[str, Any]) -> None:
    """A newer version of ``oaio_id`` with ``values``, stored as the hub never would (no validation)."""
    assert hub.service is not None
    with hub.service._writing() as (db, stamp):
        row = db.get(Object, oaio_id)
        assert row is not None
        row.server_stamp, row.server_values = row.client_stamp, row.client_values
        row.client_stamp, row.client_values, row.change_stamp = now_stamp(), values, stamp
        db.add(Version(oaio_id=oaio_id, stamp=row.client_stamp, values=values, csh_id=row.csh_id, username="bob",
                       device_id="evil", app_id="oaiod", created=stamp))  # fmt: skip
        for subscription in db.scalars(sa.select(Subscription).where(Subscription.oaio_id == oaio_id)):
            subscription.change_stamp = stamp


def inject_bad_id(hub: HubServer, oaio_id: str, subscriber: str) -> None:
    """An object under an id no client may use as a folder name, shared with ``subscriber``."""
    assert hub.service is not None
    with hub.service._writing() as (db, stamp):
        values = {"_name": "bad id", "_file_paths": ["x.txt"]}
        db.add(Object(oaio_id=oaio_id, client_stamp=now_stamp(), client_values=values, server_stamp="",
                      server_values={}, csh_id="Local", username="bob", device_id="evil", app_id="oaiod",
                      creator="bob", registered=stamp, change_stamp=stamp))  # fmt: skip
        db.flush()
        db.add(Subscription(oaio_id=oaio_id, username="bob", access_right=CREATE_ACCESS_RIGHT, change_stamp=stamp))
        db.add(Subscription(oaio_id=oaio_id, username=subscriber, access_right="r", change_stamp=stamp))


def shared_folder(bob: Device, name: str, files: dict[str, str]) -> str:
    folder = bob.root / name
    for path, text in files.items():
        write(folder / path, text)
    oaio_id = bob.engine.add_folder(folder)
    converge(bob)
    bob.engine.share(oaio_id, "alice", "r")
    return oaio_id


def files_under(folder: Path) -> set[str]:
    return {str(path.relative_to(folder)) for path in folder.rglob("*") if path.is_file()}


def user_files(home: Path) -> set[str]:
    """Files under a device's home (its client root and every folder around it), the engine's own ones aside."""
    return {path for path in files_under(home) if ".oaiod" not in path.split("/")}


def error_keys(device: Device) -> dict[str, str]:
    return {row["key"]: row["message"] for row in present.status(device.engine.status())["errors"]}


@pytest.mark.parametrize("kind", sorted(HOSTILE_VALUES))
def test_a_hostile_object_fails_alone(hub: HubServer, make_device: Any, tmp_path: Path, kind: str) -> None:
    bob, alice = make_device("bob", "bob-pc"), make_device("alice", "alice-pc")
    good = shared_folder(bob, "good", {"a.txt": "first"})
    evil = shared_folder(bob, "evil", {"e.txt": "kept"})
    converge(alice)
    rows = {row.oaio_id: row for row in alice.engine.repo.objects()}
    good_folder, evil_folder = Path(rows[good].local_root or ""), Path(rows[evil].local_root or "")
    assert (evil_folder / "e.txt").read_text() == "kept"
    before = user_files(alice.home)

    corrupt(hub, evil, HOSTILE_VALUES[kind])
    inject_bad_id(hub, "bad/id\\..", "alice")
    write(bob.root / "good" / "b.txt", "second")
    assert bob.sync().pushed == 1  # bob's own engine lists the hostile objects too: his good folder still goes up
    first = alice.sync()
    assert (good_folder / "b.txt").read_text() == "second" and not first.ok
    assert len(first.errors) == 2 and all("the server sent an invalid" in line for line in first.errors)
    write(bob.root / "good" / "c.txt", "third")
    assert bob.sync().pushed == 1
    report = alice.sync()  # the hostile objects are backed off, the good one still syncs
    assert (good_folder / "c.txt").read_text() == "third"

    errors = error_keys(alice)
    assert f"obj:{evil}" in errors and "invalid" in errors[f"obj:{evil}"], errors
    assert any(key.startswith("listing:") for key in errors), errors  # the id that names no object
    assert alice.engine.repo.backing_off(f"obj:{evil}")
    assert report.errors == []  # backed off: not retried (nor reported again) in the very next cycle
    written = {str((good_folder / name).relative_to(alice.home)) for name in ("b.txt", "c.txt")}
    assert user_files(alice.home) - before == written  # the good object's new files, nothing else
    assert (evil_folder / "e.txt").read_text() == "kept"  # still listed: neither deleted nor forgotten
    assert alice.engine.repo.get_object(evil) is not None
    assert not any(path.name == "escape.txt" for path in tmp_path.rglob("*")) and not Path("/tmp/escape.txt").exists()

    fresh = make_device("alice", "alice-laptop")  # a full listing on a new device: the same, from the start
    fresh.sync()
    fresh_rows = {row.oaio_id: row for row in fresh.engine.repo.objects()}
    assert good in fresh_rows and evil not in fresh_rows
    assert (Path(fresh_rows[good].local_root or "") / "c.txt").read_text() == "third"
    assert f"obj:{evil}" in error_keys(fresh)
