"""Direct transfers: a hub with its content in a bucket (moto server, or MinIO at ``OAIOD_TEST_S3_URL``) and
``s3_direct`` answers a download negotiation that announces ``directGetUrl`` with a pre-signed URL of the bucket,
minted after its rights check; a client that does not announce it, or a hub without direct transfers, gets the
hub's own URL as before."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import pytest
import requests

from oaiod.hub.server import HubServer
from oaiod.storage.hub import HubBackend
from tests.hub.blobhelpers import B, put_blob, put_large

pytestmark = pytest.mark.integration

ACCEPT_ALL = {"acceptDownloadMethods": {"directGetUrl": True, "getUrl": True, "simple": True}}


@pytest.fixture
def direct_hub(hub_factory: Callable[..., HubServer], hub_bucket: Any) -> HubServer:
    return hub_factory(blob_store=hub_bucket.settings(s3_direct=True))


def start(session: Any, name: str, body: dict[str, Any]) -> requests.Response:
    return session.put(B + "start-download/" + quote(name), json=body)  # type: ignore[no-any-return]


def test_an_announcing_client_gets_a_presigned_url_and_reads_the_bucket_without_the_hub(
    direct_hub: HubServer, hub_session: Callable[..., Any]
) -> None:
    alice = hub_session(direct_hub, "alice")
    data = bytes(range(256)) * 4096  # 1 MiB: beyond the inline limit
    put_large(alice, "scratch/big", data)
    answer = start(alice, "scratch/big", ACCEPT_ALL).json()
    assert answer["method"] == "directGetUrl" and answer["size"] == len(data) and answer["expires"]
    assert urlsplit(answer["url"]).netloc != urlsplit(direct_hub.url).netloc  # the bucket, not the hub
    assert "X-Amz-Signature=" in answer["url"]
    fetched = requests.get(answer["url"], timeout=30)  # no session, no cookie: the URL alone grants the read
    assert fetched.status_code == 200 and fetched.content == data
    ranged = requests.get(answer["url"], headers={"Range": "bytes=1000-"}, timeout=30)
    assert ranged.status_code == 206 and ranged.content == data[1000:]


def test_rights_are_checked_before_a_url_is_minted(direct_hub: HubServer, hub_session: Callable[..., Any]) -> None:
    alice, bob = hub_session(direct_hub, "alice"), hub_session(direct_hub, "bob")
    put_blob(alice, "scratch/mine", b"alice's private bytes")
    refused = start(bob, "scratch/mine", ACCEPT_ALL)  # bob's private space has no such name
    assert refused.status_code == 404 and "url" not in refused.json()


def test_a_client_that_does_not_announce_it_is_streamed_by_the_hub(
    direct_hub: HubServer, hub_session: Callable[..., Any]
) -> None:
    alice = hub_session(direct_hub, "alice")
    put_blob(alice, "scratch/a", b"old client")
    for accepted, method in (({"getUrl": True, "simple": True}, "getUrl"), ({"simple": True}, "simple")):
        answer = start(alice, "scratch/a", {"acceptDownloadMethods": accepted}).json()
        assert answer["method"] == method and answer["url"].startswith(direct_hub.url)
        assert alice.get(answer["url"]).content == b"old client"


def test_a_bucket_without_direct_transfers_streams(
    hub_factory: Callable[..., HubServer], hub_bucket: Any, hub_session: Callable[..., Any]
) -> None:
    hub = hub_factory(blob_store=hub_bucket.settings())
    alice = hub_session(hub, "alice")
    put_blob(alice, "scratch/a", b"streamed")
    answer = start(alice, "scratch/a", ACCEPT_ALL).json()
    assert answer["method"] == "getUrl" and answer["url"].startswith(hub.url)
    assert alice.get(answer["url"]).content == b"streamed"


def test_the_hub_backend_follows_direct_urls_without_sending_its_session(
    direct_hub: HubServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The backend's hub session (cookie, context headers) never reaches the bucket: the bucket's requests are
    seen through ``requests``' send hook of the direct client."""
    backend = HubBackend.from_args({"url": direct_hub.url, "username": "alice", "password": direct_hub.users["alice"]})
    source = tmp_path / "src"
    source.write_bytes(b"x" * 300_000)
    backend.put_file("scratch/f", source)
    seen: list[requests.PreparedRequest] = []
    original = requests.Session.send

    def spy(session: requests.Session, prepared: requests.PreparedRequest, **kwargs: Any) -> Any:
        seen.append(prepared)
        return original(session, prepared, **kwargs)

    monkeypatch.setattr(requests.Session, "send", spy)
    backend.get_file("scratch/f", tmp_path / "back")
    assert (tmp_path / "back").read_bytes() == b"x" * 300_000
    bucket_requests = [req for req in seen if "X-Amz-Signature" in (req.url or "")]
    assert bucket_requests, [req.url for req in seen]
    for request in bucket_requests:
        assert "Cookie" not in request.headers and not any(h.lower().startswith("x-oaio") for h in request.headers)
    backend.close()
