"""End to end, adversary: bob attacks alice through the hub they share, with alice's real daemon as the victim.

bob holds an object under an id that names alice, older than her root, of kind root and shared with her with ``D``
(written into the hub's database: today's hub refuses such a ``register/``, ``tests/hub/test_adversary_ids.py``),
and shares his own root, which carries an executable, with ``U``. alice's daemon keeps its own root object, commits
nothing of hers into bob's, deletes nothing, and receives bob's files only in folders named as his.
"""

from __future__ import annotations

import pytest
from daemon_helpers import wait_for
from e2e_helpers import Cluster, first_cycles, object_id_of, server_tree, tree, wait_committed, write_tree

from oaiod.model import defuse
from oaiod.secrets import Secret
from oaiod.server_api import OaioServerApi
from tests.forgery import forge

pytestmark = pytest.mark.integration


def test_a_forged_root_and_a_shared_root_never_take_over_alices_folder(cluster: Cluster) -> None:
    alice = cluster.start("alice-pc", "alice", interval=2)
    bob = cluster.start("bob-pc", "bob", interval=2)
    first_cycles(alice, bob)
    alice_root, bob_root_dir = alice.config.client.root, bob.config.client.root
    write_tree(alice_root, {"secret.txt": "alice's secret", "inbox/todo.txt": "alice's todo"})
    write_tree(bob_root_dir, {"evil.sh": "#!/bin/sh\necho owned\n"})
    (bob_root_dir / "evil.sh").chmod(0o755)
    root_id, bob_root_id = object_id_of(alice), object_id_of(bob)
    wait_committed(cluster, root_id, alice_root)
    wait_committed(cluster, bob_root_id, bob_root_dir, user="bob")
    mine = tree(alice_root)

    bob_api = OaioServerApi(cluster.hub.url, "bob", Secret(cluster.hub.users["bob"]), device_id="bob-x", app_id="x")
    try:
        (bob_root,) = [o for o in bob_api.stampz(None).objects if o.oaio_id == bob_root_id]
        forged = forge(
            cluster.hub,
            cluster.storage,
            bob_root,
            defuse("oaiod://alice@evil/oaiod-root/20230101000000000000"),
            attacker="bob",
            victim="alice",
            right="D",
        )
        bob_api.subscribe(bob_root_id, "alice", "U")

        def both_landed() -> bool:
            landed = [p for p in alice_root.iterdir() if "(bob)" in p.name]
            return len(landed) == 2 and all((p / "evil.sh").is_file() for p in landed)

        wait_for(both_landed, 120, "bob's two objects beside alice's folder")
        alice.call("sync", wait=True)
        alice.call("sync", wait=True)
        assert object_id_of(alice) == root_id  # no switch
        assert server_tree(cluster, root_id) == mine  # her root object is still on the hub, with exactly her files
        assert {path: digest for path, digest in tree(alice_root).items() if "(bob)" not in path} == mine
        for oaio_id in (forged, bob_root_id):  # bob's objects never got a file of alice's
            assert set(server_tree(cluster, oaio_id, user="bob")) == {"evil.sh"}
        status = alice.call("status")
        assert status["state"] != "error", status
        actions = {row["action"] for row in alice.call("history")}
        assert not actions & {"switch-root", "drop-root"}
        assert not (alice_root / "evil.sh").exists()
    finally:
        bob_api.close()
