"""Block transfer of Hub storage (:mod:`oaiod.storage.hub.blocks`): content-defined blocks that an edit does not
shift, and a changed large file moving only its changed blocks each way, counted by the hub's own byte counters.
Real hub over loopback (local content store, and S3 on moto without and with direct transfers)."""

from __future__ import annotations

import hashlib
import io
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from pyfastcdc import FastCDC

from oaiod.hub.settings import BlobStoreSettings
from oaiod.storage.base import Transfer
from oaiod.storage.hub import HubBackend
from oaiod.storage.hub.blocks import AVERAGE, BLOCKS_FROM, LARGEST, READ_BUFFER, SMALLEST, cut_file
from tests.hub.blobhelpers import blob_bytes

MIB = 1024 * 1024


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_blocks_are_content_defined_and_hashed_in_one_read() -> None:
    data = os.urandom(20 * MIB)
    cut = cut_file(io.BytesIO(data))
    assert cut.sha256 == sha(data) and cut.size == len(data)
    assert sum(block.size for block in cut.blocks) == len(data)
    assert all(SMALLEST <= block.size <= LARGEST for block in cut.blocks[:-1])
    for block in cut.blocks[:50]:
        assert block.sha256 == sha(data[block.offset : block.offset + block.size])
    inserted = data[: 5 * MIB] + b"inserted" + data[5 * MIB :]
    other = cut_file(io.BytesIO(inserted))
    before = {block.sha256 for block in cut.blocks}
    changed = [block for block in other.blocks if block.sha256 not in before]
    assert sum(block.size for block in changed) <= 2 * LARGEST  # the insertion shifted no later boundary
    assert cut_file(io.BytesIO(b"")).blocks == [] and cut_file(io.BytesIO(b"x")).size == 1


def test_a_cut_read_in_buffers_matches_one_cut_of_the_whole(tmp_path: Path) -> None:
    """Reading in READ_BUFFER pieces into two reused buffers cuts exactly where one FastCDC pass over the whole
    content does, from a file or from memory, with or without the whole sha256."""
    data = os.urandom(3 * READ_BUFFER + 12345)
    path = tmp_path / "f"
    path.write_bytes(data)
    chunker = FastCDC(AVERAGE, min_size=SMALLEST, max_size=LARGEST)
    expected = [(chunk.offset, chunk.length, sha(bytes(chunk.data))) for chunk in chunker.cut_buf(data)]
    with path.open("rb") as file:
        from_file = cut_file(file)
    from_memory = cut_file(io.BytesIO(data), whole=False)
    for cut in (from_file, from_memory):
        assert [(block.offset, block.size, block.sha256) for block in cut.blocks] == expected
        assert cut.size == len(data)
    assert from_file.sha256 == sha(data) and from_memory.sha256 == ""


@pytest.fixture(name="store_kind", params=["local", "s3", "s3-direct"])
def store_kind_param(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def blob_store(request: pytest.FixtureRequest, store_kind: str) -> BlobStoreSettings:
    if store_kind == "local":
        return BlobStoreSettings()
    bucket = request.getfixturevalue("hub_bucket")
    return bucket.settings(s3_direct=store_kind == "s3-direct")  # type: ignore[no-any-return]


@pytest.mark.integration
def test_a_4_kib_change_in_a_large_file_moves_less_than_a_mib_each_way(
    hub_factory: Callable[..., Any], store_kind: str, tmp_path: Path
) -> None:
    hub = hub_factory()
    backend = HubBackend.from_args({"url": hub.url, "username": "bob", "password": hub.users["bob"]})
    try:
        old, new = tmp_path / "old", tmp_path / "new"
        data = os.urandom(24 * MIB)
        old.write_bytes(data)
        backend.put_file("big/v1", old)
        changed = data[: 10 * MIB] + os.urandom(4096) + data[10 * MIB + 4096 :]
        new.write_bytes(changed)
        received, sent = blob_bytes(hub)
        backend.put_file("big/v2", new)
        now_received, _ = blob_bytes(hub)
        assert backend.stat("big/v2").sha256 == sha(changed)
        if store_kind == "s3-direct":  # the bucket took v1 whole, directly: nothing to share, v2 goes whole too
            assert now_received - received < MIB  # (to the bucket, not through the hub)
        else:
            assert now_received - received < MIB, now_received - received
        [got] = backend.get_many([Transfer("big/v2", str(tmp_path / "got"), basis=str(old))])
        assert got.error is None and got.sha256 == sha(changed)
        assert (tmp_path / "got").read_bytes() == changed
        _, now_sent = blob_bytes(hub)
        assert now_sent - sent < MIB, now_sent - sent
        # a basis that shares nothing, or a missing one, still gives the object's bytes
        unrelated = tmp_path / "unrelated"
        unrelated.write_bytes(os.urandom(BLOCKS_FROM))
        for number, basis in enumerate([str(unrelated), str(tmp_path / "absent"), str(new)]):
            target = tmp_path / f"again{number}"
            [got] = backend.get_many([Transfer("big/v1", str(target), basis=basis)])
            assert got.error is None and target.read_bytes() == data
    finally:
        backend.close()


@pytest.mark.integration
def test_a_basis_that_changes_midway_falls_back_to_a_whole_download(
    hub_factory: Callable[..., Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    hub = hub_factory()
    backend = HubBackend.from_args({"url": hub.url, "username": "bob", "password": hub.users["bob"]})
    try:
        data = os.urandom(10 * MIB)
        source = tmp_path / "source"
        source.write_bytes(data)
        backend.put_file("big/x", source)
        basis = tmp_path / "basis"
        basis.write_bytes(data)

        from oaiod.storage.hub import blocks

        real_cut = blocks.cut_file

        def cut_then_change(file: Any, **options: Any) -> Any:  # the basis changes after its cutting
            found = real_cut(file, **options)
            with open(basis, "r+b") as writer:
                writer.write(b"\0" * 1000)
            return found

        monkeypatch.setattr(blocks, "cut_file", cut_then_change)  # a race, made to happen every time
        backend.get_file("big/x", tmp_path / "got", basis=str(basis))
        assert (tmp_path / "got").read_bytes() == data
    finally:
        backend.close()
