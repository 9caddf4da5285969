"""End to end with the published ``ae-oaio-client`` (0.3.19, unchanged): what it registers reaches a running
daemon at the right place, and what a daemon syncs it downloads. Its storage host is ``LocalApi`` from the hub's
conformance test (a ``CshApiBase`` over the same Local storage folder the daemons use, registered as ``Local``).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
from ae.oaio_client import OaioClient
from daemon_helpers import wait_for
from e2e_helpers import Cluster, first_cycles, root_of, tree, wait_committed, write_tree

from tests.hub.test_ae_client_flow import LocalApi, _close
from tests.hub.test_ae_client_flow import published_client as ae_client

pytestmark = pytest.mark.integration
assert LocalApi.__name__ == "LocalApi"  # importing it registers the csh id "Local" with the published client


def published_client(hub: Any, folder: Path, device: str) -> OaioClient:
    return ae_client(hub, folder / f"pub-{device}", "alice", device, "pubapp")


def test_published_client_and_daemon_interoperate(cluster: Cluster) -> None:
    a = cluster.start("dev-a")
    first_cycles(a)
    client = published_client(cluster.hub, cluster.base, "pc")
    try:
        file_obj = client.register_file("doc.txt", file_content=b"from the app")
        data_obj = client.register_object({"_name": "settings", "colour": "blue"})
        assert file_obj and data_obj, client.error_message
        doc = root_of(a) / "filez" / file_obj.oaio_id / "doc.txt"
        wait_for(lambda: doc.is_file() and doc.read_bytes() == b"from the app", 120, "the app's file on the daemon")
        assert client.update_file(file_obj.oaio_id, file_content=b"v2 from the app"), client.error_message
        wait_for(lambda: doc.read_bytes() == b"v2 from the app", 120, "the app's update on the daemon")
        listed = {row["oaio_id"]: row for row in a.call("ls")}
        assert listed[data_obj.oaio_id]["kind"] == "data" and listed[file_obj.oaio_id]["right"] == "C"
    finally:
        _close(client)

    plain = cluster.base / "plain-folder"
    write_tree(plain, {"f1.txt": "one", "sub/f2.txt": "two", "sub/deeper/f3.bin": bytes(range(256)) * 100})
    folder_id = a.call("add", path=str(plain), wait=True)["oaio_id"]
    wait_committed(cluster, folder_id, plain)
    (plain / "f1.txt").write_text("one v2")  # a second version: the others are server-side copies
    wait_committed(cluster, folder_id, plain)
    expected = tree(plain)
    assert a.stop() == 0
    shutil.rmtree(plain)
    client = published_client(cluster.hub, cluster.base, "pc2")  # syncing downloads every object to its root
    _close(client)
    assert tree(plain) == expected
