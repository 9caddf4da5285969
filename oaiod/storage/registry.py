"""Storage backends by csh id, imported only when used, and the one function that opens a backend.

The built-in ids are in :data:`BUILTIN`. Third-party packages add backends through the entry-point group
``oaiod.storage`` (name: the csh id, value: ``module:Class``, a :class:`~oaiod.storage.base.Backend` subclass).
An id registered twice (two packages, or a package shadowing a built-in) is a :class:`ConfigError`: silently
picking one would send files to an unexpected host.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any

from oaiod.errors import ConfigError
from oaiod.storage.base import Backend

if TYPE_CHECKING:
    from oaiod.storage.wrappers import WrapperConfig

ENTRY_POINT_GROUP = "oaiod.storage"

#: csh id -> "module:Class" of the built-in backends
BUILTIN: dict[str, str] = {
    "Local": "oaiod.storage.local:LocalBackend",
    "Hub": "oaiod.storage.hub:HubBackend",
    "WebDav": "oaiod.storage.webdav:WebDavBackend",
    "S3": "oaiod.storage.s3:S3Backend",
    "Rclone": "oaiod.storage.rclone:RcloneBackend",
    # the published client's own hosts (ae.cloud_storage), with its argument names, through rclone
    "Digi": "oaiod.storage.digi:DigiBackend",
    "Goodrive": "oaiod.storage.goodrive:GoodriveBackend",
}

#: top-level module of an optional dependency -> how to install it
INSTALL_HINTS: dict[str, str] = {
    "boto3": "pip install 'oaiod[s3]'",
    "botocore": "pip install 'oaiod[s3]'",
    "s3transfer": "pip install 'oaiod[s3]'",
}


def available_backends() -> dict[str, str]:
    """Every csh id -> ``module:Class``: the built-ins plus the entry points; a duplicate id is a ConfigError."""
    found = dict(BUILTIN)
    for entry in entry_points(group=ENTRY_POINT_GROUP):
        if entry.name in found:
            raise ConfigError(
                entry.name,
                f"storage backend id registered twice: {found[entry.name]} and {entry.value} "
                f"(entry-point group {ENTRY_POINT_GROUP}); uninstall one of them",
            )
        found[entry.name] = entry.value
    return found


def backend_class(csh_id: str) -> type[Backend]:
    """The backend class of ``csh_id``, imported now; a missing optional dependency names its install command."""
    backends = available_backends()
    target = backends.get(csh_id)
    if target is None:
        raise ConfigError("csh_id", f"unknown storage host {csh_id!r}; known: {', '.join(sorted(backends))}")
    module_name, _, attr = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        missing = (exc.name or "").split(".")[0]
        hint = INSTALL_HINTS.get(missing)
        if hint is None and exc.name == module_name:
            raise ConfigError("csh_id", f"storage host {csh_id!r} is not available in this installation") from None
        how = f"; install it with: {hint}" if hint else ""
        raise ConfigError("csh_id", f"storage host {csh_id!r} needs the package {missing!r}{how}") from None
    cls = getattr(module, attr, None)
    if not (isinstance(cls, type) and issubclass(cls, Backend)):
        raise ConfigError("csh_id", f"{target} (storage host {csh_id!r}) is not a storage Backend class")
    return cls


def open_backend(
    csh_id: str, args: Mapping[str, Any], *, wrappers: WrapperConfig | None = None, raw: bool = False
) -> Backend:
    """The backend ``csh_id`` built from its ``csh_args`` and wrapped for retry, limits and logging.

    ``raw`` returns the bare backend (for tests and benchmarks that measure the host itself).
    """
    from oaiod.storage.wrappers import WrapperConfig, wrap_backend

    backend = backend_class(csh_id).from_args(args)
    if raw:
        return backend
    return wrap_backend(backend, wrappers or WrapperConfig())
