"""The published client's default storage host, ``Digi``, both ways (issue 16 §3): an object the published client
registers there reaches the engine, and a folder the engine commits there is what the published client downloads.

Digi Storage cannot be reached from here: both sides talk to a Koofr-API server on loopback
(``tests/storage/koofr_server.py``) — oaiod through rclone's real koofr remote with only its endpoint swapped
(``DIGI_ENDPOINT``), the published client through its own ``DigiApi`` with only its fixed host swapped (a subclass
put in its registry under ``Digi``). What the real service does beyond the modelled API is not verified.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.engine.conftest import converge, tree, write
from tests.hub.test_ae_client_flow import _close
from tests.storage.koofr_server import KoofrServer, start_koofr

pytestmark = [pytest.mark.integration, pytest.mark.skipif(shutil.which("rclone") is None, reason="needs rclone")]

DIGI = {"root_folder": "oaio", "email": "alice@example.org", "password": "digi secret"}


@pytest.fixture
def digi(hub: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[KoofrServer]:
    """The hub hands out ``Digi`` with the published client's arguments; both clients reach the loopback server."""
    import ae.cloud_storage

    from oaiod.storage import digi as oaiod_digi

    server = start_koofr(tmp_path / "koofr", DIGI["email"], DIGI["password"])

    class LoopbackDigiApi(ae.cloud_storage.DigiApi):  # type: ignore[misc]
        base_url = property(lambda self: server.url, lambda self, value: None)

    monkeypatch.setitem(ae.cloud_storage._registered_csh_classes, "Digi", LoopbackDigiApi)
    monkeypatch.setattr(oaiod_digi, "DIGI_ENDPOINT", server.url)
    hub.service.set_storage("Digi", DIGI)
    yield server
    server.stop()


def published(hub: Any, root: Path) -> Any:
    from ae.oaio_client import OaioClient

    client = OaioClient(
        hub.host, {"username": "alice", "password": hub.users["alice"]}, app_id="digiapp", device_id="pc",
        client_root=str(root),
    )  # fmt: skip
    assert client.csh_default_id == "Digi"  # its default: no csh_id given anywhere below
    assert client.synchronize_with_server_if_online(), client.error_message
    return client


def test_a_file_object_the_published_client_puts_on_digi_reaches_the_engine(
    digi: KoofrServer, hub: Any, make_device: Any, tmp_path: Path
) -> None:
    a = make_device("alice", "a")
    converge(a)
    client = published(hub, tmp_path / "pub")
    try:
        obj = client.register_file("doc.txt", file_content=b"on digi")
        assert obj and obj.csh_id == "Digi", client.error_message
        stored = digi.root / DIGI["root_folder"] / obj.oaio_id / obj.client_stamp / "doc.txt"
        assert stored.read_bytes() == b"on digi"  # where the published client put it
        converge(a)
        assert (a.root / "filez" / obj.oaio_id / "doc.txt").read_bytes() == b"on digi"
        assert a.engine.status().errors == []
        client.update_file(obj.oaio_id, file_content=b"v2 on digi")  # no manifest: the history takes hashes from
        converge(a)  # the index, where a hashed what it downloaded
        assert (a.root / "filez" / obj.oaio_id / "doc.txt").read_bytes() == b"v2 on digi"
        changes = [(r.action, r.path, r.device) for r in a.engine.history(path=a.root / "filez" / obj.oaio_id)]
        assert changes == [("changed", "doc.txt", "pc"), ("added", "doc.txt", "pc")]
    finally:
        _close(client)


def test_a_folder_the_engine_commits_to_digi_is_what_the_published_client_downloads(
    digi: KoofrServer, hub: Any, make_device: Any, tmp_path: Path
) -> None:
    a = make_device("alice", "a", csh_id="Digi")
    shared = tmp_path / "plain-folder"
    write(shared / "f1.txt", "one")
    write(shared / "sub" / "f2 ä.txt", "two")
    oaio_id = a.engine.add_folder(shared)
    converge(a)
    row = a.engine.repo.get_object(oaio_id)
    assert row.csh_id == "Digi"
    assert (digi.root / DIGI["root_folder"] / oaio_id / row.synced_stamp / "sub" / "f2 ä.txt").read_text() == "two"
    expected = tree(shared)
    shutil.rmtree(shared)
    client = published(hub, tmp_path / "pub")
    try:
        assert tree(shared) == expected
    finally:
        _close(client)
