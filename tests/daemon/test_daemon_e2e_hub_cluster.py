"""Two daemons, each on a different hub of one cluster (two hubs on one PostgreSQL database, contents in one S3
bucket with direct transfers), converge on a mixed workload (issue 12's cluster test, with real daemons): what
one daemon commits through hub 1 reaches the other through hub 2, whose change feed wakes for it, and a large file
put through hub 1's pre-signed URLs is fetched through hub 2's."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from e2e_helpers import Cluster, first_cycles, root_of, wait_converged
from test_daemon_e2e_hub_s3 import blob_bytes, start_on_hub_storage

pytestmark = [pytest.mark.integration, pytest.mark.postgres]

LARGE = 20 * 1024 * 1024  #: above the hub's 16 MiB parts: a direct upload of two parts


@pytest.fixture
def two_hubs(hub_factory: Callable[..., Any], hub_bucket: Any, postgres_url: str) -> tuple[Any, Any]:
    store = hub_bucket.settings(s3_direct=True)
    first = hub_factory(db_url=postgres_url, blob_store=store)
    second = hub_factory(db_url=postgres_url, blob_store=store, users=False)  # the users are in the database
    second.users = first.users
    return first, second


@pytest.fixture
def daemons(two_hubs: tuple[Any, Any], tmp_path: Path) -> Iterator[tuple[Any, Any, Any, Any]]:
    first, second = two_hubs
    group = Cluster(first, tmp_path, tmp_path / "unused")
    try:
        a = start_on_hub_storage(group, "dev-a", url=first.url)
        b = start_on_hub_storage(group, "dev-b", url=second.url)
        yield first, second, a, b
    finally:
        group.stop_all()


def test_daemons_on_two_hubs_of_a_cluster_converge(daemons: tuple[Any, Any, Any, Any]) -> None:
    first, second, a, b = daemons
    ra, rb = root_of(a), root_of(b)
    first_cycles(a, b)
    (ra / "docs").mkdir()
    for number in range(30):
        (ra / "docs" / f"a{number}.txt").write_text(f"from a {number}")
    (rb / "b-notes.txt").write_text("from b")
    wait_converged([a, b], lambda found: len(found) == 31)
    assert (
        blob_bytes(first)[0] > 0 and blob_bytes(second)[1] > 0
    )  # a put the small files through hub 1, b got them from hub 2
    (ra / "docs" / "a0.txt").write_text("a0 edited on a")  # edit, delete and rename in both directions
    (rb / "docs" / "a1.txt").unlink()
    (rb / "docs" / "a2.txt").rename(rb / "docs" / "renamed-on-b.txt")
    (ra / "big.bin").write_bytes(os.urandom(LARGE))
    found = wait_converged([a, b], lambda files: "big.bin" in files and "docs/renamed-on-b.txt" in files, timeout=240)
    assert "docs/a1.txt" not in found and "docs/a2.txt" not in found
    assert (rb / "docs" / "a0.txt").read_text() == "a0 edited on a"
    assert (rb / "big.bin").stat().st_size == LARGE
