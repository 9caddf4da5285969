"""The ``Digi`` storage host: Digi Storage (a Koofr service), the published client's default host, via rclone.

The published client (``ae.cloud_storage.DigiApi``) talks to ``https://digistorage.es`` with the arguments
``root_folder``, ``email`` and ``password``, and stores a version's file at ``<root_folder>/<oaio_id>/
<client_stamp>/<path>``: the key layout of every oaiod backend under its root, so objects either client writes
are read by the other. Here the same arguments become rclone's ``koofr`` remote with that endpoint (provider
``other``: rclone's ``digistorage`` provider is the Romanian service at storage.rcs-rds.ro, a different one),
driven by :class:`~oaiod.storage.rclone.RcloneBackend`. The password reaches rclone obscured, in rcd's
environment only; besides inline (what the published client reads from ``csh_args``) it may be given as
``password_env`` / ``password_file``.

Tested against a Koofr-API server on loopback (``tests/storage/koofr_server.py``) through rclone's real koofr
remote, beside the published client's own ``DigiApi``: each reads the other's files. Not verified (the service
cannot be reached from the test machines):

* the log-in: rclone sends ``email:password`` as HTTP basic auth on every call, where the published client trades
  them for a token at ``/token``. Koofr services take basic auth with an *application* password (made in the
  account's settings); whether Digi Storage takes the account password there too is unknown — if not, ``password``
  must be an application password, which the published client may then not accept;
* the mount: rclone uses the account's primary mount, the published client the one named ``DIGIstorage``;
* Koofr names are case-insensitive (rclone says so): two files of one version whose paths differ only in case
  collide there, as they would on the published client's Digi.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from oaiod.errors import ConfigError
from oaiod.secrets import secret_from_args
from oaiod.storage.rclone import RcloneBackend, RemoteConfig
from oaiod.storage.toolkit import check_args, secret_arg_names

#: the host the published client (ae.cloud_storage.DigiApi 0.3.8) talks to
DIGI_ENDPOINT = "https://digistorage.es"
REMOTE_NAME = "oaiod_digi"


def clean_root_folder(value: Any, csh_id: str) -> str:
    """``root_folder`` as a folder path without leading/trailing ``/``; refused when it could leave the root."""
    if not isinstance(value, str):
        raise ConfigError("root_folder", f"must be a folder path for {csh_id}, not {type(value).__name__}")
    parts = value.strip("/").split("/") if value.strip("/") else []
    if any(part in ("", ".", "..") for part in parts) or any(ord(char) < 32 or ord(char) == 127 for char in value):
        raise ConfigError("root_folder", f"{value!r} is not a plain folder path (no //, ., .. or control characters)")
    return "/".join(parts)


def digi_remote(args: Mapping[str, Any]) -> RemoteConfig:
    """The rclone remote that the published client's Digi arguments name; a ConfigError names a bad argument."""
    checked = check_args(args, "Digi", required=("email",), optional=("root_folder", *secret_arg_names("password")))
    email = checked["email"]
    if not isinstance(email, str) or "@" not in email or any(char.isspace() for char in email):
        raise ConfigError("email", f"must be the Digi Storage account's email address, not {email!r}")
    password = secret_from_args(checked, "password")
    assert password is not None  # required
    return RemoteConfig(
        name=REMOTE_NAME,
        type="koofr",
        path=clean_root_folder(checked.get("root_folder") or "", "Digi"),
        options={"provider": "other", "endpoint": DIGI_ENDPOINT, "user": email},
        secrets={"password": password},
        obscured=frozenset({"password"}),
    )


class DigiBackend(RcloneBackend):
    """Objects on Digi Storage under ``root_folder``, laid out as the published client lays them out."""

    csh_id = "Digi"

    @classmethod
    def from_args(cls, args: Mapping[str, Any]) -> RcloneBackend:
        return cls.from_remote(digi_remote(args))
