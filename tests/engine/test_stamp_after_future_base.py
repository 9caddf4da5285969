"""Two devices that build on a version stamped ahead of their clocks never share a stamp (design §4, step 1).

The regression of sim seed 45: alice-1's clock ran 40 s ahead (within the allowed skew) when it committed. Every
other device's clock was then behind the object's stamp, so each new commit took "one microsecond past the base"
— the same stamp on every device building on that base, and so the same storage folder for its files. A device
that lost the commit race deleted that folder, taking the winner's files with it: the others could not download
the version (404), and the sim never converged.

Here device b commits while c's commit on the same base is between its uploads and its ``upload/`` (a wrapper at
the server-API boundary runs b's cycle at that moment: the race cannot be timed from a test otherwise). The clock
running ahead is one patched ``now_stamp`` in the push of the first commit; the sim runs it with a real clock jump.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

import pytest

from oaiod.engine import push
from oaiod.engine.context import ServerApi
from oaiod.engine.cycle import SyncEngine
from oaiod.model import now_stamp, stamp_add, stamp_diff
from oaiod.storage import open_backend
from tests.engine.conftest import Device, converge, write

pytestmark = pytest.mark.integration


class _RacedApi:
    """The real server API; before the first ``upload/`` passes, ``before_upload`` runs (another device commits)."""

    def __init__(self, api: Any, before_upload: Callable[[], Any]) -> None:
        self._api, self._before = api, before_upload
        self.raced = False

    def upload(self, obj: Any) -> Any:
        if not self.raced:
            self.raced = True
            self._before()
        return self._api.upload(obj)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._api, name)


def _commit_with_clock_ahead(device: Device, seconds: float, monkeypatch: pytest.MonkeyPatch) -> None:
    with monkeypatch.context() as patched:
        patched.setattr(push, "now_stamp", lambda: stamp_add(now_stamp(), seconds))
        device.sync()


def test_a_commit_that_loses_the_race_on_a_base_stamped_ahead_keeps_the_winners_files(
    make_device: Callable[..., Device], monkeypatch: pytest.MonkeyPatch
) -> None:
    a, b, c = make_device("alice", "a"), make_device("alice", "b"), make_device("alice", "c")
    write(a.root / "shared.txt", "first")
    converge(a, b, c)
    write(a.root / "shared.txt", "edited on a, whose clock runs 40 s ahead")
    _commit_with_clock_ahead(a, 40.0, monkeypatch)
    converge(b, c, rounds=1)
    (oaio_id,) = [row.oaio_id for row in c.engine.repo.objects() if row.local_root]
    base = c.engine.repo.get_object(oaio_id)
    assert base is not None and stamp_diff(now_stamp(), base.synced_stamp) > 30  # the base lies ahead of b and c

    write(b.root / "from-b.txt", "b's file")
    write(c.root / "from-c.txt", "c's file")
    api = _RacedApi(c.api, b.sync)
    c.engine.close()
    c.engine = SyncEngine(c.engine.settings, c.engine.repo, cast(ServerApi, api), open_backend)
    c.sync()  # b commits on the same base first; c's upload/ is refused, c merges b's version
    assert api.raced

    converge(a, b, c, rounds=2)  # no errors: every version's files are on storage
    want = {
        "shared.txt": b"edited on a, whose clock runs 40 s ahead",
        "from-b.txt": b"b's file",
        "from-c.txt": b"c's file",
    }
    assert a.tree() == b.tree() == c.tree() == want


def test_a_stamp_past_a_base_ahead_of_the_clock_is_drawn_within_the_next_second() -> None:
    """Two draws on one base differ (one in a million may not), and each is a valid stamp after it: the digits of
    a stamp do not carry like a number's (…59.999999 + 1 µs is the next minute, not second 60)."""
    base = stamp_add(now_stamp(), 3600.0)[:12] + "59999999"  # hh:mm:59.999999, an hour ahead
    stamps = {push.new_stamp(base) for _ in range(20)}
    assert len(stamps) > 1
    for stamp in stamps:
        assert 0 < stamp_diff(base, stamp) <= 1.0, stamp
