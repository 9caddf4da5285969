"""Who may read and write a blob of the hub's blob store (:mod:`oaiod.hub.blobstore`).

Access (the key's first component is its *scope*):

- a registered oaio id: read needs a subscription (any right), write and delete need ``U`` or more;
- an unregistered id minted by the caller (``<app>⫻<defused username>﹫…``, files go up before ``register/``):
  only that user, and only while no other user holds blobs there;
- anything else (not an oaio id the hub knows, not minted): the caller's private space, which no other user
  sees (``oaiod storage test`` and the storage conformance suite use it).

A caller who may not read a name gets 404 (the same as a missing name); one who may read but not write, 403.

Checked inside the transaction that reads or changes the name, so the answer holds for that change.
"""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.orm import Session

from oaiod.hub.db import Blob, BlobUpload, Object
from oaiod.hub.errors import Forbidden, NotFound
from oaiod.hub.service import Actor, HubService
from oaiod.model import NO_ACCESS_RIGHT, UPDATE_ACCESS_RIGHT, id_names_user, right_grants

MINTED_MARK = "⫻"  #: defused ``://`` in an id minted by ``oaiod.model.object_id``


@dataclass(frozen=True)
class Access:
    """Where a name lives (``owner`` ``""``: shared under its oaio id; else a user's private space) and what the
    caller may do there."""

    owner: str
    scope: str
    read: bool
    write: bool


def blob_access(db: Session, actor: Actor, name: str) -> Access:
    """Where ``name`` lives and what ``actor`` may do with it (the rules in the module docstring)."""
    scope = name.split("/", 1)[0]
    if db.get(Object, scope) is not None:
        right = HubService._right(db, scope, actor.username)
        return Access("", scope, right != NO_ACCESS_RIGHT, right_grants(right, UPDATE_ACCESS_RIGHT))
    if MINTED_MARK in scope:
        mine = id_names_user(scope, actor.username) and not claimed_by_other(db, scope, actor.username)
        return Access("", scope, mine, mine)
    return Access(actor.username, scope, True, True)


def claimed_by_other(db: Session, scope: str, username: str) -> bool:
    """True when another user holds blobs in this unregistered scope (user names with ``@`` are ambiguous
    in a minted id: the first writer keeps it)."""
    for table in (Blob, BlobUpload):
        query = sa.select(table.id).where(table.owner == "", table.scope == scope, table.creator != username)
        if db.scalar(query.limit(1)) is not None:
            return True
    return False


def check_access(db: Session, actor: Actor, name: str, *, write: bool = False) -> Access:
    """The access to ``name``; 404 when the actor may not read it, 403 when they may not write it."""
    access = blob_access(db, actor, name)
    if not access.read:
        raise NotFound(f"no blob {name!r} that {actor.username!r} may read")
    if write and not access.write:
        raise Forbidden(f"{actor.username!r} may only read the blobs of {access.scope!r}")
    return access
