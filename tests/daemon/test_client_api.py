"""``oaiod.client``, the Python API for apps, and ``ctl values|new|put`` against real daemons on a real hub.

An app (the test, as a script would) registers a data object, a file object and a folder object through one
daemon; they reach a second daemon of the same user and the published client (``ae-oaio-client`` on the same hub
and Local storage folder); values edited on both devices merge by key, and a key changed on both is a clash the
app is told about; ``unregister_object(wipe_files=True)`` deletes the objects on the server and their files on the
storage host and on the app's device. Errors are typed. Nothing is mocked.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
from daemon_helpers import DaemonProcess, wait_for
from e2e_helpers import Cluster, HoldProxy, Stopwatch, first_cycles, local_path, report, root_of, write_tree

from oaiod import client
from oaiod.model import object_id
from tests.hub.test_ae_client_flow import LocalApi, _close
from tests.hub.test_ae_client_flow import published_client as ae_client

pytestmark = pytest.mark.integration
assert LocalApi.__name__ == "LocalApi"  # importing it registers the csh id "Local" with the published client


def _listed(proc: DaemonProcess) -> dict[str, dict[str, Any]]:
    """The objects ``proc`` syncs (not the folders it keeps excluded: an object deleted elsewhere leaves its files
    on this device, design §1)."""
    return {row["oaio_id"]: row for row in proc.call("ls") if row["kind"] != "excluded"}


def _ctl(proc: DaemonProcess, *args: str) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "oaiod.daemon.cli", "--config", str(proc.config_file), "ctl", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False)


def _collect(app: client.Client, into: list[client.Change]) -> threading.Thread:
    """Read ``app.changes()`` in a thread (it runs until the daemon stops)."""

    def read() -> None:
        try:
            for change in app.changes():
                into.append(change)
        except client.ClientError:
            return  # the daemon stopped at the end of the test

    thread = threading.Thread(target=read, daemon=True)
    thread.start()
    return thread


def test_app_objects_through_the_daemon(cluster: Cluster) -> None:
    a, b = cluster.start("dev-a"), cluster.start("dev-b")
    first_cycles(a, b)
    app, other = client.connect(a.config_file), client.connect(b.config_file)
    seen_by_a: list[client.Change] = []
    seen_by_b: list[client.Change] = []
    _collect(app, seen_by_a)
    _collect(other, seen_by_b)

    # an app registers a data object, a file object and a folder object through device A's daemon
    watch = Stopwatch()
    data = app.register_object({"_name": "settings", "colour": "blue"})
    report(f"oaiod.client register_object (registered on the hub): {watch.seconds():.2f} s")
    watch = Stopwatch()
    doc = app.register_file("doc.txt", file_content=b"from the app")
    folder = cluster.base / "app-folder"
    write_tree(folder, {"a.txt": "one", "sub/b.txt": "two"})
    shelf = app.register_folder(folder)
    assert data.registered and doc.registered and shelf.registered, (data, doc, shelf)
    assert (root_of(a) / "filez" / doc.oaio_id / "doc.txt").read_bytes() == b"from the app"
    kinds = {info.oaio_id: info for info in app.objects()}
    assert kinds[data.oaio_id].kind == "data" and kinds[data.oaio_id].name == "settings"
    assert kinds[data.oaio_id].values == {"_name": "settings", "colour": "blue"}
    assert kinds[doc.oaio_id].kind == "files" and kinds[shelf.oaio_id].kind == "folder"

    # they reach device B ...
    b_doc = local_path(b, doc.oaio_id) / "doc.txt"
    wait_for(lambda: b_doc.is_file() and b_doc.read_bytes() == b"from the app", 120, "the file object on B")
    report(f"oaiod.client register_file (and a folder) on A -> the file on B: {watch.seconds():.2f} s")
    b_folder = local_path(b, shelf.oaio_id)
    wait_for(lambda: (b_folder / "sub/b.txt").is_file(), 120, "the folder object on B")
    wait_for(lambda: data.oaio_id in _listed(b), 120, "the data object on B")
    assert other.values(data.oaio_id) == {"_name": "settings", "colour": "blue"}
    wait_for(lambda: {data.oaio_id, doc.oaio_id} <= {c.oaio_id for c in seen_by_b if c.change == "new"}, 60, "news")

    # ... and the published client
    published = ae_client(cluster.hub, cluster.base / "pub", "alice", "pc", "pubapp")
    try:
        objects = published.client_objectz
        assert objects[data.oaio_id].client_values["colour"] == "blue"
        assert (Path(published.client_root) / "filez" / doc.oaio_id / "doc.txt").read_bytes() == b"from the app"
        assert shelf.oaio_id in objects
    finally:
        _close(published)

    # an update of the file reaches B
    app.update_file(doc.oaio_id, file_content=b"v2 from the app")
    wait_for(lambda: b_doc.read_bytes() == b"v2 from the app", 120, "the file's update on B")

    # both devices edit values while neither syncs: different keys merge, the same key is a clash
    a.call("pause")
    b.call("pause")
    app.update_object(data.oaio_id, {"colour": "red", "shape": "round"})
    other.update_object(data.oaio_id, {"colour": "green", "size": 3})
    assert other.values(data.oaio_id)["colour"] == "green"  # this device's view, not committed yet
    a.call("resume")
    app.wait_synced()
    b.call("resume")
    synced = other.wait_synced()
    app.wait_synced()
    merged = {"_name": "settings", "colour": "red", "shape": "round", "size": 3}
    assert app.values(data.oaio_id) == merged and other.values(data.oaio_id) == merged
    assert [(c.oaio_id, c.key) for c in synced.clashes] == [(data.oaio_id, "colour")]
    assert '"green"' in synced.clashes[0].detail and '"red"' in synced.clashes[0].detail
    wait_for(lambda: any(c.change == "clash" and c.key == "colour" for c in seen_by_b), 30, "the clash in changes()")
    wait_for(lambda: any(c.change == "updated" and c.oaio_id == data.oaio_id for c in seen_by_a), 30, "B's edit")

    # a key deleted on one device is deleted on the other
    other.update_object(data.oaio_id, {}, unset=["shape"])
    other.wait_synced()
    wait_for(lambda: "shape" not in app.values(data.oaio_id), 60, "the deleted key on A")

    # unregister with wipe_files: gone from the server, the storage host, A's disk; B stops syncing them (its copies
    # stay on its disk, as after any deletion by another device: design §1)
    for registered in (data, doc, shelf):
        app.unregister_object(registered.oaio_id, wipe_files=True)
    assert not (root_of(a) / "filez" / doc.oaio_id).exists() and not folder.exists()
    for registered in (data, doc, shelf):
        assert not (cluster.storage / registered.oaio_id).exists()
    gone = {data.oaio_id, doc.oaio_id, shelf.oaio_id}
    wait_for(lambda: not gone & _listed(b).keys(), 120, "the objects gone from B")
    wait_for(lambda: gone <= {c.oaio_id for c in seen_by_b if c.change == "deleted"}, 30, "deletions in changes()")
    published = ae_client(cluster.hub, cluster.base / "pub2", "alice", "pc2", "pubapp")
    try:
        assert not gone & published.client_objectz.keys()
    finally:
        _close(published)


def test_update_object_sync_raises_the_clash(cluster: Cluster) -> None:
    """``update_object(…, sync=True)`` waits for the commit and raises ``ValuesClash`` when another device changed
    the same key first: B's commit is held at the proxy while A commits, so B's meets a 409, merges and loses."""
    proxy = HoldProxy(cluster.hub.url)
    try:
        a, b = cluster.start("dev-a"), cluster.start("dev-b", url=proxy.url)
        first_cycles(a, b)
        app, other = client.connect(a.config_file), client.connect(b.config_file)
        data = app.register_object({"_name": "shared-prefs", "colour": "blue"})
        wait_for(lambda: data.oaio_id in _listed(b) and _listed(b)[data.oaio_id]["stamp"], 120, "the object on B")
        proxy.arm("delay")
        raised: list[BaseException] = []

        def edit_on_b() -> None:
            try:
                other.update_object(data.oaio_id, {"colour": "white"}, sync=True)
            except client.ClientError as exc:
                raised.append(exc)

        editing = threading.Thread(target=edit_on_b)
        editing.start()
        assert proxy.held.wait(120), "B's commit did not reach the proxy"
        assert app.update_object(data.oaio_id, {"colour": "black"}, sync=True)["colour"] == "black"
        proxy.release()
        editing.join(180)
        assert len(raised) == 1 and isinstance(raised[0], client.ValuesClash), raised
        assert [clash.key for clash in raised[0].clashes] == ["colour"]
        assert other.values(data.oaio_id)["colour"] == "black"  # the first committed value stays (design §5)
    finally:
        proxy.close()


def test_errors_are_typed(cluster: Cluster) -> None:
    with pytest.raises(client.NotRunning):
        client.connect(cluster.config("dev-off"))
    a = cluster.start("dev-a")
    first_cycles(a)
    app = client.connect(a.config_file)
    with pytest.raises(client.NotFound):
        app.values("nothing-is-called-this")
    unknown = object_id("alice", "dev-a", "app", "20240101000000000000", {"_name": "no-such-object"})
    with pytest.raises(client.NotFound) as caught:
        app.update_object(unknown, {"k": 1})
    assert caught.value.failure == "not_found"
    data = app.register_object({"_name": "typed"})
    with pytest.raises(client.Refused):
        app.update_object(data.oaio_id, {"_oaiod": {}})  # managed by oaiod
    with pytest.raises(client.Refused):
        app.update_file(data.oaio_id, file_content=b"x")  # not a file object


def test_ctl_values_new_put(cluster: Cluster, tmp_path: Path) -> None:
    a = cluster.start("dev-a")
    first_cycles(a)
    made = _ctl(a, "new", "--values", "_name=prefs", "--values", "count=3", "--json")
    assert made.returncode == 0, made.stderr
    oaio_id = json.loads(made.stdout)["oaio_id"]
    changed = _ctl(a, "values", oaio_id, "--set", "count=4", "--set", "label=hello world", "--unset", "nope")
    assert changed.returncode == 0, changed.stderr
    assert "count: 4" in changed.stdout and "label: hello world" in changed.stdout
    shown = json.loads(_ctl(a, "values", "prefs", "--json").stdout)  # OBJ: an app's object by its _name
    assert shown == {"_name": "prefs", "count": 4, "label": "hello world"}
    note = tmp_path / "note.md"
    note.write_text("# a note\n")
    put = _ctl(a, "put", str(note), "--name", "my note", "--json")
    assert put.returncode == 0, put.stderr
    file_id = json.loads(put.stdout)["oaio_id"]
    assert (root_of(a) / "filez" / file_id / "note.md").read_text() == "# a note\n"
    listing = _ctl(a, "ls")
    assert listing.returncode == 0, listing.stderr
    assert "prefs" in listing.stdout and "count=4, label=hello world" in listing.stdout
    assert "my note" in listing.stdout
    assert max(len(line) for line in listing.stdout.splitlines()) <= 80
    missing = _ctl(a, "values", "no-such-thing")
    assert missing.returncode == 1 and "not synced here" in missing.stderr
