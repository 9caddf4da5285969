"""``HubBackend.put_many``/``get_many`` over the hub's batch routes, against real hubs on loopback: few requests for
many files, large files through the single-file path, a hub with a smaller body limit, a hub without the routes,
per-item errors, an answer cut mid-way (:class:`tests.hub.test_blobs.CuttingProxy`, a TCP proxy), and an expired
session. The backend-independent contract is in ``test_batch_conformance.py``."""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from oaiod.hub.server import HubServer
from oaiod.storage.base import Transfer
from oaiod.storage.errors import LocalFileChanged, ObjectNotFound, StoragePermissionDenied
from oaiod.storage.hub import HubBackend
from oaiod.storage.hub.blocks import BLOCKS_FROM

pytestmark = pytest.mark.integration


def backend_on(hub: HubServer, user: str = "alice", url: str = "") -> HubBackend:
    return HubBackend.from_args({"url": url or hub.url, "username": user, "password": hub.users[user]})  # type: ignore[attr-defined]


@pytest.fixture
def alice(hub: HubServer) -> Iterator[HubBackend]:
    backend = backend_on(hub)
    yield backend
    backend.close()


def make_files(folder: Path, sizes: dict[str, int]) -> dict[str, bytes]:
    folder.mkdir(parents=True, exist_ok=True)
    contents = {}
    for name, size in sizes.items():
        contents[name] = os.urandom(size)
        (folder / name).write_bytes(contents[name])
    return contents


def requests_to(backend: HubBackend, route: str) -> list[Any]:
    return [timing for timing in backend.http.timings if f"/hub/blobs/{route}" in timing.url]


def without_routes(monkeypatch: pytest.MonkeyPatch, routes: tuple[str, ...], *, get_only: bool = False) -> None:
    """Hubs started from now on answer ``routes`` as an older hub without them would: 404, or with ``get_only``
    405 for all but GET (where only their CSRF-cookie GET routes exist) — an ASGI filter in front of a real hub."""
    import oaiod.hub.server
    from oaiod.hub.app import create_app
    from oaiod.hub.deps import error_response

    def older_app(*args: Any) -> Any:
        app = create_app(*args)

        async def filtered(scope: Any, receive: Any, send: Any) -> None:
            if scope["type"] == "http" and scope["path"].endswith(routes):
                if not get_only:
                    await error_response(404, "not_found", "Not Found")(scope, receive, send)
                    return
                if scope["method"] != "GET":
                    await error_response(405, "method_not_allowed", "Method Not Allowed")(scope, receive, send)
                    return
            await app(scope, receive, send)

        filtered.state = app.state  # type: ignore[attr-defined]
        return filtered

    monkeypatch.setattr(oaiod.hub.server, "create_app", older_app)


def round_trip(backend: HubBackend, tmp_path: Path, contents: dict[str, bytes], prefix: str = "scratch") -> None:
    """put_many then get_many of ``contents`` (files under tmp_path/up), checking every result and byte."""
    puts = [Transfer(f"{prefix}/{name}", str(tmp_path / "up" / name)) for name in contents]
    for result in backend.put_many(puts):
        assert result.error is None, result
    (tmp_path / "down").mkdir(exist_ok=True)
    gets = [Transfer(f"{prefix}/{name}", str(tmp_path / "down" / name), mtime_ns=10**18) for name in contents]
    for name, result in zip(contents, backend.get_many(gets), strict=True):
        assert result.error is None, result
        assert result.sha256 == hashlib.sha256(contents[name]).hexdigest()
        assert (tmp_path / "down" / name).read_bytes() == contents[name]
        assert os.stat(tmp_path / "down" / name).st_mtime_ns == 10**18


def test_many_small_files_take_few_requests(alice: HubBackend, tmp_path: Path) -> None:
    contents = make_files(tmp_path / "up", {f"f{number:04}": number % 300 for number in range(2500)})
    alice.http.reset_timings()
    moved: list[int] = []
    puts = [Transfer(f"scratch/{name}", str(tmp_path / "up" / name)) for name in contents]
    results = alice.put_many(puts, progress=moved.append)
    assert all(result.error is None for result in results)
    assert sum(moved) == sum(map(len, contents.values()))
    assert len(requests_to(alice, "put-many/")) == 3  # 1000 + 1000 + 500 (and the login)
    alice.http.reset_timings()
    (tmp_path / "down").mkdir()
    gets = [Transfer(f"scratch/{name}", str(tmp_path / "down" / name)) for name in contents]
    assert all(result.error is None for result in alice.get_many(gets))
    assert len(alice.http.timings) == 3
    assert all((tmp_path / "down" / name).read_bytes() == data for name, data in contents.items())


