"""``oaiod hub migrate``: an embedded hub (SQLite, blobs in its data folder) moves to PostgreSQL (``--to-db``) and
to an S3 bucket (``--to-blob-store s3``, moto or MinIO), each interrupted once and resumed; afterwards a hub on
the new places serves everything, and the old data is still there.

The interruption is a ``KeyboardInterrupt`` raised from the progress callback (what Ctrl-C does to the command):
the migration runs in this process, as the CLI runs it, against the real databases and bucket."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from click.testing import CliRunner

from oaiod.cli import main
from oaiod.hub.blobcontent import LocalContent, open_content_store
from oaiod.hub.migration import copy_contents, copy_database, named_contents
from oaiod.hub.server import HubServer
from oaiod.hub.settings import BlobStoreSettings
from tests.hub.blobhelpers import B, download, put_blob, put_large, sha, store_blocks
from tests.hub.objects import new_object

pytestmark = [pytest.mark.integration]


def target_args(settings: BlobStoreSettings) -> list[str]:
    return ["--to-blob-store", "s3", "--to-s3-bucket", settings.s3_bucket, "--to-s3-endpoint",
            settings.s3_endpoint, "--to-s3-prefix", settings.s3_prefix, "--to-s3-credentials-file",
            str(settings.s3_credentials_file)]  # fmt: skip


def filled_hub(hub_factory: Callable[..., HubServer], hub_session: Callable[..., Any]) -> tuple[HubServer, dict]:
    """A stopped embedded hub with objects, a subscription and blobs; what it holds, to compare with later."""
    hub = hub_factory()
    alice, bob = hub_session(hub, "alice"), hub_session(hub, "bob")
    shared = alice.post("register/", json=new_object("alice", "shared")).json()
    assert alice.post("subscribe/", json={"oaio_id": shared["oaio_id"], "username": "bob", "access_right": "r"}).ok
    bob.post("register/", json=new_object("bob", "own"))
    blobs = {f"scratch/f{number}": bytes([number]) * (1000 + number) for number in range(6)}
    blobs["scratch/big"] = b"b" * (3 * 1024 * 1024)
    for name, data in blobs.items():
        (put_large if len(data) > 60_000 else put_blob)(alice, name, data)
    put_blob(alice, "scratch/same", blobs["scratch/f1"])  # content stored once, named twice
    blobs["scratch/same"] = blobs["scratch/f1"]
    blocks = [bytes([number]) * 70_000 for number in range(3)]
    store_blocks(alice, "scratch/by-blocks", blocks)  # stored as its 3 blocks
    blobs["scratch/by-blocks"] = b"".join(blocks)
    held = {"alice": sorted(o["oaio_id"] for o in alice.get("oaio_stampz/").json()),
            "bob": sorted(o["oaio_id"] for o in bob.get("oaio_stampz/").json()), "blobs": blobs}  # fmt: skip
    hub.stop()
    return hub, held


def check_served(hub: HubServer, hub_session: Callable[..., Any], held: dict) -> None:
    alice, bob = hub_session(hub, "alice"), hub_session(hub, "bob")  # the passwords moved with the users
    assert sorted(o["oaio_id"] for o in alice.get("oaio_stampz/").json()) == held["alice"]
    assert sorted(o["oaio_id"] for o in bob.get("oaio_stampz/").json()) == held["bob"]
    for name, data in held["blobs"].items():
        assert download(alice, name).content == data, name
    assert alice.post("register/", json=new_object("alice", "after the move")).ok  # ids continue past the copied
    put_blob(alice, "scratch/new", b"after the move")
    assert alice.get(B + "metadata/scratch/new").json()["sha256"] == sha(b"after the move")


def interrupt_at(what: str) -> Callable[[str, int, int], None]:
    def progress(name: str, done: int, _total: int) -> None:
        if name == what and done > 0:
            raise KeyboardInterrupt

    return progress


@pytest.mark.postgres
def test_database_moves_to_postgresql_resuming_after_an_interruption(
    hub_factory: Callable[..., HubServer], hub_session: Callable[..., Any], postgres_url: str
) -> None:
    hub, held = filled_hub(hub_factory, hub_session)
    source = hub.settings.database_url
    with pytest.raises(KeyboardInterrupt):
        copy_database(source, postgres_url, interrupt_at("subscriptions"))
    result = CliRunner().invoke(main, ["hub", "migrate", "--data-dir", str(hub.data_dir)],
                                env={"OAIOD_HUB_MIGRATE_TO_DB": postgres_url})  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "row counts match" in result.output and "were there already" in result.output
    again = copy_database(source, postgres_url)  # a third run finds everything done
    assert sum(again.copied.values()) == 0 and again.skipped["users"] == 3
    moved = hub_factory(db_url=postgres_url, data_dir=hub.data_dir, users=False)
    moved.users = hub.users
    check_served(moved, hub_session, held)
    assert (hub.data_dir / "hub.sqlite3").exists()  # the old database stays until the operator deletes it


def test_contents_move_to_a_bucket_resuming_after_an_interruption(
    hub_factory: Callable[..., HubServer], hub_session: Callable[..., Any], hub_bucket: Any
) -> None:
    hub, held = filled_hub(hub_factory, hub_session)
    target_settings = hub_bucket.settings()
    target = open_content_store(target_settings, hub.data_dir)
    contents = named_contents(hub.settings.database_url)
    assert len(contents) == 10  # 9 names, one content named twice, one stored as 3 blocks
    local = LocalContent(hub.data_dir / "blobs")
    with pytest.raises(KeyboardInterrupt):
        copy_contents(local, target, contents, hub.data_dir / "blobs" / "uploads", interrupt_at("contents"))
    assert 0 < len(list(target.iter_content())) < 10
    where = ["--data-dir", str(hub.data_dir)]
    result = CliRunner().invoke(main, ["hub", "migrate", *where, *target_args(target_settings)])
    assert result.exit_code == 0, result.output
    assert "were there already" in result.output and " 0 were there already" not in result.output
    assert sorted(target.iter_content()) == sorted(sha256 for sha256, _size in contents)
    assert sorted(local.iter_content()) == sorted(sha256 for sha256, _size in contents)  # the old data stays
    moved = hub_factory(data_dir=hub.data_dir, users=False, blob_store=target_settings)
    moved.users = hub.users
    check_served(moved, hub_session, held)


def test_a_corrupt_local_content_is_reported_not_copied(
    hub_factory: Callable[..., HubServer], hub_session: Callable[..., Any], hub_bucket: Any
) -> None:
    hub = hub_factory()
    put_blob(hub_session(hub, "alice"), "scratch/a", b"good bytes")
    hub.stop()
    (hub.data_dir / "blobs" / "sha256" / sha(b"good bytes")[:2] / sha(b"good bytes")).write_bytes(b"bit rot")
    result = CliRunner().invoke(main, ["hub", "migrate", "--data-dir", str(hub.data_dir),
                                       *target_args(hub_bucket.settings())])  # fmt: skip
    assert result.exit_code == 1 and "do not match their sha256" in result.output
    assert sha(b"good bytes") in result.output
