"""The root of oaiod's exceptions, and the errors that belong to no single boundary.

Each boundary owns a small tree below :class:`OaiodError` and draws it in its module docstring::

    OaiodError
    ├── ValidationError        untrusted input refused where it enters (model, hub, daemon)   here
    ├── ConfigError            a bad configuration key or value                               here
    ├── RemoteError            anything from an HTTP peer                                     oaiod.http
    └── StorageError           anything from a cloud storage host                             oaiod.storage.errors

Code outside a boundary never catches a library's exceptions (``requests``, ``botocore``, ``sqlalchemy``);
the boundary translates them into this tree, and the daemon decides what to log, retry or show.
"""

from __future__ import annotations


class OaiodError(Exception):
    """Base of every error oaiod raises on purpose."""


class ValidationError(OaiodError, ValueError):
    """Untrusted input was refused; ``field`` names what was wrong and ``reason`` says why."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


class ConfigError(OaiodError):
    """A configuration key or value is wrong; the message is one line naming the key and the reason."""

    def __init__(self, key: str, reason: str, source: str = "") -> None:
        where = f"{source}: " if source else ""
        super().__init__(f"{where}{key}: {reason}")
        self.key = key
        self.reason = reason
        self.source = source
