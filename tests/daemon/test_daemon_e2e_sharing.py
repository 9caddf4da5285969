"""End to end with three users, each on their own daemon: alice (the creator, ``C``) adds a folder and shares it
with bob (``r``) and carol (``U``, later ``D``). Who can change, delete, grant and remove, and what happens to a
read-only user's local edits: kept, reported (``ctl conflicts``, kind ``readonly``), never uploaded."""

from __future__ import annotations

import pytest
from daemon_helpers import wait_for
from e2e_helpers import Cluster, first_cycles, local_path, server_tree, tree, wait_converged, write_tree

from oaiod.daemon.ctl.protocol import CommandFailed

pytestmark = pytest.mark.integration


def test_shared_folder_with_each_access_right(cluster: Cluster) -> None:
    alice = cluster.start("alice-pc", "alice")
    bob = cluster.start("bob-pc", "bob")
    carol = cluster.start("carol-pc", "carol")
    first_cycles(alice, bob, carol)
    team = cluster.base / "team"
    write_tree(team, {"plan.txt": "v1", "budget.txt": "100", "notes/a.txt": "a", "notes/b.txt": "b"})
    team_id = alice.call("add", path=str(team))["oaio_id"]
    alice.call("share", oaio_id=team_id, user="bob", right="r")  # waits for the cycle registering it, if need be
    alice.call("share", oaio_id=team_id, user="carol", right="U")
    rights = {row["username"]: row["access_right"] for row in alice.call("users", oaio_id=team_id)}
    assert rights == {"alice": "C", "bob": "r", "carol": "U"}
    bob_team, carol_team = local_path(bob, team_id), local_path(carol, team_id)
    assert bob_team.parent == bob.config.client.root and bob_team.name.endswith("(alice)")
    wait_converged(
        [alice, bob, carol],
        {"plan.txt", "budget.txt", "notes/a.txt", "notes/b.txt"},
        folders=[team, bob_team, carol_team],
    )

    # U: carol changes, creates and deletes; everybody follows
    (carol_team / "plan.txt").write_text("v2 by carol")
    (carol_team / "carol.txt").write_text("new by carol")
    (carol_team / "notes" / "b.txt").unlink()
    expect = {"plan.txt", "budget.txt", "notes/a.txt", "carol.txt"}
    wait_converged([alice, bob, carol], expect, folders=[team, bob_team, carol_team])
    assert (team / "plan.txt").read_text() == "v2 by carol"
    with pytest.raises(CommandFailed, match="needs C or D"):  # U cannot grant rights
        carol.call("share", oaio_id=team_id, user="bob", right="U")

    # r: bob's edit stays on bob's disk, is reported once, and never reaches the server
    (bob_team / "budget.txt").write_text("999 by bob")
    wait_for(lambda: _readonly_reported(bob, "budget.txt"), 120, "bob's read-only edit reported")
    assert server_tree(cluster, team_id)["budget.txt"] == tree(team)["budget.txt"]
    assert (team / "budget.txt").read_text() == "100" and (bob_team / "budget.txt").read_text() == "999 by bob"
    # ... and survives alice's update of the same file as a conflicted copy on bob's side only
    (team / "budget.txt").write_text("200 by alice")
    wait_for(lambda: (bob_team / "budget.txt").read_text() == "200 by alice", 120, "alice's update on bob")
    copies = [p for p in bob_team.iterdir() if p.name.startswith("budget (conflicted copy")]
    assert [p.read_text() for p in copies] == ["999 by bob"]
    final = wait_converged([alice, carol], expect, folders=[team, carol_team])
    assert set(tree(bob_team)) == set(final) | {copies[0].name}

    # D: carol may now grant (no stronger right than her own) and delete the object for everybody
    alice.call("share", oaio_id=team_id, user="carol", right="D")
    wait_for(lambda: _right(carol, team_id) == "D", 120, "carol's new right on her device")
    with pytest.raises(CommandFailed, match="only the creator holds it"):
        carol.call("share", oaio_id=team_id, user="bob", right="C")
    carol.call("share", oaio_id=team_id, user="bob", right="U")
    assert {r["username"]: r["access_right"] for r in alice.call("users", oaio_id=team_id)}["bob"] == "U"
    carol.call("delete", oaio_id=team_id, wait=True, confirmed=True)
    for proc in (alice, bob):
        wait_for(lambda p=proc: _right(p, team_id) is None, 120, f"{team_id} gone on {proc.config.client.device_id}")
    assert tree(team) == final  # local files stay where they are
    # C: the creator's own subscription cannot be taken away
    with pytest.raises(CommandFailed):
        bob.call("unshare", oaio_id=team_id, user="alice")


def _readonly_reported(proc, name: str) -> bool:
    return any(row.get("kind") == "readonly" and row.get("path", "").endswith(name) for row in proc.call("conflicts"))


def _right(proc, oaio_id: str) -> str | None:
    for row in proc.call("ls"):
        if row["oaio_id"] == oaio_id and row.get("status") not in ("removed", "excluded"):  # excluded: files stay
            return row.get("right")
    return None
