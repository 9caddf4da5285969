"""End to end on the hub's own blob store (csh id ``Hub``) with its contents in an S3 bucket (moto, or MinIO at
``OAIOD_TEST_S3_URL``) and direct transfers on: two daemon processes converge, small files going through the hub
in batches and a large one put and fetched on pre-signed URLs of the bucket, which the hub never streams."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from e2e_helpers import Cluster, first_cycles, root_of, wait_converged

from tests.hub.blobhelpers import blob_bytes

pytestmark = pytest.mark.integration

LARGE = 20 * 1024 * 1024  #: above the hub's 16 MiB parts: a direct upload of two parts


@pytest.fixture
def hub_cluster(hub_factory: Callable[..., Any], hub_bucket: Any, tmp_path: Path) -> Iterator[Cluster]:
    hub = hub_factory(blob_store=hub_bucket.settings(s3_direct=True))
    group = Cluster(hub, tmp_path, tmp_path / "unused")
    try:
        yield group
    finally:
        group.stop_all()


def start_on_hub_storage(cluster: Cluster, device: str, **options: Any) -> Any:
    """Start ``device`` on the hub's own blob store (csh id ``Hub``); ``options`` as for ``Cluster.config``."""
    config = cluster.config(device, **options)
    config.write_text(config.read_text().replace('csh_id = "Local"', 'csh_id = "Hub"'))
    return cluster.start(device)


def test_two_daemons_converge_through_a_hub_on_s3_with_direct_transfers(hub_cluster: Cluster) -> None:
    a, b = start_on_hub_storage(hub_cluster, "dev-a"), start_on_hub_storage(hub_cluster, "dev-b")
    ra = root_of(a)
    first_cycles(a, b)
    (ra / "notes").mkdir()
    for number in range(20):
        (ra / "notes" / f"n{number}.txt").write_text(f"note {number}")
    wait_converged([a, b], {f"notes/n{number}.txt" for number in range(20)})
    received, sent = blob_bytes(hub_cluster.hub)
    (ra / "big.bin").write_bytes(os.urandom(LARGE))
    wait_converged([a, b], lambda found: "big.bin" in found, timeout=240)
    now_received, now_sent = blob_bytes(hub_cluster.hub)
    assert now_received - received < LARGE  # a put it into the bucket, not through the hub
    assert now_sent - sent < LARGE  # b fetched it from the bucket
