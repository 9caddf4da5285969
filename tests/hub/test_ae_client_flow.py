"""Conformance: the published ``ae-oaio-client`` 0.3.19 drives the hub through the whole flow of issue 2 §6.

The client is used unchanged; its storage host is :class:`LocalApi`, a small ``CshApiBase`` over a local
folder, registered on the hub under the csh id ``Local`` (the client maps ``Local`` to ``LocalApi`` by name).
"""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from ae.cloud_storage import CshApiBase
from ae.oaio_client import OaioClient

from oaiod.hub.server import HubServer

pytestmark = pytest.mark.integration


class LocalApi(CshApiBase):
    """A cloud storage host over a local folder (``root_folder``), as the client's storage interface wants it."""

    def __init__(self, root_folder: str = "", **csh_args: Any) -> None:
        super().__init__(**csh_args)
        self.root = Path(root_folder)

    def _path(self, file_path: str) -> Path:
        path = (self.root / file_path.strip("/")).resolve()
        if self.root.resolve() not in (path, *path.parents):
            raise ValueError(f"{file_path!r} leaves the storage root")
        return path

    def deployed_file_content(self, file_path: str) -> bytes | None:
        try:
            return self._path(file_path).read_bytes()
        except (OSError, ValueError) as exc:
            self.error_message = f"LocalApi: cannot read {file_path!r}: {exc}"
            return None

    def deploy_file(self, file_path: str, source_path: str = "") -> str:
        try:
            target = self._path(file_path)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source_path or file_path, target)
        except (OSError, ValueError) as exc:
            self.error_message = f"LocalApi: cannot deploy {file_path!r}: {exc}"
            return ""
        return file_path

    def delete_file_or_folder(self, file_path: str) -> str:
        try:
            path = self._path(file_path)
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink()
        except (OSError, ValueError) as exc:
            self.error_message = f"LocalApi: cannot delete {file_path!r}: {exc}"
            return self.error_message
        return ""


def published_client(hub: HubServer, root: Path, username: str, device: str, app_id: str) -> OaioClient:
    """The published client logged in to ``hub`` as ``username`` (Local storage, client root ``root``), synced."""
    client = OaioClient(
        hub.host,
        {"username": username, "password": hub.users[username]},  # type: ignore[attr-defined]
        app_id=app_id,
        device_id=device,
        csh_default_id="Local",
        client_root=str(root),
    )
    assert client.synchronize_with_server_if_online(), client.error_message
    return client


def _client(hub: HubServer, tmp_path: Path, username: str, device: str) -> OaioClient:
    return published_client(hub, tmp_path / f"client-{username}", username, device, "flowapp")


def _close(client: OaioClient) -> None:
    """Log out now, so the client's ``__del__`` does not talk to a stopped hub later."""
    if client.connected:
        client._request("post", "logout/")
        client.connected = False


