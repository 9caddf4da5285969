"""End to end with bulk data (marked ``slow``; they still run in CI): a 200 MiB file and 5,000 small files reach
the second device byte for byte; their transfer times are printed (never asserted)."""

from __future__ import annotations

import hashlib
import os
import time

import pytest
from e2e_helpers import Cluster, first_cycles, report, root_of, temp_files, wait_converged

pytestmark = [pytest.mark.integration, pytest.mark.slow]
MIB = 1024 * 1024


def test_a_200_mib_file_converges(cluster: Cluster) -> None:
    a, b = cluster.start("dev-a", log_level="INFO"), cluster.start("dev-b", log_level="INFO")
    first_cycles(a, b)
    digest = hashlib.sha256()
    started = time.monotonic()
    with (root_of(a) / "video.bin").open("wb") as out:
        for _ in range(200):
            chunk = os.urandom(MIB)
            digest.update(chunk)
            out.write(chunk)
    final = wait_converged([a, b], {"video.bin"}, timeout=600)
    seconds = time.monotonic() - started
    assert final["video.bin"] == digest.hexdigest()
    assert temp_files(root_of(b)) == []
    report(f"e2e 200 MiB file A→B (write, hash, upload, download, verify): {seconds:.1f} s, {200 / seconds:.0f} MiB/s")


def test_5000_small_files_converge(cluster: Cluster) -> None:
    a, b = cluster.start("dev-a", log_level="INFO"), cluster.start("dev-b", log_level="INFO")
    first_cycles(a, b)
    started = time.monotonic()
    for i in range(5000):
        folder = root_of(a) / f"d{i // 250:02d}"
        folder.mkdir(exist_ok=True)
        (folder / f"f{i:04d}.txt").write_bytes(f"small file {i}\n".encode() * (1 + i % 7))
    final = wait_converged([a, b], lambda files: len(files) == 5000, timeout=900)
    seconds = time.monotonic() - started
    assert len(final) == 5000 and temp_files(root_of(b)) == []
    report(f"e2e 5,000 small files A→B: {seconds:.1f} s, {5000 / seconds:.0f} files/s")
