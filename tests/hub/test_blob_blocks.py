"""Block transfer on the hub's blob store (``recipe/``, ``blocks/``; :mod:`oaiod.hub.blobrecipes`) over real
HTTP, on SQLite and PostgreSQL, on the local and the S3 content store: a content stored as its blocks reads
whole everywhere, a new version sends only its new blocks, deduplication never crosses rights, garbage
collection keeps shared blocks and drops unused ones, bad input is 4xx JSON."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from oaiod.hub.blobblocks import STAGE_BATCH
from oaiod.hub.blobrecipes import RUNNING_HASHES
from oaiod.hub.server import HubServer
from oaiod.storage.base import Transfer
from oaiod.storage.hub import HubBackend
from tests.hub.blobhelpers import (
    B,
    blob_store_param,  # noqa: F401 - the fixture blob_store: each test on every content store
    download,
    put_blob,
    put_recipe,
    send_blocks,
    sha,
    store_blocks,
    store_of,
    stored_content,
    wait_for_no_downloads,
)
from tests.hub.objects import new_object

pytestmark = pytest.mark.integration

KIB = 1024


def cut(data: bytes, size: int = 64 * KIB) -> list[bytes]:
    """Fixed-size blocks (the hub does not care how a client cut them)."""
    return [data[start : start + size] for start in range(0, len(data), size)]


def test_a_content_stored_as_blocks_reads_whole_and_a_new_version_sends_only_new_blocks(
    hub: HubServer, sessions: dict[str, Any], tmp_path: Path
) -> None:
    bob = sessions["bob"]
    data = os.urandom(5 * 64 * KIB + 1000)
    blocks = cut(data)
    assert sorted(store_blocks(bob, "big/v1", blocks)) == sorted(sha(block) for block in blocks)
    assert download(bob, "big/v1").content == data
    ranged = bob.get(B + "download/big/v1", headers={"Range": "bytes=65000-200000"})
    assert ranged.status_code == 206 and ranged.content == data[65000:200001]
    tail = bob.get(B + "download/big/v1", headers={"Range": f"bytes={len(data) - 10}-"})
    assert tail.status_code == 206 and tail.content == data[-10:]
    recipe = bob.get(B + "recipe/big/v1").json()
    assert recipe == {"name": "big/v1", "size": len(data), "sha256": sha(data),
                      "blocks": [[sha(block), len(block)] for block in blocks]}  # fmt: skip
    assert sha(data) not in stored_content(hub)  # stored as its blocks only
    assert set(stored_content(hub)) == {sha(block) for block in blocks}

    changed = data[:70000] + b"X" * 4096 + data[74096:]
    new_blocks = cut(changed)
    assert store_blocks(bob, "big/v2", new_blocks) == [sha(new_blocks[1])]  # only the changed block
    assert download(bob, "big/v2").content == changed
    assert bob.post(B + "copy/", json={"src": "big/v2", "dst": "big/v3"}).status_code == 200
    assert download(bob, "big/v3").content == changed
    put_blob(bob, "small/whole", b"a small file stays whole")
    assert bob.get(B + "recipe/small/whole").json()["blocks"] is None

    backend = HubBackend.from_args({"url": hub.url, "username": "bob", "password": hub.users["bob"],
                                    "allow_insecure": True})  # fmt: skip
    try:  # get-many and the single-file get of the storage backend read it whole too
        got = backend.get_many([Transfer("big/v2", str(tmp_path / "a")), Transfer("small/whole", str(tmp_path / "b"))])
        assert [result.error for result in got] == [None, None]
        assert (tmp_path / "a").read_bytes() == changed and got[0].sha256 == sha(changed)
        backend.get_file("big/v1", tmp_path / "c")
        assert (tmp_path / "c").read_bytes() == data
    finally:
        backend.close()


def test_a_blocks_body_larger_than_a_staging_batch_keeps_every_block(hub: HubServer, sessions: dict[str, Any]) -> None:
    """The hub stages received blocks in batches of STAGE_BATCH bytes: a body of several batches, ending inside
    one, answers every block in the order sent, and the recipe made of them reads whole."""
    bob = sessions["bob"]
    blocks = [os.urandom(1536 * KIB) for _ in range(2 * STAGE_BATCH // (1536 * KIB) + 1)]
    assert sum(map(len, blocks)) > 2 * STAGE_BATCH
    store_blocks(bob, "batched/big", blocks)  # checks the answer lists every block in order
    assert download(bob, "batched/big").content == b"".join(blocks)


def _running_hash(hub: HubServer, whole: str) -> Any:
    [running] = [run for (_folder, sha256), run in store_of(hub).blocks._running.items() if sha256 == whole]
    return running


def _counting_reads(hub: HubServer, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The blocks the commit's check reads back from the content store from now on."""
    inner = store_of(hub).content.inner  # type: ignore[attr-defined]
    read, opened = [], inner.open

    def counted(sha256: str, start: int = 0) -> Any:
        read.append(sha256)
        return opened(sha256, start)

    monkeypatch.setattr(inner, "open", counted)
    return read


