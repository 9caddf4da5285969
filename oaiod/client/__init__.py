"""``oaiod.client``: the Python API for apps — a running daemon's oaio objects, with the published client's verbs.

::

    from oaiod import client

    oaio = client.connect()  # the daemon of the default config (or connect("~/.config/oaiod/work.toml"))
    note = oaio.register_object({"_name": "settings", "colour": "blue"})
    oaio.update_object(note.oaio_id, {"size": 3})
    for change in oaio.changes():
        print(change.change, change.oaio_id, oaio.values(change.oaio_id))

Importing it starts nothing and needs no daemon; :func:`connect` checks that one answers. The daemon does the
syncing (see :mod:`oaiod.client.api`); errors are the classes of :mod:`oaiod.client.errors`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from oaiod.client.api import Change, Clash, Client, ObjectInfo, Registered, Synced, UserAccess
from oaiod.client.errors import (
    ClientError,
    CommandError,
    ConnectionLost,
    NotFound,
    NotRunning,
    Offline,
    Refused,
    ValuesClash,
    translated,
)

if TYPE_CHECKING:
    from oaiod.daemon.config import Config

__all__ = [
    "Change",
    "Clash",
    "Client",
    "ClientError",
    "CommandError",
    "ConnectionLost",
    "NotFound",
    "NotRunning",
    "ObjectInfo",
    "Offline",
    "Refused",
    "Registered",
    "Synced",
    "UserAccess",
    "ValuesClash",
    "connect",
]


def connect(config: str | os.PathLike[str] | Config | None = None, timeout: float | None = 60.0) -> Client:
    """A :class:`Client` of the daemon that runs with ``config`` (a config file or name as ``oaiod --config``
    takes, or a loaded config; None: ``$OAIOD_CONFIG``, else the default config). :class:`NotRunning` when no
    daemon answers."""
    from oaiod.daemon.config import Config, config_file, load_config
    from oaiod.daemon.ctl.protocol import CtlClient, CtlError
    from oaiod.errors import ConfigError

    try:
        if isinstance(config, Config):
            loaded = config
        else:
            given = config if config is not None else os.environ.get("OAIOD_CONFIG")  # as ``oaiod`` itself
            loaded = load_config(config_file(Path(given)) if given else None)
    except ConfigError as exc:
        raise ClientError(f"config error: {exc}") from None
    try:
        CtlClient(loaded.paths.socket, timeout=timeout).call("ping")
    except CtlError as exc:
        raise translated(exc) from None
    return Client(loaded.paths.socket, loaded.client.root, timeout)
