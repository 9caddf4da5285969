"""The errors of :mod:`oaiod.client`: one tree, each a class an app can catch (never a message to parse)::

OaiodError
└── ClientError              anything that went wrong talking to the daemon
    ├── NotRunning           no daemon runs for that config (start it: oaiod run, or its service)
    ├── ConnectionLost       the control connection failed or timed out mid-call
    └── CommandError         the daemon answered the call with a failure; ``failure`` is its kind
        ├── NotFound         no object of that id is synced by this daemon
        ├── Refused          a bad argument, or no right to do it (``failure`` says which)
        ├── Offline          the server or a storage host is unreachable now: try again later
        └── ValuesClash      the values were merged, but a key was changed differently elsewhere
                             (``clashes``: which key kept which value; nothing was lost silently)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from oaiod.daemon.ctl.protocol import CommandFailed, CtlError, NoDaemon
from oaiod.errors import FailureKind, OaiodError

if TYPE_CHECKING:
    from oaiod.client.api import Clash


class ClientError(OaiodError):
    """Talking to the daemon failed."""


class NotRunning(ClientError):
    """No daemon runs for that config."""


class ConnectionLost(ClientError):
    """The control connection failed or timed out during a call."""


class CommandError(ClientError):
    """The daemon answered with a failure; ``failure`` is its :class:`~oaiod.errors.FailureKind`."""

    def __init__(self, message: str, failure: FailureKind = FailureKind.INVALID) -> None:
        super().__init__(message)
        self.failure = failure


class NotFound(CommandError):
    """No object of that id is synced here."""


class Refused(CommandError):
    """A bad argument, or no right to do it."""


class Offline(CommandError):
    """The server or a storage host is unreachable now."""


class ValuesClash(CommandError):
    """A key was changed differently on another device: ``clashes`` says which value each key kept."""

    def __init__(self, clashes: list[Clash]) -> None:
        keys = ", ".join(sorted({clash.key for clash in clashes}))
        super().__init__(f"values changed on another device too: {keys}", FailureKind.CONFLICT)
        self.clashes = clashes


def translated(exc: CtlError) -> ClientError:
    """The control protocol's error as this tree's (at the boundary: apps never see ``CtlError``)."""
    if isinstance(exc, NoDaemon):
        return NotRunning(str(exc))
    if not isinstance(exc, CommandFailed):
        return ConnectionLost(str(exc))
    if exc.failure is FailureKind.NOT_FOUND:
        return NotFound(str(exc), exc.failure)
    if exc.failure is FailureKind.TRANSIENT:
        return Offline(str(exc), exc.failure)
    return Refused(str(exc), exc.failure)
