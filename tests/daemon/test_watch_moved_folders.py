"""A folder tree made and moved at once inside a root is watched whole (issue 10 §3, found by tests/sim).

watchdog moves the watches it has when a folder is moved; a subfolder made just before the move, whose creation
it had not processed yet, is never watched, so later changes deep in the tree reached the engine only with the
next periodic rescan (ten minutes by default). The engine's staged new folders (design §3) are made exactly so.
The watcher's health check now watches such a root again and marks it dirty. Real observers on tmp folders.
"""

from __future__ import annotations

from pathlib import Path

from daemon_helpers import wait_for
from test_daemon_watch import Recorder, make_watcher

TREES = 8  # watchdog missed later changes in about two of three such trees here: eight miss one almost surely


def test_a_tree_made_and_moved_at_once_is_watched_whole_after_the_health_check(tmp_path: Path) -> None:
    rec = Recorder()
    watcher = make_watcher(rec, debounce=0.2)
    watcher.start([tmp_path])
    try:
        for number in range(TREES):  # as the engine installs a new folder: staged under a temp name, renamed
            staged = tmp_path / f".oaiod-tmp-{number}"
            (staged / "l1/l2/l3").mkdir(parents=True)
            (staged / "l1/l2/l3/f.txt").write_text("downloaded")
            staged.rename(tmp_path / f"new{number}")
        moved = {f"new{number}" for number in range(TREES)}
        wait_for(lambda: moved <= rec.paths(), 30, "the moves reported")
        assert watcher.check_health() == []  # nothing died: no rescan of every root
        for number in range(TREES):
            (tmp_path / f"new{number}/l1/l2/l3/g.txt").write_text("the user's edit")
        deep = {f"new{number}/l1/l2/l3/g.txt" for number in range(TREES)}
        wait_for(lambda: deep <= rec.paths(), 30, "edits deep in every moved tree reported")
        assert "" in rec.paths(tmp_path)  # and the root was marked dirty: what changed before the re-watch is found
        assert rec.rescans == 0
    finally:
        watcher.stop()
