"""Objects written straight into a hub's database, as a hub from before the id check of ``register/`` (or a hostile
plain oaio server) could hold them: the adversary tests' way to give a victim an object the API now refuses."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from oaiod.hub.db import Object, Subscription, Version
from oaiod.hub.server import HubServer
from oaiod.model import CREATE_ACCESS_RIGHT, OaiObject


def forge(
    hub: HubServer,
    storage_root: Path,
    like: OaiObject,
    oaio_id: str,
    *,
    attacker: str,
    victim: str,
    right: str,
    values: dict[str, Any] | None = None,
) -> str:
    """Store ``like`` (the attacker's own object) again under ``oaio_id``, registered by ``attacker`` and shared
    with ``victim``: its files are copied under the new id on the shared Local storage."""
    assert hub.service is not None
    shutil.copytree(storage_root / like.oaio_id, storage_root / oaio_id)
    with hub.service._writing() as (db, stamp):
        row = Object(
            oaio_id=oaio_id,
            client_stamp=like.client_stamp,
            client_values=values or like.client_values,
            server_stamp="",
            server_values={},
            csh_id=like.csh_id,
            username=attacker,
            device_id="evil",
            app_id="oaiod",
            creator=attacker,
            registered=stamp,
            change_stamp=stamp,
        )
        db.add(row)
        db.flush()
        db.add(
            Version(
                oaio_id=oaio_id,
                stamp=like.client_stamp,
                values=row.client_values,
                csh_id=like.csh_id,
                username=attacker,
                device_id="evil",
                app_id="oaiod",
                created=stamp,
            )
        )
        db.add(Subscription(oaio_id=oaio_id, username=attacker, access_right=CREATE_ACCESS_RIGHT, change_stamp=stamp))
        db.add(Subscription(oaio_id=oaio_id, username=victim, access_right=right, change_stamp=stamp))
    return oaio_id