def test_large_files_go_one_by_one_among_small_ones(alice: HubBackend, tmp_path: Path) -> None:
    contents = make_files(tmp_path / "up", {"small": 10, "large": 5 * 1024 * 1024 + 3, "tiny": 0})
    alice.http.reset_timings()
    round_trip(alice, tmp_path, contents)
    assert len(requests_to(alice, "put-many/")) == 1
    assert len(requests_to(alice, "data/scratch/large")) == 1  # the resumable single-file path
    assert len(requests_to(alice, "get-many/")) == 1  # 5 MiB fits the hub's answer budget


def test_a_hub_with_a_smaller_body_limit(hub_factory: Callable[..., Any], tmp_path: Path) -> None:
    hub = hub_factory(body_limit=1024 * 1024)
    backend = backend_on(hub)
    try:
        contents = make_files(tmp_path / "up", {**{f"s{n}": 100_000 for n in range(25)}, "big": 2 * 1024 * 1024})
        round_trip(backend, tmp_path, contents)
        assert backend.batch_bytes < 1024 * 1024  # learnt from the 413's limit
        frames = requests_to(backend, "get-many/")
        assert len(frames) >= 3  # the hub answers about 1 MiB per request; 'big' came through download/
        assert len(requests_to(backend, "download/scratch/big")) == 1
    finally:
        backend.close()


@pytest.mark.parametrize("older", ["no routes", "GET only"])
def test_a_hub_without_the_batch_routes(
    hub_factory: Callable[..., Any], monkeypatch: pytest.MonkeyPatch, tmp_path: Path, older: str
) -> None:
    """An older hub: a real hub whose application answers the batch routes as one without them would — 404, or
    405 where only their GET (CSRF cookie) routes exist — through an ASGI filter in front of it."""
    without_routes(monkeypatch, ("/put-many/", "/get-many/"), get_only=older == "GET only")
    hub = hub_factory()
    backend = backend_on(hub)
    try:
        contents = make_files(tmp_path / "up", {f"f{n}": n for n in range(30)})
        round_trip(backend, tmp_path, contents)
        assert not backend.batch_routes
        assert len(requests_to(backend, "put-many/")) == 1  # asked once, then remembered
        assert len(requests_to(backend, "get-many/")) == 0
        assert len(requests_to(backend, "finish-upload/")) == 30
    finally:
        backend.close()


def test_items_fail_one_by_one(hub: HubServer, alice: HubBackend, tmp_path: Path) -> None:
    from oaiod.model import OaiObject, now_stamp

    assert hub.service is not None
    shared = "test⫻alice﹫dev⁄shared⁄20250101000000000000"  # an id minted for alice
    obj = OaiObject(oaio_id=shared, client_stamp=now_stamp(), client_values={"_name": "x"}, csh_id="Hub")
    hub.service.register(_actor("alice"), obj)
    hub.service.subscribe(_actor("alice"), shared, "bob", "r")
    contents = make_files(tmp_path / "up", {"a": 5, "b": 6, "c": 7})
    alice.put_bytes(f"{shared}/kept", b"alice's")
    bob = backend_on(hub, "bob")
    try:
        puts = [
            Transfer("scratch/a", str(tmp_path / "up" / "a")),
            Transfer(f"{shared}/kept", str(tmp_path / "up" / "b")),  # bob may only read it
            Transfer("scratch/missing", str(tmp_path / "up" / "nothing-here")),
            Transfer("scratch/c", str(tmp_path / "up" / "c")),
        ]
        results = bob.put_many(puts)
        assert results[0].error is None and results[0].sha256 == hashlib.sha256(contents["a"]).hexdigest()
        assert isinstance(results[1].error, StoragePermissionDenied)
        assert isinstance(results[2].error, LocalFileChanged)
        assert results[3].error is None
        assert alice.get_bytes(f"{shared}/kept") == b"alice's"
        down = tmp_path / "down"
        down.mkdir()
        (down / "taken").write_bytes(b"mine")
        gets = [
            Transfer(f"{shared}/kept", str(down / "kept")),
            Transfer("scratch/nothing", str(down / "nothing")),
            Transfer("scratch/a", str(down / "taken")),
            Transfer("scratch/c", str(down / "no-folder" / "c")),
        ]
        results = bob.get_many(gets)
        assert results[0].error is None and (down / "kept").read_bytes() == b"alice's"
        assert isinstance(results[1].error, ObjectNotFound)
        assert isinstance(results[2].error, LocalFileChanged) and (down / "taken").read_bytes() == b"mine"
        assert isinstance(results[3].error, LocalFileChanged)
        assert sorted(path.name for path in down.iterdir()) == ["kept", "taken"]
    finally:
        bob.close()


def _actor(name: str) -> Any:
    from oaiod.hub.service import Actor

    return Actor(name, name, False)