def test_the_whole_sha256_is_hashed_as_blocks_arrive_and_the_rest_read_back(
    hub: HubServer, sessions: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Blocks sent in order (a repeated one read from its staged file) or in two requests in reverse order are
    hashed before the commit, which then reads none back; a recipe named only after its blocks were sent is read
    back whole; the running hash never lets a wrong sha256 through, nor takes blocks once its commit has it."""
    bob = sessions["bob"]
    reads = _counting_reads(hub, monkeypatch)
    a, b, c = (os.urandom(64 * KIB + number) for number in range(3))
    in_order = [a, b, a, c]
    assert put_recipe(bob, "run/in-order", in_order).json()["missing"] == [sha(block) for block in sorted(
        {a, b, c}, key=sha)]  # fmt: skip
    assert send_blocks(bob, "run/in-order", [a, b, c]).status_code == 200
    assert _running_hash(hub, sha(b"".join(in_order))).done == 4
    assert put_recipe(bob, "run/in-order", in_order).json()["sha256"] == sha(b"".join(in_order))
    assert reads == []

    d, e, f = (os.urandom(64 * KIB) for _ in range(3))
    put_recipe(bob, "run/reversed", [d, e, f])
    send_blocks(bob, "run/reversed", [f])
    assert _running_hash(hub, sha(d + e + f)).done == 0  # waits for d
    send_blocks(bob, "run/reversed", [e, d])  # d fed, then e from this request, f from its staged file
    assert _running_hash(hub, sha(d + e + f)).done == 3
    assert put_recipe(bob, "run/reversed", [d, e, f]).json()["missing"] == []
    assert reads == [] and download(bob, "run/reversed").content == d + e + f
    reads.clear()  # (the download read them)

    g, h = os.urandom(70 * KIB), os.urandom(80 * KIB)
    send_blocks(bob, "run/sent-first", [g, h])  # no recipe was waiting for them: the commit reads both back
    assert put_recipe(bob, "run/sent-first", [g, h]).json()["missing"] == []
    assert sorted(reads) == sorted([sha(g), sha(h)])

    i, j = os.urandom(64 * KIB), os.urandom(64 * KIB)
    wrong = sha(b"something else")
    assert put_recipe(bob, "run/wrong", [i, j], whole=wrong).json()["missing"]
    send_blocks(bob, "run/wrong", [i, j])
    assert _running_hash(hub, wrong).done == 2
    refused = put_recipe(bob, "run/wrong", [i, j], whole=wrong)
    assert refused.status_code == 400 and sha(i + j) in refused.json()["reason"]
    assert bob.get(B + "metadata/run/wrong").status_code == 404

    k, m = os.urandom(64 * KIB), os.urandom(64 * KIB)  # a commit's hash is fed no more: a batch staged meanwhile
    put_recipe(bob, "run/taken", [k, m])  # (a client that commits while still sending) must not add to it
    send_blocks(bob, "run/taken", [k])
    uploads = store_of(hub).blocks
    [(folder, _whole)] = [key for key in uploads._running if key[1] == sha(k + m)]
    taken = uploads._take_running(folder, sha(k + m), [(sha(k), len(k)), (sha(m), len(m))])
    assert taken.done == 1
    uploads.stage_many(folder, [m])
    assert taken.done == 1


def test_running_hashes_are_bounded_and_an_evicted_one_is_read_back(
    hub: HubServer, sessions: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """At most RUNNING_HASHES recipes are hashed as their blocks arrive; the oldest makes room, and its commit reads
    its blocks back instead (the same result)."""
    bob = sessions["bob"]
    reads = _counting_reads(hub, monkeypatch)
    files = [[os.urandom(64 * KIB)] for _ in range(RUNNING_HASHES + 1)]
    for number, blocks in enumerate(files):
        assert put_recipe(bob, f"many/{number}", blocks).json()["missing"]
    assert len(store_of(hub).blocks._running) == RUNNING_HASHES
    for number, blocks in enumerate(files):
        send_blocks(bob, f"many/{number}", blocks)
        assert put_recipe(bob, f"many/{number}", blocks).json()["missing"] == []
    assert reads == [sha(files[0][0])]  # the first, evicted by the last
    assert download(bob, "many/0").content == files[0][0]


def test_deduplication_never_crosses_rights(hub: HubServer, sessions: dict[str, Any]) -> None:
    alice, bob, carol = sessions["alice"], sessions["bob"], sessions["carol"]
    secret = os.urandom(3 * 64 * KIB)
    blocks = cut(secret)
    store_blocks(alice, "mine/secret", blocks)
    # bob knows the hashes but not the bytes: every block is missing for him, nothing is named
    assert put_recipe(bob, "his/copy", blocks).json()["missing"] == sorted(sha(block) for block in blocks)
    assert bob.get(B + "metadata/his/copy").status_code == 404
    # nor can he name alice's content with blocks of his own: the hub recomputes the whole sha256
    own = [os.urandom(64 * KIB) for _ in range(3)]
    store_blocks(bob, "his/own", own)
    claim = put_recipe(bob, "his/claim", own, whole=sha(secret))
    assert claim.status_code == 400 and claim.json()["error"] == "bad_request"
    assert bob.get(B + "metadata/his/claim").status_code == 404
    # an object's subscribers share its blocks as they share its files: bob (U) dedups, carol (r) may not write
    obj = new_object("alice")
    oaio_id = obj["oaio_id"]
    store_blocks(alice, f"{oaio_id}/s1/f", blocks)
    assert alice.post("register/", json=obj).status_code == 200
    assert put_recipe(bob, f"{oaio_id}/s2/f", blocks).status_code == 404  # not subscribed
    assert send_blocks(bob, f"{oaio_id}/s2/f", blocks[:1]).status_code == 404
    assert bob.get(B + "recipe/" + quote(f"{oaio_id}/s1/f")).status_code == 404
    assert alice.post("subscribe/", json={"oaio_id": oaio_id, "username": "bob", "access_right": "U"}).ok
    assert alice.post("subscribe/", json={"oaio_id": oaio_id, "username": "carol", "access_right": "r"}).ok
    assert store_blocks(bob, f"{oaio_id}/s2/f", blocks) == []  # nothing to send: the object has them all
    assert download(bob, f"{oaio_id}/s2/f").content == secret
    assert put_recipe(carol, f"{oaio_id}/s3/f", blocks).status_code == 403
    assert carol.get(B + "recipe/" + quote(f"{oaio_id}/s2/f")).json()["blocks"][0][0] == sha(blocks[0])
    # blocks bob sent for his own space do not serve his recipes elsewhere, and are not carol's
    extra = [os.urandom(64 * KIB)]
    assert send_blocks(bob, "his/x", extra).status_code == 200
    assert put_recipe(carol, "hers/x", extra).json()["missing"] == [sha(extra[0])]
    assert put_recipe(bob, f"{oaio_id}/s4/f", extra).json()["missing"] == [sha(extra[0])]


def test_gc_keeps_shared_blocks_and_drops_unused_ones(hub: HubServer, sessions: dict[str, Any]) -> None:
    bob = sessions["bob"]
    first = [os.urandom(64 * KIB) for _ in range(4)]
    second = [first[0], os.urandom(64 * KIB), first[2], first[3]]
    store_blocks(bob, "gc/v1", first)
    store_blocks(bob, "gc/v2", second)
    put_blob(bob, "gc/plain", first[3])  # a whole content equal to a block: one stored content for both
    assert set(stored_content(hub)) == {sha(block) for block in first + second}
    assert bob.delete(B + "object/gc/v1").json() == {"deleted": True}
    wait_for_no_downloads(hub)
    assert set(stored_content(hub)) == {sha(block) for block in second}
    assert download(bob, "gc/v2").content == b"".join(second)
    assert bob.delete(B + "object/gc/v2").json() == {"deleted": True}
    wait_for_no_downloads(hub)
    assert stored_content(hub) == [sha(first[3])]  # still named by gc/plain
    assert download(bob, "gc/plain").content == first[3]
    assert bob.delete(B + "prefix/gc").json() == {"deleted": 1}
    wait_for_no_downloads(hub)
    assert stored_content(hub) == []
    assert store_of(hub).content.exists(sha(b"".join(second))) is False


def test_bad_block_input_answers_4xx_json(hub: HubServer, sessions: dict[str, Any], db_snapshot: Any) -> None:
    bob = sessions["bob"]
    block = os.urandom(1000)
    good = {"sha256": sha(block), "blocks": [[sha(block), 1000]]}
    before = db_snapshot(hub)
    cases: list[tuple[str, Any, int]] = [
        ("recipe", {**good, "blocks": []}, 400),
        ("recipe", {**good, "blocks": "x"}, 400),
        ("recipe", {**good, "blocks": [[sha(block)]]}, 400),
        ("recipe", {**good, "blocks": [[sha(block), 0]]}, 400),
        ("recipe", {**good, "blocks": [[sha(block), 5 * 1024 * 1024]]}, 400),
        ("recipe", {**good, "blocks": [[sha(block), True]]}, 400),
        ("recipe", {**good, "blocks": [["ABC", 1000]]}, 400),
        ("recipe", {**good, "sha256": "nothex"}, 400),
        ("recipe", {**good, "extra": 1}, 400),
        ("recipe", {**good, "expires": "tomorrow"}, 400),
        ("recipe", [1, 2], 400),
    ]
    for route, body, status in cases:
        answer = bob.put(B + route + "/bad/name", json=body)
        assert answer.status_code == status, (body, answer.text)
        assert answer.json()["error"]
    assert bob.put(B + "recipe/bad/name", data=b"{}", headers={"Content-Type": "text/plain"}).status_code == 415
    assert bob.put(B + "recipe/..%2Fx", json=good).status_code in (400, 404)
    for body in (b"\x00\x00\x00", b"\x00\x00\x00\x05abc", b"\x00\x00\x00\x00", b"\x7f\xff\xff\xff" + b"x" * 10):
        answer = bob.put(B + "blocks/bad/name", data=body, headers={"Content-Type": "application/octet-stream"})
        assert answer.status_code == 400 and answer.json()["error"] == "bad_request", body
    assert db_snapshot(hub) == before
    # sizes that do not match the blocks sent: refused, nothing named
    assert send_blocks(bob, "bad/name", [block]).status_code == 200
    wrong = bob.put(B + "recipe/bad/name", json={**good, "blocks": [[sha(block), 999]]})
    assert wrong.status_code == 400 and "999" in wrong.json()["reason"]
    assert bob.get(B + "metadata/bad/name").status_code == 404
    assert bob.get(B + "recipe/bad/none").status_code == 404


def test_blocks_no_recipe_used_go_after_a_day(hub: HubServer, sessions: dict[str, Any]) -> None:
    bob = sessions["bob"]
    blocks = [os.urandom(1000), os.urandom(2000)]
    assert send_blocks(bob, "stale/x", blocks).status_code == 200
    staged = [path for path in (hub.data_dir / "blobs" / "blocks-staged").rglob("*") if path.is_file()]
    assert sorted(path.name for path in staged) == sorted(sha(block) for block in blocks)
    old = time.time() - 2 * 24 * 3600
    os.utime(staged[0], (old, old))
    store = store_of(hub)
    store._last_sweep = ""
    store.sweep()
    assert [path.name for path in staged if path.exists()] == [staged[1].name]
    # the one left still serves a recipe; the swept one is missing again
    assert put_recipe(bob, "stale/x", blocks).json()["missing"] == [staged[0].name]
