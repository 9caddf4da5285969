"""Interop with the published ``ae-oaio-client`` both ways, and crash recovery of an interrupted commit.

The published client's storage host is ``LocalApi`` from the hub's conformance test (a ``CshApiBase`` over the same
storage folder, registered as ``Local``). Crashes are injected at the server-API boundary: a wrapper raises a
``BaseException`` (as a ``kill -9`` would stop the process) just before or just after ``upload/``.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any, cast

import pytest
from ae.oaio_client import OaioClient

from oaiod.engine.context import ServerApi
from oaiod.engine.cycle import SyncEngine
from oaiod.state import StateRepo
from oaiod.storage import open_backend
from tests.engine.conftest import converge, tree, write
from tests.hub.test_ae_client_flow import LocalApi, _close, published_client

pytestmark = pytest.mark.integration
assert LocalApi.__name__ == "LocalApi"  # importing it registers the csh id "Local" with the published client


def _client(hub: Any, tmp_path: Path, device: str) -> OaioClient:
    return published_client(hub, tmp_path / f"pub-{device}", "alice", device, "pubapp")


def test_objects_of_the_published_client_reach_the_engine(hub, make_device, tmp_path) -> None:
    a, b = make_device("alice", "a"), make_device("alice", "b")
    converge(a, b)
    client = _client(hub, tmp_path, "pc")
    try:
        file_obj = client.register_file("doc.txt", file_content=b"from the app")
        folder = a.root / "appfolder"
        write(folder / "x" / "one.txt", "one")
        folder_obj = client.register_folder(str(folder))
        data_obj = client.register_object({"_name": "settings", "colour": "blue"})
        assert file_obj and folder_obj and data_obj, client.error_message
        converge(a, b)
        assert (a.root / "filez" / file_obj.oaio_id / "doc.txt").read_bytes() == b"from the app"
        assert (b.root / "filez" / file_obj.oaio_id / "doc.txt").read_bytes() == b"from the app"
        # on a the folder is where the app said (inside a's root), on b it is mapped under b's root
        assert (b.root / "appfolder" / "x" / "one.txt").read_text() == "one"
        assert b.engine.repo.get_object(data_obj.oaio_id).synced_values["colour"] == "blue"
        # the app updates its file: the engine follows (the manifest is stale: downloaded and hashed)
        client.update_file(file_obj.oaio_id, file_content=b"v2 from the app")
        converge(b)
        assert (b.root / "filez" / file_obj.oaio_id / "doc.txt").read_bytes() == b"v2 from the app"
        assert tree(a.root)["appfolder/x/one.txt"] == b"one"
    finally:
        _close(client)


def test_what_the_engine_uploads_the_published_client_downloads(hub, make_device, tmp_path) -> None:
    a = make_device("alice", "a")
    shared = tmp_path / "plain-folder"
    write(shared / "f1.txt", "one")
    write(shared / "sub" / "f2.txt", "two")
    a.engine.add_folder(shared)
    converge(a)
    write(shared / "f1.txt", "one v2")  # second version: f2 is copied on storage, not re-sent
    reports = converge(a)
    assert sum(r.copies for r in reports) == 1 and sum(r.uploads for r in reports) == 1
    expected = tree(shared)
    shutil.rmtree(shared)
    client = _client(hub, tmp_path, "pc")
    try:
        assert tree(shared) == expected
    finally:
        _close(client)


class _Crash(BaseException):
    """Stands for the process dying (kill -9): nothing after it runs."""


class _CrashingApi:
    """The real server API, but ``upload`` dies just before (``after=False``) or just after the request (every other
    call passes through ``__getattr__``, so it is a :class:`ServerApi` by a cast)."""

    def __init__(self, api: Any, after: bool) -> None:
        self._api, self._after = api, after

    def upload(self, obj: Any) -> Any:
        if self._after:
            self._api.upload(obj)
        raise _Crash()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._api, name)


@pytest.mark.parametrize("after", [False, True], ids=["before-commit-point", "after-commit-point"])
def test_interrupted_commit_recovers(make_device, storage_root, after: bool) -> None:
    a, b = make_device("alice", "a"), make_device("alice", "b")
    write(a.root / "f.txt", "v1")
    write(a.root / "g.txt", "unchanged")
    converge(a, b)
    write(a.root / "f.txt", "v2")
    api = cast(ServerApi, _CrashingApi(a.api, after))
    crashing = SyncEngine(a.engine.settings, a.engine.repo, api, open_backend)
    crashing.rescan()
    with pytest.raises(_Crash):
        crashing.sync_cycle()
    (entry,) = a.engine.repo.journal()
    prefix = storage_root / entry.oaio_id / entry.stamp
    assert (prefix / "f.txt").exists()  # the files were put before the crash
    # a fresh engine on the same state converges
    a.engine.repo.close()
    a.engine = SyncEngine(a.engine.settings, StateRepo(a.engine.settings.state_dir), a.api, open_backend)
    converge(a, b)
    assert a.engine.repo.journal() == []
    assert b.tree() == a.tree() == {"f.txt": b"v2", "g.txt": b"unchanged"}
    assert prefix.exists() == after  # an uncommitted prefix is garbage, a committed one is the version
