"""End to end (two daemon processes, a real hub with its own blob store, csh id ``Hub``): a folder renamed on one
device reaches the other without its bytes crossing the hub again (issue 13 §1). The hub's own metrics count what
its blob store sent."""

from __future__ import annotations

import os

import pytest
from e2e_helpers import Cluster, first_cycles, report, root_of, wait_converged
from test_daemon_e2e_hub_s3 import blob_bytes, start_on_hub_storage

pytestmark = pytest.mark.integration

FILES, SIZE = 200, 16 * 1024


def test_a_renamed_folder_reaches_the_other_device_without_a_download(cluster: Cluster) -> None:
    a, b = start_on_hub_storage(cluster, "dev-a"), start_on_hub_storage(cluster, "dev-b")
    ra, rb = root_of(a), root_of(b)
    first_cycles(a, b)
    (ra / "album").mkdir()
    for number in range(FILES):
        (ra / "album" / f"p{number:03d}.jpg").write_bytes(os.urandom(SIZE))
    (ra / "single.bin").write_bytes(os.urandom(SIZE))
    wait_converged([a, b], lambda found: len(found) == FILES + 1, timeout=240)
    _received, sent = blob_bytes(cluster.hub)
    (ra / "album").rename(ra / "album renamed")
    (ra / "single.bin").rename(ra / "single renamed.bin")
    wait_converged(
        [a, b], lambda found: "single renamed.bin" in found and f"album renamed/p{FILES - 1:03d}.jpg" in found
    )
    _received, now_sent = blob_bytes(cluster.hub)
    report(f"folder rename of {FILES} x {SIZE // 1024} KiB: {now_sent - sent:.0f} blob bytes sent by the hub to B")
    assert now_sent - sent < 0.01 * FILES * SIZE
    assert not (rb / "album").exists()
