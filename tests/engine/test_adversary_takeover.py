"""Adversary: another user of the same hub tries to take over a victim's synced folders (issue 9 §1).

The victim is a real engine against a real hub over loopback. Today's hub refuses ``register/`` of an id that names
another user (``tests/hub/test_adversary_ids.py``), so the forged objects here are written straight into the hub's
database, as a hub from before that check (or a hostile plain oaio server) could hold them: registered by the
attacker, under an id that names the victim, with an older stamp, shared with the victim. Nothing of the victim may
be read, written, deleted or moved because of them; the victim trusts only what the hub attests (the ``C`` right,
the hub's own registration stamp).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from oaiod.daemon.ctl import present
from oaiod.engine.settings import ROOT_OBJECT_NAME
from oaiod.hub.db import Object, Subscription
from oaiod.hub.server import HubServer
from oaiod.model import CREATE_ACCESS_RIGHT, OaiObject, defuse
from tests.engine.conftest import Device, converge, write
from tests.forgery import forge

pytestmark = pytest.mark.integration

OLD_STAMP = "20230101000000000000"


def _root_object(device: Device) -> OaiObject:
    """The device user's own root object (the one they hold ``C`` on)."""
    (root,) = [
        o
        for o in device.api.stampz(None).objects
        if o.client_values.get("_name") == ROOT_OBJECT_NAME and o.csh_access_right == CREATE_ACCESS_RIGHT
    ]
    return root


def _root_row_id(device: Device) -> str:
    (root,) = [row.oaio_id for row in device.engine.repo.objects() if row.kind == "root"]
    return root


def _attacker_root(make_device: Any) -> tuple[Device, OaiObject]:
    bob = make_device("bob", "bob-pc")
    write(bob.root / "evil.sh", "#!/bin/sh\necho owned\n")
    (bob.root / "evil.sh").chmod(0o755)
    converge(bob)
    return bob, _root_object(bob)


def _untouched(alice: Device, root_id: str, files: dict[str, bytes]) -> None:
    """alice still syncs her own root object, which the hub still holds with exactly her files."""
    assert _root_row_id(alice) == root_id
    server_root = _root_object(alice)
    assert server_root.oaio_id == root_id and server_root.csh_access_right == CREATE_ACCESS_RIGHT
    assert sorted(server_root.client_values["_file_paths"]) == sorted(files)
    tree = alice.tree()
    assert {path: tree[path] for path in files} == files
    actions = {h["action"] for h in present.rows(alice.engine.history())}
    assert not actions & {"switch-root", "drop-root"}


def test_a_forged_older_root_in_the_victims_name_is_never_adopted(
    hub: HubServer, storage_root: Path, make_device: Any
) -> None:
    alice = make_device("alice", "alice-pc")
    files = {"secret.txt": b"alice's secret", "inbox/todo.txt": b"alice's todo"}
    for path, data in files.items():
        write(alice.root / path, data)
    converge(alice)
    root_id = _root_row_id(alice)
    bob, bob_root = _attacker_root(make_device)
    forged = forge(
        hub,
        storage_root,
        bob_root,
        defuse(f"oaiod://alice@evil/{ROOT_OBJECT_NAME}/{OLD_STAMP}"),
        attacker="bob",
        victim="alice",
        right="D",
    )

    converge(alice, rounds=3)
    _untouched(alice, root_id, files)
    # bob's files arrive only in a folder named as his, never into alice's own tree
    (landed,) = [p for p in alice.root.iterdir() if p.name.endswith("(bob)")]
    assert (landed / "evil.sh").read_bytes().startswith(b"#!/bin/sh")
    assert set(alice.tree()) == set(files) | {f"{landed.name}/evil.sh"}
    # and the forged object never received a file of alice's: bob reads exactly what he forged
    (seen,) = [o for o in bob.api.stampz(None).objects if o.oaio_id == forged]
    assert seen.client_values == bob_root.client_values

    # a new device of alice's adopts her real root, not the older forged one
    second = make_device("alice", "alice-laptop")
    converge(second, alice, rounds=2)
    assert _root_row_id(second) == root_id
    assert {path: second.tree()[path] for path in files} == files


def test_a_forged_folder_aimed_into_the_victims_root_lands_beside_it(
    hub: HubServer, storage_root: Path, make_device: Any
) -> None:
    alice = make_device("alice", "alice-pc")
    files = {"inbox/todo.txt": b"alice's todo", "inbox/bank.txt": b"alice's bank details"}
    for path, data in files.items():
        write(alice.root / path, data)
    converge(alice)
    root_id = _root_row_id(alice)
    bob = make_device("bob", "bob-pc")
    loot = bob.home / "loot"
    write(loot / "evil.sh", "#!/bin/sh\necho owned\n")
    bob_folder_id = bob.engine.add_folder(loot)
    converge(bob)
    (bob_folder,) = [o for o in bob.api.stampz(None).objects if o.oaio_id == bob_folder_id]
    values = {**bob_folder.client_values, "_root_path": "{usr}/oaio_root/inbox"}  # alice's inbox, by placeholder
    forged_ids = [
        forge(hub, storage_root, bob_folder, defuse(f"oaiod://alice@evil/inbox/{OLD_STAMP}"), **kw)
        for kw in [{"attacker": "bob", "victim": "alice", "right": "U", "values": values}]
    ]
    genuine = bob_folder_id  # bob's own id, shared with the same wish to live in alice's inbox
    assert hub.service is not None
    with hub.service._writing() as (db, stamp):
        db.get(Object, genuine).client_values = values  # type: ignore[union-attr]
        db.get(Object, genuine).change_stamp = stamp  # type: ignore[union-attr]
        db.add(Subscription(oaio_id=genuine, username="alice", access_right="U", change_stamp=stamp))

    converge(alice, rounds=3)
    _untouched(alice, root_id, files)
    beside = sorted(p.name for p in alice.root.iterdir() if p.name.endswith("(bob)") or "(bob) (" in p.name)
    assert len(beside) == 2, sorted(p.name for p in alice.root.iterdir())
    assert sorted(p.name for p in (alice.root / "inbox").iterdir()) == ["bank.txt", "todo.txt"]
    for oaio_id in [*forged_ids, genuine]:  # neither object took in a file of alice's inbox
        (seen,) = [o for o in bob.api.stampz(None).objects if o.oaio_id == oaio_id]
        assert seen.client_values["_file_paths"] == ["evil.sh"]
