"""Committing a new version carries the unchanged files with one ``copy_prefix`` and copies renamed ones with one
``copy_many``: on Hub storage a constant number of requests of a size that grows with what changed, whatever the
number of files (counted in the ``HubBackend``'s HTTP timings). Engines against a real hub
over loopback, with the hub's own blob store as storage (the daemon's wiring: the backend shares the API session).
"""

from __future__ import annotations

from typing import Any

import pytest

from oaiod import jsoncodec
from oaiod.model import storage_key
from oaiod.storage.hub import HubBackend
from tests.engine.conftest import converge, write

pytestmark = pytest.mark.integration

FILES = 300


def storage_requests(opened: list[HubBackend]) -> list[str]:
    """The blob routes the backends called since their timings were reset (``copy-many``, ``upload``, …)."""
    return [timing.url.split("/hub/blobs/")[1].split("/")[0] for backend in opened for timing in backend.http.timings]


def test_a_new_version_of_many_files_copies_them_in_one_request(hub_device) -> None:
    a, opened = hub_device("alice", "a")
    for number in range(FILES):
        write(a.root / f"d{number % 7}" / f"f{number} ä.txt", f"file {number}")
    converge(a)
    for backend in opened:
        backend.http.reset_timings()
    write(a.root / "d0" / "f0 ä.txt", "changed")
    (a.root / "d1" / "f1 ä.txt").rename(a.root / "renamed.txt")  # found by sha256 in the base: copied too
    report = a.sync()
    assert report.errors == [] and report.uploads == 1
    called = storage_requests(opened)
    assert called.count("copy-prefix") == 1 and called.count("copy-many") == 1, called  # not one request per file
    assert "copy" not in called and len(called) <= 5, called  # + the changed file's createUpload + finish-upload

    b, _opened_b = hub_device("alice", "b")
    converge(b)
    assert b.tree() == a.tree() and len(b.tree()) == FILES
    assert b.tree()["renamed.txt"] == b"file 1" and b.tree()["d0/f0 ä.txt"] == b"changed"


def test_a_base_file_missing_on_storage_is_uploaded_again(hub_device) -> None:
    a, opened = hub_device("alice", "a")
    for number in range(20):
        write(a.root / f"f{number}.txt", f"file {number}")
    converge(a)
    [row] = [row for row in a.engine.repo.objects() if row.kind == "root"]
    for number in (3, 11):  # lost on the host (e.g. removed by hand): two rounds of copy_many find them
        opened[0].delete(storage_key(row.oaio_id, row.synced_stamp, f"f{number}.txt"))
    write(a.root / "f0.txt", "changed")
    report = a.sync()
    assert report.errors == [] and report.uploads == 3
    b, _opened_b = hub_device("alice", "b")
    converge(b)
    assert b.tree() == a.tree() and b.tree()["f11.txt"] == b"file 11"


def _one_change_requests(hub_device: Any, user: str, files: int) -> tuple[list[str], int]:
    """The blob requests of committing one new small file in ``user``'s root of ``files``, and their body bytes."""
    a, opened = hub_device(user, user)
    for number in range(files):
        write(a.root / f"d{number % 10}" / f"f{number}.txt", f"file {number}")
    converge(a)
    for backend in opened:
        backend.http.reset_timings()
    write(a.root / "new.txt", "one more")
    report = a.sync()
    assert report.errors == [] and report.uploads == 1
    sent = sum(timing.bytes_sent for backend in opened for timing in backend.http.timings)
    return storage_requests(opened), sent


def test_a_one_file_commit_costs_the_same_requests_in_a_big_folder(hub_device: Any) -> None:
    """The storage requests of a one-file commit do not grow with the folder: the same routes, the same number,
    the same bytes sent, for 30 files and for 3,000 (copy_many of every unchanged file took 3 requests here)."""
    small, small_sent = _one_change_requests(hub_device, "bob", 30)
    big, big_sent = _one_change_requests(hub_device, "carol", 3000)
    assert sorted(big) == sorted(small) and big.count("copy-prefix") == 1, (small, big)
    assert "copy-many" not in big and "list" not in big, big
    assert big_sent <= small_sent + 200, (small_sent, big_sent)  # the stamps and ids differ a little


def test_a_commit_sends_and_gets_the_manifest_once(hub_device: Any) -> None:
    """The object of a commit travels lean (hub feature ``lean``): the ``upload/`` body holds the new manifest, not
    the previous one beside it, and the answer holds it once too; the other device's listing gets it once."""
    a, _opened = hub_device("alice", "a")
    b, _opened_b = hub_device("alice", "b")
    for number in range(1000):
        write(a.root / f"d{number % 10}" / f"file-with-a-longer-name-{number}.txt", f"file {number}")
    converge(a, b)
    a.api.http.reset_timings()
    b.api.http.reset_timings()
    write(a.root / "new.txt", "one more")
    assert a.sync().errors == [] and b.sync().errors == []
    [row] = [row for row in a.engine.repo.objects() if row.kind == "root"]
    manifest = len(jsoncodec.dumps(row.client_values))
    assert manifest > 50_000  # the rest of an object and of the answer is far smaller
    [upload] = [timing for timing in a.api.http.timings if timing.url.endswith("/upload/")]
    assert manifest <= upload.bytes_sent < 1.5 * manifest and manifest <= upload.bytes_received < 1.5 * manifest
    listed = sum(timing.bytes_received for timing in b.api.http.timings if "/oaio_stampz/" in timing.url)
    assert manifest <= listed < 1.5 * manifest


def test_a_file_left_over_in_the_base_folder_is_not_carried(hub_device: Any) -> None:
    """The base's folder on storage holding a file its manifest does not name (another client's leftover): the new
    version holds exactly its manifest's files (the count copy_prefix answers tells; a listing then finds it)."""
    a, opened = hub_device("alice", "a")
    for number in range(20):
        write(a.root / f"f{number}.txt", f"file {number}")
    converge(a)
    [row] = [row for row in a.engine.repo.objects() if row.kind == "root"]
    opened[0].put_bytes(storage_key(row.oaio_id, row.synced_stamp, "leftover.bin"), b"not in the manifest")
    write(a.root / "f0.txt", "changed")
    report = a.sync()
    assert report.errors == [] and report.uploads == 1
    [row] = [row for row in a.engine.repo.objects() if row.kind == "root"]
    prefix = storage_key(row.oaio_id, row.synced_stamp)
    held = sorted(info.key[len(prefix) + 1 :] for info in opened[0].list(prefix))
    assert held == sorted(f"f{number}.txt" for number in range(20))
    b, _opened_b = hub_device("alice", "b")
    converge(b)
    assert b.tree() == a.tree() and "leftover.bin" not in b.tree()
