"""``ctl remove`` of a folder inside the client root stops syncing it on this device only: its files stay on disk,
the server and the other devices keep it, and the client root object does not take them in: the folder is
excluded on this device (listed by ``ctl ls``) until ``ctl add`` syncs it again or it is deleted or moved away
(design §1). ``ctl delete`` deletes it on the server: every device stops syncing it, and its files stay."""

from __future__ import annotations

import shutil

import pytest

from oaiod.daemon.ctl import present
from tests.engine.conftest import Device, converge, write

pytestmark = pytest.mark.integration


def _root_files(device: Device) -> list[str]:
    (root,) = [o for o in device.api.stampz(None).objects if o.client_values.get("_name") == "oaiod-root"]
    return sorted(root.client_values["_file_paths"])


def _excluded(device: Device) -> list[str]:
    return [row["path"] for row in present.listing(device.engine.objects()) if row["kind"] == "excluded"]


def test_removed_folder_inside_the_root_stays_out_of_it(make_device) -> None:
    a, b = make_device("alice", "a"), make_device("alice", "b")
    folder = a.root / "proj"
    write(folder / "p.txt", "project")
    write(a.root / "r.txt", "root file")
    oaio_id = a.engine.add_folder(folder)
    converge(a, b)
    assert (b.root / "proj" / "p.txt").read_text() == "project" and _root_files(a) == ["r.txt"]

    a.engine.remove(oaio_id)
    write(folder / "later.txt", "written after the remove")
    write(b.root / "proj" / "from-b.txt", "b still syncs it")
    converge(a, b)
    assert (folder / "p.txt").read_text() == "project"  # never destroys user files
    assert _root_files(a) == ["r.txt"]  # not taken into the client root, on a or on b
    assert _excluded(a) == [str(folder)] and _excluded(b) == []  # b syncs it as before: nothing was deleted
    assert oaio_id in {o.oaio_id for o in a.api.stampz(None).objects}  # still on the server
    assert not (b.root / "proj" / "later.txt").exists() and not (folder / "from-b.txt").exists()
    listed = {row["path"]: row for row in present.listing(a.engine.objects())}
    assert listed[str(folder)]["status"] == "excluded" and "ctl add" in listed[str(folder)]["detail"]

    again = a.engine.add_folder(folder)  # added back: the same object, synced again
    assert again == oaio_id
    converge(a, b)
    assert _excluded(a) == [] and _excluded(b) == []
    assert a.engine.repo.get_object(again).synced_stamp and _root_files(a) == ["r.txt"]
    assert (b.root / "proj" / "later.txt").read_text() == "written after the remove"
    assert (folder / "from-b.txt").read_text() == "b still syncs it"

    a.engine.remove(again)
    converge(a)
    assert _excluded(a) == [str(folder)]
    shutil.rmtree(folder)  # deleted: the exclusion ends; a new folder there is the client root's like any other
    converge(a)
    assert _excluded(a) == []
    write(folder / "new.txt", "new")
    converge(a)
    assert _root_files(a) == ["proj/new.txt", "r.txt"]


def test_deleted_folder_is_gone_from_the_server_and_every_device_keeps_its_files(make_device) -> None:
    a, b = make_device("alice", "a"), make_device("alice", "b")
    folder = a.root / "proj"
    write(folder / "p.txt", "project")
    oaio_id = a.engine.add_folder(folder)
    converge(a, b)
    assert a.engine.delete(oaio_id) == "deleted on the server"
    write(folder / "later.txt", "written after the delete")
    converge(a, b)
    assert oaio_id not in {o.oaio_id for o in a.api.stampz(None).objects}
    assert (folder / "p.txt").exists() and (b.root / "proj" / "p.txt").exists()  # files stay everywhere
    assert _excluded(a) == [str(folder)] and _excluded(b) == [str(b.root / "proj")]
    assert not (b.root / "proj" / "later.txt").exists()