class CliAdmin:
    """The admin side of a hub process, through ``oaiod hub …`` commands on its data dir (nothing in-process)."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir

    def run(self, *args: str, stdin: str | None = None) -> str:
        command = [sys.executable, "-m", "oaiod.cli", "hub", *args, "--data-dir", str(self.data_dir)]
        done = subprocess.run(command, input=stdin, capture_output=True, text=True, timeout=120, check=False)
        assert done.returncode == 0, done.stderr
        return done.stdout

    def set_storage(self, csh_id: str, args: dict[str, str]) -> None:
        self.run("storage", "set", csh_id, *(f"{key}={value}" for key, value in args.items()))

    def list_users(self) -> list[dict[str, str]]:
        return [{"username": line.split("\t")[0]} for line in self.run("user", "list").splitlines() if line]


class ServedHub:
    """A real ``oaiod hub serve`` process, looking like the ``hub`` fixture to the flow below."""

    def __init__(self, data_dir: Path) -> None:
        self.service = CliAdmin(data_dir)
        self.users = {name: f"pw-{name}-0123" for name in ("alice", "bob", "carol")}
        for name, password in self.users.items():
            flags = ["--supervisor"] if name == "alice" else []
            self.service.run("user", "add", name, *flags, "--password-stdin", stdin=password + "\n")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "oaiod.cli", "hub", "serve", "--data-dir", str(data_dir), "--port", "0"],
            stderr=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            text=True,
        )
        lines: list[str] = []
        listening = threading.Event()

        def read() -> None:
            assert self.process.stderr is not None
            for line in self.process.stderr:
                lines.append(line)
                if "oaiod hub listening on" in line:
                    listening.set()

        threading.Thread(target=read, daemon=True).start()
        assert listening.wait(60), "".join(lines)
        found = re.search(r"oaiod hub listening on (http://(\S+)/api/)", "".join(lines))
        assert found is not None
        self.url, self.host = found.group(1), found.group(2)

    def stop(self) -> None:
        self.process.send_signal(signal.SIGINT)
        self.process.wait(timeout=30)


@pytest.fixture
def served_hub(tmp_path: Path) -> Iterator[ServedHub]:
    hub = ServedHub(tmp_path / "hub-data")
    yield hub
    hub.stop()


def test_published_client_whole_flow_against_oaiod_hub_serve(
    served_hub: ServedHub, tmp_path: Path, hub_session: Callable[..., Any]
) -> None:
    """The same flow against a real ``oaiod hub serve`` process set up with the admin CLI only."""
    test_published_client_whole_flow(served_hub, tmp_path, hub_session)  # type: ignore[arg-type]


def test_published_client_whole_flow(hub: HubServer, tmp_path: Path, hub_session: Callable[..., Any]) -> None:
    storage_root = tmp_path / "csh-local"
    storage_root.mkdir()
    assert hub.service is not None
    hub.service.set_storage("Local", {"root_folder": str(storage_root)})
    alice = _client(hub, tmp_path, "alice", "alicedevice")

    # register an object, a file and a folder
    obj = alice.register_object({"_name": "note", "text": "hello"})
    assert obj is not None, alice.error_message
    file_obj = alice.register_file("doc.txt", file_content=b"version 1")
    assert file_obj is not None, alice.error_message
    folder = tmp_path / "shared-folder"
    (folder / "sub").mkdir(parents=True)
    (folder / "a.txt").write_bytes(b"a1")
    (folder / "sub" / "b.txt").write_bytes(b"b1")
    folder_obj = alice.register_folder(str(folder))
    assert folder_obj is not None, alice.error_message
    assert (storage_root / file_obj.oaio_id / file_obj.client_stamp / "doc.txt").read_bytes() == b"version 1"
    assert (storage_root / folder_obj.oaio_id / folder_obj.client_stamp / "sub" / "b.txt").read_bytes() == b"b1"

    # update each
    alice.update_object(obj.oaio_id, {"text": "hello again"})
    alice.update_file(file_obj.oaio_id, file_content=b"version 2")
    (folder / "c.txt").write_bytes(b"c1")
    alice.update_folder(folder_obj.oaio_id)
    assert alice.error_message == ""
    listed = {o["oaio_id"]: o for o in hub_session(hub, "alice").get("oaio_stampz/").json()}
    assert listed[obj.oaio_id]["client_values"]["text"] == "hello again"
    assert listed[obj.oaio_id]["server_values"]["text"] == "hello"
    assert sorted(listed[folder_obj.oaio_id]["client_values"]["_file_paths"]) == ["a.txt", "c.txt", "sub/b.txt"]
    assert {o["csh_access_right"] for o in listed.values()} == {"C"}

    # subscribe a second user who syncs, updates and is seen by the first
    assert alice.upsert_subscription(obj.oaio_id, "bob", "U") > 0, alice.error_message
    assert alice.upsert_subscription(file_obj.oaio_id, "bob", "r") > 0, alice.error_message
    assert alice.upsert_subscription(folder_obj.oaio_id, "bob", "r") > 0, alice.error_message
    bob = _client(hub, tmp_path, "bob", "bobdevice")
    assert set(bob.client_objectz) == {obj.oaio_id, file_obj.oaio_id, folder_obj.oaio_id}
    bob_file = tmp_path / "client-bob" / "filez" / file_obj.oaio_id / "doc.txt"
    assert bob_file.read_bytes() == b"version 2"
    bob.update_object(obj.oaio_id, {"text": "bob was here"})
    assert bob.error_message == ""
    assert alice.synchronize_with_server_if_online(), alice.error_message
    assert alice.client_objectz[obj.oaio_id].client_values["text"] == "bob was here"

    # userz_access
    access = {entry["username"]: entry["access_right"] for entry in alice.userz_access(obj.oaio_id)}
    assert access == {"alice": "C", "bob": "U", "carol": "x"}
    assert {entry["access_right"] for entry in alice.userz_access("")} == {"x"}

    # unsubscribe: alice removes bob from the file, bob leaves the folder himself
    assert alice.unsubscribe(file_obj.oaio_id, "bob") == ""
    assert bob.unsubscribe(folder_obj.oaio_id, "bob") == ""
    bob_ids = {o["oaio_id"] for o in hub_session(hub, "bob").get("oaio_stampz/").json()}
    assert bob_ids == {obj.oaio_id}

    # unregister with wipe_files
    file_stamp = alice.client_objectz[file_obj.oaio_id].client_stamp
    assert alice.unregister_object(file_obj.oaio_id, wipe_files=True) == ""
    assert not (storage_root / file_obj.oaio_id / file_stamp).exists()
    assert not (tmp_path / "client-alice" / "filez" / file_obj.oaio_id).exists()
    alice_ids = {o["oaio_id"] for o in hub_session(hub, "alice").get("oaio_stampz/").json()}
    assert alice_ids == {obj.oaio_id, folder_obj.oaio_id}

    # wipe_user
    _close(bob)
    assert alice.wipe_user("bob") == ""
    assert "bob" not in {u["username"] for u in hub.service.list_users()}
    access = {entry["username"]: entry["access_right"] for entry in alice.userz_access(obj.oaio_id)}
    assert access == {"alice": "C", "carol": "x"}
    _close(alice)