def test_an_answer_cut_midway_is_resumed_with_what_is_left(hub: HubServer, alice: HubBackend, tmp_path: Path) -> None:
    from tests.hub.test_blobs import CuttingProxy

    contents = make_files(tmp_path / "up", {f"f{n:03}": 50_000 for n in range(100)})
    puts = [Transfer(f"scratch/{name}", str(tmp_path / "up" / name)) for name in contents]
    assert all(result.error is None for result in alice.put_many(puts))
    proxy = CuttingProxy(hub.port, cut_after=2_000_000, answers=True)  # inside the 40th file of the answer
    backend = backend_on(hub, url=proxy.url)
    try:
        (tmp_path / "down").mkdir()
        gets = [Transfer(f"scratch/{name}", str(tmp_path / "down" / name)) for name in contents]
        results = backend.get_many(gets)
        assert proxy.cuts == 1
        assert all(result.error is None for result in results)
        assert all((tmp_path / "down" / name).read_bytes() == data for name, data in contents.items())
        assert len(requests_to(backend, "get-many/")) == 2
    finally:
        backend.close()
        proxy.close()


def test_an_expired_session_is_refused_and_the_backend_logs_in_once_more(
    hub_factory: Callable[..., Any], hub_session: Callable[..., Any], tmp_path: Path
) -> None:
    hub = hub_factory(session_lifetime=1.0)
    plain = hub_session(hub, "bob")
    backend = backend_on(hub, "bob")
    try:
        contents = make_files(tmp_path / "up", {"a": 3, "b": 4})
        puts = [Transfer(f"scratch/{name}", str(tmp_path / "up" / name)) for name in contents]
        assert all(result.error is None for result in backend.put_many(puts))
        logins = backend.http.auth.generation  # type: ignore[union-attr]
        time.sleep(1.5)
        refused = plain.get("hub/blobs/metadata/scratch/a")
        assert refused.status_code == 401 and refused.json()["error"] == "not_authenticated"
        assert all(result.error is None for result in backend.put_many(puts))  # the streamed body is sent again
        assert backend.http.auth.generation == logins + 1  # type: ignore[union-attr]
        assert backend.get_bytes("scratch/b") == contents["b"]
    finally:
        backend.close()


@pytest.mark.parametrize("size", [5 * 1024 * 1024, BLOCKS_FROM + 12345], ids=["whole", "by-blocks"])
def test_a_large_file_with_a_known_sha256_is_read_once_and_checked_by_the_hub(
    alice: HubBackend, tmp_path: Path, size: int
) -> None:
    """``Transfer.sha256`` (the engine's index) is announced instead of hashing the file first: the right one stores
    the file (and is the result's hash); a wrong one — the file changed since it was indexed — is refused by the hub
    and the item is LocalFileChanged, with nothing stored under the key. Both above SINGLE_ABOVE (the single-file
    path): uploaded whole, and by blocks (whose cut then skips the whole-file hash; the recipe check refuses it)."""
    contents = make_files(tmp_path / "up", {"right.bin": size, "wrong.bin": size})
    right = hashlib.sha256(contents["right.bin"]).hexdigest()
    puts = [
        Transfer("scratch/right.bin", str(tmp_path / "up" / "right.bin"), sha256=right),
        Transfer("scratch/wrong.bin", str(tmp_path / "up" / "wrong.bin"), sha256=right),
    ]
    stored, refused = alice.put_many(puts)
    assert stored.error is None and stored.sha256 == right and stored.size == size
    assert isinstance(refused.error, LocalFileChanged), refused
    assert alice.stat("scratch/right.bin").sha256 == right
    with pytest.raises(ObjectNotFound):
        alice.stat("scratch/wrong.bin")
    (tmp_path / "down").mkdir()
    [got] = alice.get_many([Transfer("scratch/right.bin", str(tmp_path / "down" / "right.bin"))])
    assert got.error is None and got.sha256 == right  # the hash checked while writing, not read back
    assert (tmp_path / "down" / "right.bin").read_bytes() == contents["right.bin"]


def test_copy_prefix_on_a_hub_without_the_route(
    hub_factory: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """An older hub answers ``copy-prefix/`` 404 naming nothing: the backend lists the folder and copies it with
    ``copy-many/`` instead (the same result), and remembers not to ask again."""
    without_routes(monkeypatch, ("/copy-prefix/",))
    backend = backend_on(hub_factory())
    try:
        for name in ("a", "b", "sub/c"):
            backend.put_bytes(f"old/{name}", name.encode())
        assert backend.copy_prefix("old", "new", exclude={"b"}) == 2
        assert backend.copy_prefix("old", "newer") == 3
        assert sorted(info.key for info in backend.list("new")) == ["new/a", "new/sub/c"]
        assert backend.get_bytes("newer/sub/c") == b"sub/c"
        assert len(requests_to(backend, "copy-prefix/")) == 1  # asked once, then remembered
        assert len(requests_to(backend, "copy-many/")) == 2
    finally:
        backend.close()
