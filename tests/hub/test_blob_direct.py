"""Direct transfers: a hub with its content in a bucket (moto server, or MinIO at ``OAIOD_TEST_S3_URL``) and
``s3_direct`` answers a download negotiation that announces ``directGetUrl`` with a pre-signed URL of the bucket,
and an upload that proposes ``directParts`` with pre-signed part URLs, each minted after its rights check; a
client that does not announce them, or a hub without direct transfers, gets the hub's own URLs as before."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import pytest
import requests

from oaiod.hub.server import HubServer
from oaiod.storage.hub import HubBackend
from tests.hub.blobhelpers import B, download, new_id, put_blob, put_large, sha, stored_content

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


# -- direct uploads -------------------------------------------------------------------------------------------


PART = 16 * 1024 * 1024  #: the hub's smallest part size


def create_direct(session: Any, name: str, data: bytes, upload_id: str) -> requests.Response:
    methods = {"putUrl": {"contentType": "application/octet-stream", "contentLength": len(data)},
               "directParts": {"contentLength": len(data)}}  # fmt: skip
    body = {"uploadId": upload_id, "sha256": sha(data), "size": len(data), "proposedUploadMethods": methods}
    return session.put(B + "upload/" + quote(name), json=body)  # type: ignore[no-any-return]


def put_part(parts: dict[str, Any], number: int, data: bytes) -> None:
    chunk = data[(number - 1) * parts["partSize"] : number * parts["partSize"]]
    answer = requests.put(parts["urls"][number - 1], data=chunk, timeout=60)  # no session: the URL is the grant
    assert answer.status_code == 200, answer.text


def received(session: Any, name: str, upload_id: str) -> int:
    answer = session.get(B + "upload-status/" + quote(name), params={"uploadId": upload_id})
    return int(answer.json()["received"])


def test_direct_upload_in_parts_resumes_and_publishes_after_the_hub_verified_it(
    direct_hub: HubServer, hub_session: Callable[..., Any], hub_bucket: Any
) -> None:
    alice = hub_session(direct_hub, "alice")
    data = os.urandom(PART + 300_000)
    upload_id = new_id()
    method = create_direct(alice, "scratch/big", data, upload_id).json()["uploadMethod"]
    parts = method["directParts"]
    assert parts["partSize"] == PART and len(parts["urls"]) == 2 and parts["expires"]
    assert all(urlsplit(url).netloc != urlsplit(direct_hub.url).netloc for url in parts["urls"])
    put_part(parts, 1, data)
    assert received(alice, "scratch/big", upload_id) == PART  # a client resumes from the parts the bucket holds
    early = alice.post(B + "finish-upload/scratch/big", json={"uploadId": upload_id})
    assert early.status_code == 409 and early.json()["received"] == PART
    renewed = create_direct(alice, "scratch/big", data, upload_id).json()["uploadMethod"]["directParts"]
    put_part(renewed, 2, data)  # the same multipart upload, resumed with fresh URLs
    finished = alice.post(B + "finish-upload/scratch/big", json={"uploadId": upload_id})
    assert finished.status_code == 200 and finished.json()["sha256"] == sha(data)
    assert download(alice, "scratch/big").content == data
    assert stored_content(direct_hub) == [sha(data)]
    assert list((direct_hub.data_dir / "blobs" / "uploads").iterdir()) == []  # nothing went through the hub
    settings = direct_hub.settings.blob_store
    left = hub_bucket.client.list_multipart_uploads(Bucket=settings.s3_bucket, Prefix=settings.s3_prefix)
    assert not left.get("Uploads")
    listed = hub_bucket.client.list_objects_v2(Bucket=settings.s3_bucket, Prefix=f"{settings.s3_prefix}/uploads/")
    assert not listed.get("Contents")  # the assembled upload went once its content was stored


def test_direct_upload_of_other_bytes_is_discarded(direct_hub: HubServer, hub_session: Callable[..., Any]) -> None:
    alice = hub_session(direct_hub, "alice")
    announced, sent = os.urandom(200_000), os.urandom(200_000)
    upload_id = new_id()
    parts = create_direct(alice, "scratch/x", announced, upload_id).json()["uploadMethod"]["directParts"]
    put_part(parts, 1, sent)
    wrong = alice.post(B + "finish-upload/scratch/x", json={"uploadId": upload_id})
    assert wrong.status_code == 400 and sha(sent) in wrong.json()["reason"]
    assert alice.get(B + "metadata/scratch/x").status_code == 404
    assert stored_content(direct_hub) == []  # neither content is stored under any sha256
    again = create_direct(alice, "scratch/x", announced, new_id())  # the name is free for a new upload
    assert again.status_code == 200


def test_a_cancelled_direct_upload_is_aborted_in_the_bucket(
    direct_hub: HubServer, hub_session: Callable[..., Any], hub_bucket: Any
) -> None:
    alice = hub_session(direct_hub, "alice")
    data = os.urandom(100_000)
    parts = create_direct(alice, "scratch/c", data, new_id()).json()["uploadMethod"]["directParts"]
    put_part(parts, 1, data)
    assert alice.delete(B + "upload/scratch/c").json() == {"cancelled": True}
    settings = direct_hub.settings.blob_store
    left = hub_bucket.client.list_multipart_uploads(Bucket=settings.s3_bucket, Prefix=settings.s3_prefix)
    assert not left.get("Uploads")


def test_a_hub_without_direct_transfers_answers_put_url(
    hub_factory: Callable[..., HubServer], hub_bucket: Any, hub_session: Callable[..., Any]
) -> None:
    hub = hub_factory(blob_store=hub_bucket.settings())
    alice = hub_session(hub, "alice")
    method = create_direct(alice, "scratch/a", b"y" * 100_000, new_id()).json()["uploadMethod"]
    assert set(method) == {"putUrl"} and method["putUrl"]["url"].startswith(hub.url)


def test_the_hub_backend_puts_large_files_directly(direct_hub: HubServer, tmp_path: Path) -> None:
    """Through the Hub backend, a large file's bytes go to the bucket: the hub's received-bytes counter stays
    where it was (it counts the bodies of data/, inline upload/ and put-many/)."""
    backend = HubBackend.from_args({"url": direct_hub.url, "username": "alice", "password": direct_hub.users["alice"]})
    source = tmp_path / "src"
    source.write_bytes(os.urandom(PART * 2 + 5))
    backend.put_bytes("scratch/small", b"inline")  # logs in; inline bytes do go through the hub
    before = received_counter(direct_hub)
    assert before >= len(b"inline")
    backend.put_file("scratch/big", source)
    assert received_counter(direct_hub) == before
    backend.get_file("scratch/big", tmp_path / "back")
    assert (tmp_path / "back").read_bytes() == source.read_bytes()
    backend.close()


def received_counter(hub: HubServer) -> float:
    text = requests.get(hub.url.removesuffix("api/") + "metrics", timeout=10).text
    lines = [line for line in text.splitlines() if line.startswith("oaiod_hub_blob_received_bytes_total ")]
    assert len(lines) == 1, text[:2000]
    return float(lines[0].split()[1])
