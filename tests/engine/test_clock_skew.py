"""The 69 s clock-skew limit (``OaioServerApi.check_clock``) is checked by the sync cycle: a device whose clock is
off by more fails its cycles saying so, before it commits anything, and syncs again once its clock is right."""

from __future__ import annotations

import datetime
from collections.abc import Callable
from typing import Any

import pytest
from engine.conftest import Device, write

from oaiod.engine import cycle
from oaiod.server_api import ClockSkewError

pytestmark = pytest.mark.integration


def test_a_cycle_with_a_clock_off_by_more_than_69_s_fails_before_committing(
    make_device: Callable[..., Device], monkeypatch: pytest.MonkeyPatch
) -> None:
    device = make_device("alice", "a")
    device.sync()
    offset = [datetime.timedelta(minutes=5)]

    def skewed() -> str:
        return (datetime.datetime.now(datetime.UTC) + offset[0]).strftime("%Y%m%d%H%M%S%f")

    device.api._clock = skewed
    monkeypatch.setattr(device.engine, "_clock_checked", -cycle.CLOCK_CHECK_INTERVAL)  # due now, not in 10 min
    write(device.root / "new.txt", "made on a device with a wrong clock")
    with pytest.raises(ClockSkewError, match="clocks are out of sync by -3"):
        device.sync()
    assert "new.txt" not in _server_paths(device)

    offset[0] = datetime.timedelta(0)
    device.sync()
    assert "new.txt" in _server_paths(device)


def _server_paths(device: Device) -> set[str]:
    """Every file path any object of the user holds on the server (oaiod's manifest, design §1)."""
    files: Any = [(obj.client_values.get("_oaiod") or {}).get("files") or {} for obj in device.api.stampz().objects]
    return {path for manifest in files for path in manifest}
