"""A value changed differently on two devices (design §5): the server's value, committed first, stays; the clash is
recorded on the device whose value lost (``conflicts()``, kind ``value``, with that value), for folder objects as
for data objects, so nothing is dropped in silence. Real engines against a real hub."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from oaiod.daemon.ctl import present
from oaiod.model import OaiObject, now_stamp
from tests.engine.conftest import Device, converge, write

pytestmark = pytest.mark.integration


def _root_id(device: Device) -> str:
    (row,) = [row for row in device.engine.repo.objects() if row.kind == "root"]
    return row.oaio_id


def _data_object(device: Device) -> str:
    stamp = now_stamp()
    data = OaiObject(
        oaio_id=f"app⫻alice﹫x⁄prefs⁄{stamp}",
        client_stamp=stamp,
        client_values={"colour": "green", "size": 1, "_name": "prefs"},
        csh_id="Local",
        username="alice",
        device_id="x",
        app_id="app",
        csh_access_right="C",
    )
    device.api.register(data)
    return data.oaio_id


@pytest.mark.parametrize("kind", ["folder", "data"])
def test_a_value_changed_on_both_sides_is_recorded(make_device: Callable[..., Device], kind: str) -> None:
    a, b = make_device("alice", "a"), make_device("alice", "b")
    write(a.root / "doc.txt", "base")
    converge(a)
    oaio_id = _root_id(a) if kind == "folder" else _data_object(a)
    converge(a, b)

    a.engine.set_values(oaio_id, {"colour": "red", "size": 2})
    assert a.sync().pushed == 1  # a commits first
    b.engine.set_values(oaio_id, {"colour": "blue", "shape": "round"})
    b.sync()  # b pulls a's version: colour clashes, size and shape do not
    converge(a, b)

    for device in (a, b):
        values: dict[str, Any] = device.engine.repo.get_object(oaio_id).synced_values
        assert (values["colour"], values["size"], values["shape"]) == ("red", 2, "round")
    assert present.rows(a.engine.conflicts()) == []
    (clash,) = present.rows(b.engine.conflicts())
    assert (clash["oaio_id"], clash["kind"], clash["path"]) == (oaio_id, "value", "colour")
    assert '"blue"' in clash["detail"] and '"red"' in clash["detail"], clash


def test_a_value_a_push_overwrites_is_recorded(make_device: Callable[..., Device]) -> None:
    """A push merges this device's values over a server version it has not pulled (here: a pull held for a mass
    deletion) and keeps its own, the newer; the server's value it overwrites is recorded, as a pull records one."""
    a, b = make_device("alice", "a"), make_device("alice", "b", mass_delete_min=100)
    for number in range(8):
        write(b.root / f"f{number}.txt", str(number))
    converge(b, a)
    oaio_id = _root_id(a)
    for number in range(8):
        (b.root / f"f{number}.txt").unlink()
    b.engine.set_values(oaio_id, {"colour": "blue"})
    converge(b)  # b may delete many (min 100), a may not

    a.engine.set_values(oaio_id, {"colour": "red"})
    report = a.sync()  # a holds b's deletions, and commits its own values over b's version
    assert report.held == [oaio_id] and report.pushed == 1, report

    values: dict[str, Any] = a.engine.repo.get_object(oaio_id).synced_values
    assert values["colour"] == "red"
    (clash,) = present.rows(a.engine.conflicts())
    assert (clash["oaio_id"], clash["kind"], clash["path"]) == (oaio_id, "value", "colour")
    assert 'kept this device\'s value "red", the server had "blue"' in clash["detail"], clash
    assert present.rows(b.engine.conflicts()) == []
