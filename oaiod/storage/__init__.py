"""Cloud storage hosts (CSH): one :class:`~oaiod.storage.base.Backend` interface, one backend module per host.

Open a backend with :func:`~oaiod.storage.registry.open_backend` (registry + wrappers in one place); catch only
the errors of :mod:`oaiod.storage.errors`.
"""

from oaiod.storage.base import Backend, Capabilities, ObjectInfo, Transfer, Transferred
from oaiod.storage.errors import (
    InvalidKey,
    LocalFileChanged,
    ObjectNotFound,
    PermanentStorageError,
    QuotaExceeded,
    StorageError,
    StoragePermissionDenied,
    TransientStorageError,
)
from oaiod.storage.registry import backend_class, open_backend

__all__ = [
    "Backend",
    "Capabilities",
    "InvalidKey",
    "LocalFileChanged",
    "ObjectInfo",
    "ObjectNotFound",
    "PermanentStorageError",
    "QuotaExceeded",
    "StorageError",
    "StoragePermissionDenied",
    "Transfer",
    "Transferred",
    "TransientStorageError",
    "backend_class",
    "open_backend",
]
