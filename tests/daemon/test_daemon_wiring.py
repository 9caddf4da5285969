"""oaiod.daemon.wiring against a real hub over loopback: where the change feed starts.

The feed's first long poll starts at the engine's sync cursor (so a change made after the last cycle listed
the server wakes the daemon at once), else at the hub's current stamp; a cursor the hub would refuse
(``OLDEST_SYNC_STAMP``, empty, garbage) never reaches it.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from oaiod.daemon.wiring import change_feed_of, remove_stale_temp_files
from oaiod.model import OLDEST_SYNC_STAMP, OaiObject, now_stamp, object_id
from oaiod.secrets import Secret
from oaiod.server_api import OaioServerApi

pytestmark = pytest.mark.integration


@pytest.fixture
def api(hub: Any) -> Iterator[OaioServerApi]:
    client = OaioServerApi(hub.url, "alice", Secret(hub.users["alice"]), device_id="dev-w", app_id="oaiod")
    yield client
    client.close()


def register(api: OaioServerApi) -> None:
    stamp = now_stamp()
    values = {"_name": f"feed test {stamp}"}
    api.register(
        OaiObject(
            oaio_id=object_id("alice", "dev-w", "oaiod", stamp, values),
            client_stamp=stamp,
            client_values=values,
            csh_id="Local",
            username="alice",
            device_id="dev-w",
            app_id="oaiod",
        )
    )


def test_feed_starts_at_the_engines_cursor(api: OaioServerApi) -> None:
    cursor = api.stampz().sync_stamp
    register(api)  # after the last cycle's listing, before the feed starts: must not be missed
    feed = change_feed_of(api, lambda: cursor)
    changed, since = feed(None, 20.0)
    assert changed is True and since is not None and since > cursor
    changed, _ = feed(since, 0.2)
    assert changed is False


@pytest.mark.parametrize("stored", ["", OLDEST_SYNC_STAMP, "garbage"])
def test_feed_without_a_valid_cursor_starts_at_the_current_stamp(api: OaioServerApi, stored: str) -> None:
    register(api)  # before the feed starts, and the daemon has no cursor: a cycle will list it anyway
    feed = change_feed_of(api, lambda: stored)
    changed, since = feed(None, 0.2)
    assert changed is False and since is not None and since > OLDEST_SYNC_STAMP
    register(api)
    changed, _ = feed(since, 20.0)
    assert changed is True


def test_stale_download_temp_files_are_removed_and_nothing_else(tmp_path: Path) -> None:
    root, outside = tmp_path / "root", tmp_path / "outside"
    for folder in (root / "a" / "b", root / ".oaiod" / "trash", outside):
        folder.mkdir(parents=True)
    stale = [root / ".oaiod-tmp-1a2b", root / "a" / "b" / ".oaiod-tmp-x52gybnw"]
    kept = [root / "a" / "file.txt", root / ".oaiod" / "trash" / ".oaiod-tmp-old", outside / ".oaiod-tmp-elsewhere"]
    for path in stale + kept:
        path.write_bytes(b"partial")
    staged = root / "a" / ".oaiod-tmp-5e7f-3"  # a new folder downloaded under a temp name, never published
    (staged / "sub").mkdir(parents=True)
    (staged / "sub" / "f.txt").write_bytes(b"downloaded")
    (root / ".oaiod-tmp-dirlink").symlink_to(outside, target_is_directory=True)  # not ours to remove, not followed
    (root / "link").symlink_to(outside)  # never followed
    time.sleep(0.05)  # file times come from the kernel's coarse clock: keep "before" and "after" apart
    started = time.time()  # this daemon's start: every file above predates it
    time.sleep(0.05)
    fresh = root / "a" / ".oaiod-tmp-in-flight"
    fresh.write_bytes(b"ours")
    os.utime(fresh, (started - 100, started - 100))  # an old mtime (set from the remote): ctime still counts
    fresh_staged = root / ".oaiod-tmp-in-flight-folder"
    fresh_staged.mkdir()
    assert remove_stale_temp_files([root], started) == 3
    assert not any(path.exists() for path in stale) and not staged.exists()
    assert all(path.exists() for path in kept) and fresh.exists() and fresh_staged.exists()
    assert (root / ".oaiod-tmp-dirlink").is_symlink() and outside.exists()
    assert remove_stale_temp_files([root], time.time() - 3600) == 0
