"""End to end on Hub storage (the hub's blob store in its data folder): 4 KiB overwritten inside a large file on
device A reaches device B as the same bytes, and the hub receives and sends less than a MiB of blob bodies for it
(block transfer, issue 13 §2), counted by the hub's own ``/metrics``."""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from e2e_helpers import Cluster, first_cycles, report, root_of, wait_converged
from test_daemon_e2e_hub_s3 import blob_bytes, start_on_hub_storage

pytestmark = pytest.mark.integration

MIB = 1024 * 1024
LARGE = int(os.environ.get("OAIOD_TEST_BLOCKS_MIB", "40")) * MIB  #: 200 measures the issue's row (slower)


@pytest.fixture
def hub_cluster(hub_factory: Callable[..., Any], tmp_path: Path) -> Iterator[Cluster]:
    group = Cluster(hub_factory(), tmp_path, tmp_path / "unused")
    try:
        yield group
    finally:
        group.stop_all()


def test_a_4_kib_change_inside_a_large_file_moves_under_a_mib_each_way(hub_cluster: Cluster) -> None:
    a, b = start_on_hub_storage(hub_cluster, "dev-a"), start_on_hub_storage(hub_cluster, "dev-b")
    first_cycles(a, b)
    big = root_of(a) / "disk.img"
    big.write_bytes(os.urandom(LARGE))
    wait_converged([a, b], {"disk.img"}, timeout=240)
    received, sent = blob_bytes(hub_cluster.hub)
    patch = os.urandom(4096)
    with open(big, "r+b") as file:  # as a database or a VM image changes: in place
        file.seek(LARGE // 2 + 123)
        file.write(patch)
    changed = time.monotonic()
    expected = hashlib.sha256(big.read_bytes()).hexdigest()
    found = wait_converged([a, b], lambda files: files.get("disk.img") == expected, timeout=240)
    seconds = time.monotonic() - changed
    assert found["disk.img"] == expected
    now_received, now_sent = blob_bytes(hub_cluster.hub)
    up, down = now_received - received, now_sent - sent
    report(f"4 KiB changed in {LARGE // MIB} MiB on A: on B after {seconds:.1f} s (polled); the hub received "
           f"{up:.0f} and sent {down:.0f} blob bytes")  # fmt: skip
    assert up < MIB and down < MIB
