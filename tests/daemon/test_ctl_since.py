"""``ctl history --since``: how long ago (``90m``, ``2h``, ``3d``, ``1w``) or an ISO date or time, local unless it
names its zone, becomes the UTC stamp the state database compares with; anything else is refused naming the
argument."""

from __future__ import annotations

import datetime as dt

import pytest

from oaiod.daemon.ctl.commands import _since
from oaiod.errors import ValidationError

NOW = dt.datetime(2026, 12, 4, 12, 0, 0, tzinfo=dt.UTC)


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("2h", "20261204100000000000"),
        ("90m", "20261204103000000000"),
        ("3d", "20261201120000000000"),
        (" 1W ", "20261127120000000000"),
        ("2026-12-01T08:30:00+01:00", "20261201073000000000"),
        ("2026-12-01T08:30Z", "20261201083000000000"),
    ],
)
def test_since_ago_or_a_zoned_time(given: str, expected: str) -> None:
    assert _since(given, "since", NOW) == expected


def test_since_a_local_date_is_local_midnight() -> None:
    local_midnight = dt.datetime(2026, 12, 1).astimezone()
    assert _since("2026-12-01", "since", NOW) == local_midnight.astimezone(dt.UTC).strftime("%Y%m%d%H%M%S%f")


@pytest.mark.parametrize("given", ["yesterday", "", "2x", "-3d", "9999999d", 5, None])
def test_since_refuses_what_it_cannot_read(given: object) -> None:
    with pytest.raises(ValidationError, match="since"):
        _since(given, "since", NOW)
