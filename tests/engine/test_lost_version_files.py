"""A committed version whose file is missing on storage (lost there: sim seed 45 lost a whole version to a stamp
two devices shared, before ``push.new_stamp`` drew it) does not make another device upload in a loop, and heals
once the device that has the file commits again.

The other device cannot merge the file (the download answers not found, and the file waits out its backoff); its
own change then goes into a commit that carries the server's version of the file, which storage lacks and this
device does not have. That commit is dropped before any upload and tried next cycle, with no backoff of the object
(whose pulls would stop too). The file's loss is simulated by deleting it from the Local storage folder, as a disk
or an operator could.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from oaiod.storage.local.backend import LocalBackend
from tests.engine.conftest import Device, converge, write

pytestmark = pytest.mark.integration


def _lose(storage_root: Path, stamp: str, name: str) -> None:
    """Delete version ``stamp``'s file ``name`` from the Local storage folder."""
    found = [
        Path(folder) / name
        for folder, _dirs, files in os.walk(storage_root)
        if stamp in Path(folder).parts and name in files
    ]
    assert len(found) == 1, found
    found[0].unlink()


def test_a_commit_that_must_carry_a_file_lost_on_storage_uploads_nothing_until_the_file_is_back(
    make_device: Callable[..., Device], storage_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    a, b = make_device("alice", "a"), make_device("alice", "b")
    write(a.root / "shared.txt", "v1")
    write(a.root / "other.txt", "o1")
    converge(a, b)
    write(a.root / "shared.txt", "v2 from a")
    converge(a)
    (row,) = [row for row in a.engine.repo.objects() if row.local_root]
    _lose(storage_root, row.synced_stamp, "shared.txt")

    write(b.root / "other.txt", "o2 from b")
    sent: list[str] = []
    put_many = LocalBackend.put_many

    def counted(self: LocalBackend, items: Any, **options: Any) -> Any:
        sent.extend(item.key for item in items)
        return put_many(self, items, **options)

    monkeypatch.setattr(LocalBackend, "put_many", counted)
    for _cycle in range(2):
        report = b.sync()
        assert report.pushed == 0 and sent == [], (report, sent)  # no upload every cycle
        assert not b.engine.repo.backing_off(f"obj:{row.oaio_id}")  # its pulls go on
    assert (b.root / "other.txt").read_bytes() == b"o2 from b"  # kept here until the commit can be made

    write(a.root / "more.txt", "m")  # a's next commit finds its base incomplete and uploads shared.txt again
    converge(a)
    converge(b, a)
    assert a.tree() == b.tree() == {"shared.txt": b"v2 from a", "other.txt": b"o2 from b", "more.txt": b"m"}
