"""The errors of the storage boundary: everything a cloud storage host (CSH) can make go wrong.

Every backend translates its library's errors (``OSError``, ``requests``, ``botocore``, rclone's answers) into
this tree where they enter; code above a backend catches only these::

    OaiodError                                         oaiod.errors                            kind
    └── StorageError                 any failure of a storage host
        ├── ObjectNotFound           the key (or its prefix) does not exist                  not_found
        ├── StoragePermissionDenied  wrong credentials, a read-only folder, an ACL           permission
        ├── QuotaExceeded            the host is full or the account's quota is used up      quota
        ├── TransientStorageError    connection lost, timeout, 429/5xx, SlowDown             transient
        ├── PermanentStorageError    anything else the host refused; retrying will not help  invalid
        │   └── LocalFileChanged     the local side of a batch transfer vanished or changed  conflict
        │                            while it was read
        └── InvalidKey               an unsafe key, going in or coming out (also a           invalid
                                     ValidationError)

Only :class:`TransientStorageError` (``err.transient``, the kind of :mod:`oaiod.errors`) is retried (by
:class:`oaiod.storage.wrappers.RetryingBackend`); every other error stops at once.
"""

from __future__ import annotations

from oaiod.errors import FailureKind, OaiodError, ValidationError


class StorageError(OaiodError):
    """A storage host failed; ``key`` is the object concerned, when there is one."""

    def __init__(self, message: str, *, key: str | None = None) -> None:
        super().__init__(message)
        self.key = key


class ObjectNotFound(StorageError):
    """The key does not exist on the host."""

    kind = FailureKind.NOT_FOUND


class StoragePermissionDenied(StorageError):
    """The host refused access: bad credentials, a read-only folder or missing rights."""

    kind = FailureKind.PERMISSION


class QuotaExceeded(StorageError):
    """The host has no room left for this object."""

    kind = FailureKind.QUOTA


class TransientStorageError(StorageError):
    """A failure that may pass: a dropped connection, a timeout, throttling or a 5xx answer."""

    kind = FailureKind.TRANSIENT


class PermanentStorageError(StorageError):
    """The host refused the call for a reason that retrying will not change."""

    kind = FailureKind.INVALID


class LocalFileChanged(PermanentStorageError):
    """The local file of a ``put_many`` item is missing, unreadable, or changed (size, mtime or inode) while it was
    read; or the local path of a ``get_many`` item already exists. The host may hold a copy of what was read."""

    kind = FailureKind.CONFLICT


class InvalidKey(StorageError, ValidationError):
    """A key is unsafe: absolute, not normalized, with ``..`` or control characters."""

    def __init__(self, field: str, reason: str) -> None:
        ValidationError.__init__(self, field, reason)
        self.key = None
