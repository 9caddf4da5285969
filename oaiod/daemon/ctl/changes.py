"""``changes``: the server-side changes the daemon pulled, as a stream for apps (``oaiod.client``'s
``for change in client.changes(): …``).

The daemon already merges every change it pulls into its state database; this module only watches that database
(a read every :data:`POLL` seconds: no lock, WAL readers never wait for a cycle) and reports what moved:

- ``new`` / ``updated``: an object's synced version changed to one another device (or app) committed — this
  device's own commits are not reported;
- ``deleted``: an object is no longer synced here (deleted on the server, unshared, removed);
- ``clash``: a key of an object's values was changed differently here and elsewhere (design §5): the value kept
  and the one that lost are in ``detail`` (the same row ``ctl conflicts`` lists).

Each item is ``{"change", "oaio_id", "kind", "stamp", "key", "detail"}``. The stream ends when the daemon stops
(the control server ends it) or its engine is gone (a reload or a failure: the call fails, the app connects again).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

from oaiod.daemon.ctl.protocol import HEARTBEAT, CommandFailed
from oaiod.errors import FailureKind
from oaiod.state.models import STATUS_NEW, STATUS_REMOVED

POLL = 0.5  #: seconds between two looks at the state database


def _snapshot(repo: Any) -> dict[str, tuple[str, str, str]]:
    """``oaio_id -> (synced stamp, device of that version, kind)`` of the objects synced here."""
    return {
        row.oaio_id: (row.synced_stamp, row.device_id, row.kind)
        for row in repo.objects(values=False)
        if row.status not in (STATUS_REMOVED, STATUS_NEW)
    }


def _last_conflict(repo: Any) -> int:
    return max((row.id for row in repo.conflicts()), default=0)


def stream(daemon: Any, device_id: str) -> Iterator[Any]:
    """Items (see the module docstring), with a heartbeat between looks (the server ends a stream whose client
    went away, or when the daemon stops)."""
    engine = daemon.engine()
    repo = engine.repo
    if repo is None:
        return
    seen, conflict = _snapshot(repo), _last_conflict(repo)
    while True:
        time.sleep(POLL)
        yield HEARTBEAT
        if daemon.engine() is not engine:
            raise CommandFailed("the daemon reloaded its engine; ask for changes again", FailureKind.TRANSIENT)
        now = _snapshot(repo)
        for oaio_id, (stamp, device, kind) in sorted(now.items(), key=lambda item: item[1][0]):
            before = seen.get(oaio_id)
            if (before is None or before[0] != stamp) and device != device_id:
                yield _item("new" if before is None else "updated", oaio_id, kind, stamp)
        for oaio_id in sorted(seen.keys() - now.keys()):
            yield _item("deleted", oaio_id, seen[oaio_id][2], "")
        seen = now
        for row in sorted(repo.conflicts(), key=lambda row: row.id):
            if row.id > conflict and row.kind == "value":
                yield _item("clash", row.oaio_id, "", "", key=row.path, detail=row.detail)
            conflict = max(conflict, row.id)


def _item(change: str, oaio_id: str, kind: str, stamp: str, key: str = "", detail: str = "") -> dict[str, str]:
    return {"change": change, "oaio_id": oaio_id, "kind": kind, "stamp": stamp, "key": key, "detail": detail}
