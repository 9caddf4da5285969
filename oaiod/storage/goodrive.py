"""The ``Goodrive`` storage host: Google Drive (API v3), a host of the published client, via rclone.

The published client (``ae.cloud_storage.GoodriveApi``) takes ``root_folder`` (the id of a Drive folder,
``root`` for My Drive) and one of ``sa_cred_dict`` (a service account's key as a dict), ``sa_cred_file`` (the
path of that key file) or ``oa_cred_file`` (an OAuth client), in that order of preference, and stores a
version's file at ``<oaio_id>/<client_stamp>/<path>`` under the root folder, each path part a Drive folder: the
key layout of every oaiod backend under its root. Here the same arguments become rclone's ``drive`` remote
(``root_folder_id``, ``scope=drive``, ``use_trash=false``: the published client deletes for good), driven by
:class:`~oaiod.storage.rclone.RcloneBackend`:

* ``sa_cred_dict`` (a dict, or its JSON text) → ``service_account_credentials``, in rcd's environment only;
* ``sa_cred_file`` → ``service_account_file`` (its path; the file is read here only to check it);
* ``oa_cred_file`` → ``client_id``/``client_secret`` and ``token`` (environment only). It may be the token file
  the published client writes after its browser log-in (``.token.json``, an ``authorized_user`` JSON), or the
  client-secrets file itself with that ``.token.json`` beside it. A daemon cannot open a browser: without a
  refresh token it refuses, saying so.

Unlike the published client, no default credential file is looked up in the working directory (a daemon's is
arbitrary): one of the three must be given.

Tested up to the log-in, against a token endpoint on loopback: rclone signs its JWT with the service account's
key for the drive scope, and refreshes the OAuth token with its client. Not verified (Google Drive cannot be
reached from the test machines): anything Drive itself answers, and that rclone finds the files the published
client wrote (Drive allows two files of one name in a folder; each client then picks one).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from oaiod.errors import ConfigError
from oaiod.secrets import Secret
from oaiod.storage.rclone import RcloneBackend, RemoteConfig
from oaiod.storage.toolkit import check_args

REMOTE_NAME = "oaiod_goodrive"
#: what the published client writes after an OAuth log-in, in its working directory
PUBLISHED_TOKEN_FILE = ".token.json"
_FOLDER_ID = re.compile(r"[A-Za-z0-9_-]{1,200}")


def _json_object(text: str, key: str, what: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError:
        raise ConfigError(key, f"is not JSON ({what})") from None
    if not isinstance(value, dict):
        raise ConfigError(key, f"is not a JSON object ({what})")
    return value


def _read_json_file(path: Any, key: str, what: str) -> tuple[Path, dict[str, Any]]:
    if not isinstance(path, str) or not path:
        raise ConfigError(key, f"must be the path of {what}")
    file = Path(path).expanduser().absolute()
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(key, f"cannot read {file}: {getattr(exc, 'strerror', None) or exc}") from None
    return file, _json_object(text, key, f"{file} should hold {what}")


def _service_account(info: Mapping[str, Any], key: str) -> None:
    missing = [name for name in ("client_email", "private_key") if not info.get(name)]
    if info.get("type") != "service_account" or missing:
        raise ConfigError(key, "is not a Google service account key (type service_account, client_email, private_key)")


def _oauth_options(key: str, path: Any) -> tuple[dict[str, str], dict[str, Secret]]:
    """``client_id`` and the secret ``client_secret`` and ``token`` (rclone's form) from an OAuth credential file."""
    file, info = _read_json_file(path, key, "OAuth credentials")
    client = info.get("installed") or info.get("web")
    if isinstance(client, dict):  # client secrets: the token is what the published client cached after log-in
        token_file = file.parent / PUBLISHED_TOKEN_FILE
        if not token_file.is_file():
            raise ConfigError(
                key, f"holds an OAuth client but no token is beside it ({token_file}); log in once with the "
                "published client, or give its token file as oa_cred_file",
            )  # fmt: skip
        _file, token = _read_json_file(str(token_file), key, "the published client's OAuth token")
        info = {**token, "client_id": client.get("client_id"), "client_secret": client.get("client_secret")}
    missing = [name for name in ("client_id", "client_secret", "refresh_token") if not info.get(name)]
    if missing:
        raise ConfigError(key, f"{file} has no {', '.join(missing)} (need an OAuth token with a refresh token)")
    # no access token: rclone refreshes at once with the refresh token (an expired one would be refreshed anyway)
    token = {"access_token": "", "token_type": "Bearer", "refresh_token": info["refresh_token"],
             "expiry": "0001-01-01T00:00:00Z"}  # fmt: skip
    secrets = {"client_secret": Secret(str(info["client_secret"])), "token": Secret(json.dumps(token))}
    return {"client_id": str(info["client_id"])}, secrets


def goodrive_remote(args: Mapping[str, Any]) -> RemoteConfig:
    """The rclone remote that the published client's Goodrive arguments name; a ConfigError names a bad argument."""
    checked = check_args(args, "Goodrive", required=(), optional=("root_folder", "sa_cred_dict", "sa_cred_file",
                                                                  "oa_cred_file"))  # fmt: skip
    root = checked.get("root_folder") or "root"
    if not isinstance(root, str) or not _FOLDER_ID.fullmatch(root):
        raise ConfigError("root_folder", f"must be a Google Drive folder id (or root), not {root!r}")
    options = {"scope": "drive", "use_trash": "false"}
    if root != "root":
        options["root_folder_id"] = root
    secrets: dict[str, Secret] = {}
    sa_dict, sa_file, oa_file = (checked.get(name) for name in ("sa_cred_dict", "sa_cred_file", "oa_cred_file"))
    if sa_dict:  # the published client's order: the dict, then the service account file if it exists, then OAuth
        info = _json_object(sa_dict, "sa_cred_dict", "a service account key") if isinstance(sa_dict, str) else sa_dict
        if not isinstance(info, dict):
            raise ConfigError("sa_cred_dict", f"must be a dict (or its JSON text), not {type(info).__name__}")
        _service_account(info, "sa_cred_dict")
        secrets["service_account_credentials"] = Secret(json.dumps(info))
    elif sa_file and (not oa_file or Path(str(sa_file)).expanduser().is_file()):
        file, info = _read_json_file(sa_file, "sa_cred_file", "a service account key")
        _service_account(info, "sa_cred_file")
        options["service_account_file"] = str(file)
    elif oa_file:
        oauth_options, oauth_secrets = _oauth_options("oa_cred_file", oa_file)
        options.update(oauth_options)
        secrets.update(oauth_secrets)
    else:
        raise ConfigError("sa_cred_dict", "missing for Goodrive: give sa_cred_dict, sa_cred_file or oa_cred_file")
    return RemoteConfig(name=REMOTE_NAME, type="drive", options=options, secrets=secrets)


class GoodriveBackend(RcloneBackend):
    """Objects in a Google Drive folder, laid out as the published client lays them out."""

    csh_id = "Goodrive"

    @classmethod
    def from_args(cls, args: Mapping[str, Any]) -> RcloneBackend:
        return cls.from_remote(goodrive_remote(args))
