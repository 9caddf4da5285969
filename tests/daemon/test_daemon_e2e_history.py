"""``oaiod ctl history`` against two real daemons on a real hub (issue 14 §3): per-file rows — added, changed,
deleted, moved, conflict — with the device that made each change and the time in local time, narrowed by PATH,
``--limit`` and ``--since``; refusals in one line; the table fits 80 columns."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from daemon_helpers import wait_for
from e2e_helpers import Cluster, first_cycles, root_of, wait_converged, write_tree

pytestmark = pytest.mark.integration


def ctl(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "oaiod.daemon.cli", "--config", str(config), "ctl", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=300)


def history(config: Path, *args: str) -> list[dict[str, Any]]:
    done = ctl(config, "history", *args, "--json")
    assert done.returncode == 0, done.stderr
    rows: list[dict[str, Any]] = json.loads(done.stdout)
    return rows


def changes(config: Path, *args: str) -> set[tuple[str, str, str]]:
    return {(row["action"], row["path"], row["device"]) for row in history(config, *args)}


def test_history_shows_each_file_change_and_the_device_that_made_it(cluster: Cluster) -> None:
    a, b = cluster.start("dev-a"), cluster.start("dev-b")
    first_cycles(a, b)
    ra, rb = root_of(a), root_of(b)
    write_tree(ra, {"docs/edit.txt": "v1", "docs/keep.txt": "keep", "gone.txt": "gone", "old name.txt": "moves"})
    wait_converged([a, b], expect=lambda t: {"docs/edit.txt", "old name.txt"} <= set(t))
    (ra / "docs" / "edit.txt").write_text("v2")
    (ra / "gone.txt").unlink()
    (ra / "old name.txt").rename(ra / "docs" / "new name.txt")
    wait_converged([a, b], expect=lambda t: "docs/new name.txt" in t and "gone.txt" not in t)

    expected = {
        ("added", "docs/keep.txt", "dev-a"),
        ("changed", "docs/edit.txt", "dev-a"),
        ("deleted", "gone.txt", "dev-a"),
        ("moved", "docs/new name.txt", "dev-a"),
    }
    for device in (a, b):  # the committing device and the pulling one tell the same story
        cfg = device.config_file
        wait_for(lambda cfg=cfg: expected <= changes(cfg), 60, f"the history of {cfg.stem}")
    rows = history(b.config_file)
    moved = next(row for row in rows if row["action"] == "moved")
    assert moved["detail"] == "from old name.txt" and moved["folder"] == str(rb)
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", row["when"]) for row in rows)
    assert not {row["action"] for row in rows} & {"commit", "pull"}  # files, not version totals

    cfg = b.config_file
    assert {path for _action, path, _dev in changes(cfg, str(rb / "docs"))} == {
        "docs/edit.txt", "docs/keep.txt", "docs/new name.txt"
    }  # fmt: skip
    assert {path for _action, path, _dev in changes(cfg, str(rb / "docs" / "edit.txt"))} == {"docs/edit.txt"}
    assert len(history(cfg, "--limit", "2")) == 2
    assert history(cfg, "--since", "2999-01-01") == []
    assert history(cfg, "--since", "2h") == history(cfg)
    bad = ctl(cfg, "history", "--since", "yesterday")
    assert bad.returncode == 1 and "since: must be like 2h, 3d" in bad.stderr and bad.stderr.count("\n") == 1
    outside = ctl(cfg, "history", str(cluster.base))
    assert outside.returncode == 0  # the folder holding both devices' roots: b's root is under it
    elsewhere = ctl(cfg, "history", "/usr")
    assert elsewhere.returncode == 1 and "is not a synced folder" in elsewhere.stderr

    assert ctl(cfg, "pause").returncode == 0  # b edits offline; a edits too: b's next pull makes a conflict
    (rb / "docs" / "keep.txt").write_text("b's edit")
    (ra / "docs" / "keep.txt").write_text("a's edit")
    wait_for(lambda: ("changed", "docs/keep.txt", "dev-a") in changes(a.config_file), 60, "a's commit")
    assert ctl(cfg, "resume").returncode == 0
    wait_for(lambda: ("conflict", "docs/keep.txt", "dev-a") in changes(cfg), 60, "the conflict on b")

    from rich.console import Console

    from oaiod.daemon import cli

    console = Console(width=80, record=True, file=open(os.devnull, "w"))  # noqa: SIM115
    original = cli._console
    cli._console = lambda: console
    try:
        cli.render_history(history(cfg))
    finally:
        cli._console = original
    text = console.export_text()
    assert max(len(line) for line in text.splitlines()) <= 80, text
    assert "moved" in text and "dev-a" in text and "from old name.txt" in text and "conflict" in text
