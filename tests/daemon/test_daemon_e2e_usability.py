"""Issue 14 against real daemons on a real hub: what a person (or a script) relies on when using ``oaiod ctl``.

``sync --wait`` returns only once everything written before the call is committed, however long the watcher's
quiet period; ``ctl status`` exits non-zero while the daemon is in ``error``/``offline``; …
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from e2e_helpers import Cluster, first_cycles, object_id_of, server_tree, tree, write_tree

pytestmark = pytest.mark.integration


def ctl(config: Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "oaiod.daemon.cli", "--config", str(config), "ctl", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=300, input=stdin)


def ctl_json(config: Path, *args: str) -> Any:
    done = ctl(config, *args, "--json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_sync_wait_returns_once_everything_written_before_it_is_committed(cluster: Cluster) -> None:
    """A long debounce (5 s) and a file written just before the call: a single cycle asked for at once saw none of
    it (the watcher still held the paths), and the big file was still in the engine's quiet period."""
    a = cluster.start("dev-a", debounce=5.0)
    first_cycles(a)
    root = Path(a.config.client.root)
    oid = object_id_of(a)
    write_tree(root, {f"many/f{i:03}.txt": f"file {i}" for i in range(300)})
    (root / "big.bin").write_bytes(os.urandom(20 * 2**20))
    done = ctl_json(a.config_file, "sync", "--wait")
    assert done["cycle"] >= 1 and "still_changing" not in done
    assert server_tree(cluster, oid) == tree(root)  # at once: no polling after --wait
