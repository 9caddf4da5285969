"""The root of oaiod's exceptions, and the errors that belong to no single boundary.

Each boundary owns a small tree below :class:`OaiodError` and draws it in its module docstring::

    OaiodError
    ├── ValidationError        untrusted input refused where it enters (model, hub, daemon)   here
    ├── ConfigError            a bad configuration key or value                               here
    ├── RemoteError            anything from an HTTP peer                                     oaiod.http
    └── StorageError           anything from a cloud storage host                             oaiod.storage.errors

Code outside a boundary never catches a library's exceptions (``requests``, ``botocore``, ``sqlalchemy``);
the boundary translates them into this tree, and the daemon decides what to log, retry or show.

Every class says what kind of failure it is (:class:`FailureKind`, the class attribute ``kind``), and that one
attribute answers both questions asked of a failure: *may a retry soon help?* (``err.transient``, read by the
retry loops of the HTTP layer and the storage wrappers and by the scheduler's offline backoff) and *how long does
a failed item wait?* (the per-item backoff of the state database, :func:`failure_kind`).
"""

from __future__ import annotations

import errno
import re
from collections.abc import Mapping
from enum import StrEnum
from typing import Any, ClassVar


class FailureKind(StrEnum):
    """What kind of failure an error is; stored with a failed item and shown by ``ctl status``."""

    TRANSIENT = "transient"  #: may pass by itself (network, timeout, 429, 5xx): retry soon
    AUTH = "auth"  #: the credentials were refused: nothing changes until they do
    PERMISSION = "permission"  #: no right to do this (403, a read-only folder)
    QUOTA = "quota"  #: no room left, or too large for the host
    NOT_FOUND = "not_found"  #: the object or file is gone
    CONFLICT = "conflict"  #: a race with another device or a local edit: the next merge resolves it
    INVALID = "invalid"  #: refused as malformed, or a failure that declares no kind


class OaiodError(Exception):
    """Base of every error oaiod raises on purpose.

    A subclass sets ``kind``; one that does not (None) is classified by :func:`failure_kind`: by the ``OSError``
    it was raised from, else as :attr:`FailureKind.INVALID`.
    """

    kind: ClassVar[FailureKind | None] = None

    @property
    def transient(self) -> bool:
        """Whether repeating the same call soon may succeed (the one "retry may help" of every boundary)."""
        return self.kind is FailureKind.TRANSIENT


#: errno values and their kind; any other ``OSError`` counts as transient (an I/O error of the moment)
_ERRNO_KINDS: dict[int, FailureKind] = {
    errno.EACCES: FailureKind.PERMISSION,
    errno.EPERM: FailureKind.PERMISSION,
    errno.EROFS: FailureKind.PERMISSION,
    errno.ENOSPC: FailureKind.QUOTA,
    errno.EDQUOT: FailureKind.QUOTA,
    errno.EFBIG: FailureKind.QUOTA,
    errno.ENOENT: FailureKind.NOT_FOUND,
    errno.ENOTDIR: FailureKind.NOT_FOUND,
    errno.EEXIST: FailureKind.CONFLICT,
    errno.ENOTEMPTY: FailureKind.CONFLICT,
    errno.ENAMETOOLONG: FailureKind.INVALID,
    errno.EINVAL: FailureKind.INVALID,
    errno.EILSEQ: FailureKind.INVALID,
    errno.EISDIR: FailureKind.INVALID,
}


def failure_kind(exc: BaseException) -> FailureKind:
    """The kind of a failure: the class's own ``kind``; for an ``OSError`` (or an :class:`OaiodError` without a
    kind raised ``from`` one) its errno's; :attr:`FailureKind.INVALID` for anything unclassified."""
    kind = getattr(exc, "kind", None)
    if isinstance(exc, OaiodError) and isinstance(kind, FailureKind):
        return kind
    cause = exc if isinstance(exc, OSError) else exc.__cause__
    if isinstance(cause, OSError):
        return _ERRNO_KINDS.get(cause.errno or 0, FailureKind.TRANSIENT)
    return FailureKind.INVALID


class ValidationError(OaiodError, ValueError):
    """Untrusted input was refused; ``field`` names what was wrong and ``reason`` says why."""

    kind = FailureKind.INVALID

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


def describe(exc: BaseException) -> str:
    """A failure as one line for people (``ctl``, the status page, the failures the state keeps): what went wrong
    and, where it helps, what to do — never a raw ``POST http://…/api/subscribe/ answered 404 …`` (that stays in the
    DEBUG log). The server's own reason is kept
    (the hub says ``no user named 'nobody'``); transport errors become "the server is unreachable (why)"."""
    from oaiod.http import AuthError, HTTPStatusError, TransportError  # oaiod.http builds on this module

    if isinstance(exc, AuthError):
        return (
            f"the server refused the login ({_server_reason(exc) or 'wrong user name or password'}); "
            "check server.username and the password in the config, then run: oaiod ctl reload"
        )
    if isinstance(exc, HTTPStatusError):
        reason = _server_reason(exc)
        path = exc.url.split("/api/", 1)[-1].split("?", 1)[0].strip("/") or exc.url
        if reason:
            return f"the server refused it: {reason}"
        return f"the server answered {exc.status} to {path}"
    if isinstance(exc, TransportError):
        return f"the server is unreachable ({_transport_reason(str(exc))})"
    return _strip_urls(str(exc))  # a storage or engine failure may quote a request too


def _server_reason(exc: Any) -> str:
    body = exc.body
    if isinstance(body, Mapping):
        for key in ("reason", "detail", "message"):
            value = body.get(key)
            if isinstance(value, str) and value:
                return value
    return ""


def _transport_reason(message: str) -> str:
    errno_text = re.search(r"\[Errno -?\d+\] ([^)\]']+)", message)
    if errno_text:
        return errno_text.group(1).strip().rstrip(".").lower()
    if "timed out" in message.lower() or "timeout" in message.lower():
        return "no answer in time"
    return _strip_urls(message.rsplit(": ", 1)[-1])


def _strip_urls(message: str) -> str:
    return re.sub(r"(GET|POST|PUT|DELETE|HEAD) https?://\S+", "a request", message)
