"""The Hub backend's side of direct transfers (``oaiod.storage.hub.direct``) that the conformance suite's
``hub_s3`` store cannot show: what counts as an older hub refusing ``directParts``, and which bucket URLs a
client follows. Real transfers on pre-signed URLs run in the conformance suite and ``tests/hub/test_blob_direct.py``."""

from __future__ import annotations

import pytest

from oaiod.http import HTTPStatusError
from oaiod.storage.errors import PermanentStorageError
from oaiod.storage.hub.direct import DirectClients, refused_direct_parts


def refusal(status: int, body: object) -> PermanentStorageError:
    error = PermanentStorageError("cannot start the upload")
    error.__cause__ = HTTPStatusError("PUT", "http://127.0.0.1:1/api/hub/blobs/upload/k", status, body)
    return error


def test_an_older_hub_refusing_the_method_is_told_apart_from_other_refusals() -> None:
    older = {"error": "validation", "reason": "has unknown keys directParts", "field": "proposedUploadMethods"}
    assert refused_direct_parts(refusal(400, older))
    assert not refused_direct_parts(refusal(400, {**older, "field": "sha256"}))
    assert not refused_direct_parts(refusal(409, older))
    assert not refused_direct_parts(PermanentStorageError("no cause"))


def test_bucket_urls_must_be_https_or_loopback_unless_insecure_is_allowed() -> None:
    clients = DirectClients(allow_insecure=False, pool_size=1)
    client, _url = clients.for_url("http://127.0.0.1:9000/b/k?X-Amz-Signature=s", "k")
    assert clients.for_url("http://127.0.0.1:9000/b/other", "k")[0] is client  # one client per origin
    assert clients.for_url("https://s3.example.org/b/k", "k")[0] is not client
    with pytest.raises(PermanentStorageError, match="not safe"):
        clients.for_url("http://s3.example.org/b/k", "k")
    with pytest.raises(PermanentStorageError, match="no direct URL"):
        clients.for_url(None, "k")
    assert DirectClients(allow_insecure=True, pool_size=1).for_url("http://s3.example.org/b/k", "k")
    clients.close()
