"""Apps' objects in the engine (``oaiod/engine/apps.py``): data and file objects registered by a cycle, values set
and unset, a file object's file updated or added, unregister with ``wipe_files``, and what is refused."""

from __future__ import annotations

import pytest

from oaiod.engine.apps import NotPermitted, UnknownObject
from oaiod.errors import ValidationError
from tests.engine.conftest import converge, write

pytestmark = pytest.mark.integration


def test_data_object_values_set_and_unset(make_device) -> None:
    a, b = make_device("alice", "a"), make_device("alice", "b")
    oaio_id = a.engine.new_object({"_name": "prefs", "theme": "dark", "font": 10})
    converge(a, b)
    assert b.engine.values(oaio_id) == {"_name": "prefs", "theme": "dark", "font": 10}
    b.engine.set_values(oaio_id, {"font": 12}, unset=["theme"])
    assert b.engine.values(oaio_id) == {"_name": "prefs", "font": 12}  # this device's view before the push
    converge(b, a)
    assert a.engine.values(oaio_id) == {"_name": "prefs", "font": 12}
    with pytest.raises(ValidationError):
        a.engine.set_values(oaio_id, {"_file_paths": ["x"]})  # oaiod's own key
    with pytest.raises(UnknownObject):
        a.engine.values("app⫻alice﹫a⁄nothing⁄20240101000000000000")


def test_file_object_placed_updated_and_wiped(make_device, storage_root, tmp_path) -> None:
    a, b = make_device("alice", "a"), make_device("alice", "b")
    source = tmp_path / "report.txt"
    write(source, "v1")
    oaio_id = a.engine.new_file_object("report.txt", source, None, {"_name": "report"})
    here = a.root / "filez" / oaio_id / "report.txt"
    assert here.read_text() == "v1" and source.read_text() == "v1"  # a copy: the app's file stays its own
    converge(a, b)
    there = b.root / "filez" / oaio_id
    assert (there / "report.txt").read_text() == "v1"
    write(source, "v2")
    a.engine.update_file(oaio_id, "", source)  # its first file by default
    write(tmp_path / "extra.txt", "more")
    a.engine.update_file(oaio_id, "extra.txt", tmp_path / "extra.txt")  # a new name is added
    converge(a, b)
    assert (there / "report.txt").read_text() == "v2" and (there / "extra.txt").read_text() == "more"
    with pytest.raises(ValidationError):
        a.engine.update_file(oaio_id, "../escape.txt", source)
    a.engine.unregister(oaio_id, wipe_files=True)
    assert not here.parent.exists() and not (storage_root / oaio_id).exists()
    converge(b)
    assert b.engine.repo.get_object(oaio_id) is None and (there / "report.txt").exists()  # B keeps its copy


def test_wipe_is_refused_over_another_objects_folder(make_device, tmp_path) -> None:
    a = make_device("alice", "a")
    outer, inner = tmp_path / "outer", tmp_path / "outer" / "inner"
    write(inner / "i.txt", "i")
    outer_id, inner_id = a.engine.add_folder(outer), a.engine.add_folder(inner)
    converge(a)
    with pytest.raises(NotPermitted):
        a.engine.unregister(outer_id, wipe_files=True)
    assert (inner / "i.txt").exists() and a.engine.repo.get_object(outer_id) is not None
    assert a.engine.unregister(inner_id, wipe_files=True).endswith("wiped") and not inner.exists()
