"""Share links: read of one file or folder of an object by anyone who holds the URL, without an account.

A link is a row (``share_links``) and a signed, expiring URL of the public download route,
``hub/share/<id>?expires=UNIX&bewit=MAC`` — the seed's ``download`` route with an attached signature, like its
``?bewit=``. ``MAC`` is an HMAC-SHA256 of the id and the expiry with the hub's link key (in ``hub_secrets``, shared
by every hub process of the database, made at the first start), so a forged or altered URL is refused before the
database is asked. Guarantees:

- **Who makes links**: a holder of ``D`` or ``C`` on the object — a link grants read to anyone, which is what
  ``subscribe/`` lets only ``D``/``C`` holders grant (a granter never grants more than their right; a link grants
  ``r``). A read-only or ``U`` subscriber may not (403); a non-subscriber gets 404. The same holders list every
  link of the object and revoke any of them; a link's creator may always revoke their own.
- **What a link grants**: read of its file, or of its folder as a zip (prepared on demand through
  :mod:`oaiod.hub.archives`, polled by the same URL: 202 with the progress and ``Refresh``/``Retry-After`` until
  it is ready) — of the version it pins, or of the newest version at each use. Nothing else: no listing, no
  other path, no other version.
- **When it stops**: at its expiry (410), when revoked (410), when its object is deleted or its creator wiped
  (404: the row goes with them), and when its creator no longer holds ``D``/``C`` on the object (404) — checked at
  every use, never 5xx.
- **Password** (optional): stored as the hub's scrypt hash (:mod:`oaiod.hub.passwords`); sent in a form POST
  (``password=``) or the header ``X-Oaiod-Link-Password``, never in the URL. A right password in a form POST also
  sets a cookie for this link only (an hour, HttpOnly) so a browser's refreshes while a zip is prepared need not
  send it again. Wrong guesses are throttled per link and per process (:data:`GUESSES` a minute, then 429).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import re
import secrets
import threading
import time
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from oaiod.errors import ValidationError
from oaiod.hub.db import Object, ShareLink, stamp_add
from oaiod.hub.errors import Forbidden, Gone, NotAuthenticated, NotFound, RateLimited
from oaiod.hub.loginguard import shared_secret
from oaiod.hub.passwords import MAX_PASSWORD_BYTES, hash_password, verify_password
from oaiod.hub.service import Actor, HubService
from oaiod.hub.versionfiles import Selection, newest_stamp, select
from oaiod.model import DELETE_ACCESS_RIGHT, NO_ACCESS_RIGHT, now_stamp, right_grants, stamp_to_datetime

KEY_FILE = "link-signing.key"  #: where hubs before the shared key kept it (read once, to keep their links valid)
LINK_SECRET = "link-signing"  #: its name in ``hub_secrets``
SHARE_RIGHT = DELETE_ACCESS_RIGHT  #: the right that allows making links (as granting a subscription)
DEFAULT_LIFETIME = 7 * 86400
MAX_LIFETIME = 365 * 86400
MIN_LIFETIME = 60
KEPT_DEAD = 30 * 86400  #: seconds an expired or revoked link is kept (410, listed) before it is deleted (404)
PASS_LIFETIME = 3600  #: seconds a password cookie lets a browser in
GUESSES = 10  #: wrong passwords per link per minute, per hub process
PASSWORD_HEADER = "X-Oaiod-Link-Password"
COOKIE = "oaiod_link"
_ID = re.compile(r"\A[A-Za-z0-9_-]{22}\Z")


def load_key(service: HubService) -> bytes:
    """The hub's link key, shared by every hub process on its database (``hub_secrets``), so a link one process
    signed is valid on all of them. The first process makes it — from the data folder's ``link-signing.key`` when
    an older hub left one there (its links stay valid), else at random."""
    legacy = service.settings.data_dir / KEY_FILE
    with contextlib.suppress(OSError, ValueError):
        text = legacy.read_text().strip()
        if len(text) == 64:
            return shared_secret(service.sessions, LINK_SECRET, seed=bytes.fromhex(text))
    return shared_secret(service.sessions, LINK_SECRET)


@dataclass(frozen=True)
class Grant:
    """What a checked link gives: the selection it reads now, read with its creator's right."""

    link_id: str
    creator: str
    selection: Selection
    has_password: bool


class Links:
    """Every share-link operation of one hub process (thread-safe)."""

    def __init__(self, service: HubService) -> None:
        self.service = service
        self.key = load_key(service)
        self._guesses: dict[str, list[float]] = {}
        self._guard = threading.Lock()

    # -- signatures ----------------------------------------------------------------------------------------------

    def _mac(self, *parts: str) -> str:
        digest = hmac.new(self.key, "\n".join(parts).encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest[:24]).decode()

    def query(self, row: ShareLink) -> str:
        """The URL of a link, relative to the API's base: ``hub/share/<id>?expires=…&bewit=…``."""
        expires = str(int(stamp_to_datetime(row.expires).timestamp()))
        return f"hub/share/{row.id}?expires={expires}&bewit={self._mac('link', row.id, expires)}"

    def pass_cookie(self, grant: Grant) -> str:
        """The cookie value that stands for this link's password for :data:`PASS_LIFETIME` seconds."""
        until = str(int(time.time()) + PASS_LIFETIME)
        with self.service.sessions() as db:
            row = db.get(ShareLink, grant.link_id)
        return f"{until}.{self._mac('pass', grant.link_id, until, (row.password_hash or '') if row else '')}"

    # -- managing ------------------------------------------------------------------------------------------------

    def create(
        self, actor: Actor, oaio_id: str, path: str, stamp: str, lifetime: int, password: str | None
    ) -> dict[str, Any]:
        """A new link to ``path`` (``""``: the whole object) of version ``stamp`` (``""``: the newest at each use)."""
        if not MIN_LIFETIME <= lifetime <= MAX_LIFETIME:
            raise ValidationError("expires_in", f"must be {MIN_LIFETIME} to {MAX_LIFETIME} seconds")
        hashed = _hash(password) if password is not None else None
        with self.service.serialised() as (db, now):
            self._check_share_right(db, actor.username, oaio_id)
            selection = select(db, oaio_id, stamp or newest_stamp(db, oaio_id), path)
            row = ShareLink(
                id=secrets.token_urlsafe(16), oaio_id=oaio_id, creator=actor.username, path=path, stamp=stamp,
                is_folder=selection.is_folder, password_hash=hashed, created=now, expires=stamp_add(now, lifetime),
                revoked=None,
            )  # fmt: skip
            db.add(row)
            self._forget_dead(db, now)
        return self.describe(row)

    def listing(self, actor: Actor, oaio_id: str) -> list[dict[str, Any]]:
        """Every link of an object (revoked and expired ones too, marked), newest first."""
        with self.service.sessions() as db:
            self._check_share_right(db, actor.username, oaio_id)
            rows = db.scalars(
                sa.select(ShareLink).where(ShareLink.oaio_id == oaio_id).order_by(ShareLink.created.desc())
            )
            return [self.describe(row) for row in rows]

    def revoke(self, actor: Actor, link_id: str) -> dict[str, Any]:
        """Revoke a link (its creator, or a ``D``/``C`` holder of its object); revoking twice is harmless."""
        with self.service.serialised() as (db, now):
            row = db.get(ShareLink, link_id) if _ID.match(link_id) else None
            if row is None:
                raise NotFound(f"no link {link_id!r}")
            if row.creator != actor.username:
                self._check_share_right(db, actor.username, row.oaio_id, missing=f"no link {link_id!r}")
            row.revoked = row.revoked or now
        return self.describe(row)

    def describe(self, row: ShareLink) -> dict[str, Any]:
        now = now_stamp()
        state = "revoked" if row.revoked else "expired" if row.expires < now else "active"
        return {
            "id": row.id, "oaio_id": row.oaio_id, "path": row.path, "stamp": row.stamp, "folder": row.is_folder,
            "creator": row.creator, "created": row.created, "expires": row.expires, "revoked": row.revoked,
            "password": row.password_hash is not None, "state": state, "url": self.query(row),
        }  # fmt: skip

    @staticmethod
    def _forget_dead(db: Session, now: str) -> None:
        """Links expired or revoked :data:`KEPT_DEAD` seconds ago go (until then they answer 410 and are listed)."""
        horizon = stamp_add(now, -KEPT_DEAD)
        db.execute(sa.delete(ShareLink).where(sa.or_(ShareLink.expires < horizon, ShareLink.revoked < horizon)))

    def _check_share_right(self, db: Session, username: str, oaio_id: str, missing: str = "") -> None:
        right = HubService._right(db, oaio_id, username) if db.get(Object, oaio_id) is not None else NO_ACCESS_RIGHT
        if right == NO_ACCESS_RIGHT:
            raise NotFound(missing or f"no object {oaio_id!r} that {username!r} may read")
        if not right_grants(right, SHARE_RIGHT):
            raise Forbidden(
                f"links to {oaio_id!r} need the right D or C (as sharing it does); {username!r} has {right}"
            )

    # -- using ---------------------------------------------------------------------------------------------------

    def open(self, link_id: str, expires: str, bewit: str) -> Grant:
        """Check a link's URL and its row (module docstring); what it grants now. The password is checked apart
        (:meth:`check_password`): a link without one is open to whoever holds the URL."""
        if not _ID.match(link_id) or not expires.isascii() or not expires.isdigit() or len(expires) > 12:
            raise NotFound("no such link")
        if not hmac.compare_digest(self._mac("link", link_id, expires).encode(), bewit.encode("utf-8", "replace")):
            raise NotFound("no such link (its signature does not match)")
        if int(expires) < time.time():
            raise Gone("this link expired")
        with self.service.sessions() as db:
            row = db.get(ShareLink, link_id)
            if row is None:
                raise NotFound("no such link (it was removed with its object or its creator)")
            if row.revoked:
                raise Gone("this link was revoked")
            if row.expires < now_stamp():
                raise Gone("this link expired")
            right = HubService._right(db, row.oaio_id, row.creator)
            if not right_grants(right, SHARE_RIGHT):
                raise NotFound("this link no longer works: its creator may no longer share the object")
            selection = select(db, row.oaio_id, row.stamp or newest_stamp(db, row.oaio_id), row.path)
            return Grant(row.id, row.creator, selection, row.password_hash is not None)

    def check_password(self, grant: Grant, password: str | None, cookie: str) -> None:
        """401 when the link needs a password and none came (nor a valid cookie), 403 when it is wrong, 429 after
        :data:`GUESSES` wrong ones within a minute."""
        if not grant.has_password:
            return
        with self.service.sessions() as db:
            row = db.get(ShareLink, grant.link_id)
            stored = row.password_hash if row is not None else None
        if password is None:
            until, _, mac = cookie.partition(".")
            expected = self._mac("pass", grant.link_id, until, stored or "")
            if until.isdigit() and int(until) > time.time() and hmac.compare_digest(mac.encode(), expected.encode()):
                return
            raise NotAuthenticated(f"this link needs its password: POST it as the form field password, or send it "
                                   f"in the header {PASSWORD_HEADER}", password_required=True)  # fmt: skip
        self._throttle(grant.link_id)
        if not verify_password(password, stored):
            self._failed(grant.link_id)
            raise Forbidden("wrong password for this link")

    def _throttle(self, link_id: str) -> None:
        with self._guard:
            recent = [when for when in self._guesses.get(link_id, []) if when > time.monotonic() - 60]
            self._guesses[link_id] = recent
            if len(recent) >= GUESSES:
                raise RateLimited("too many wrong passwords for this link; wait a minute", retry_after=60)

    def _failed(self, link_id: str) -> None:
        with self._guard:
            self._guesses.setdefault(link_id, []).append(time.monotonic())


def _hash(password: str) -> str:
    if not password or len(password.encode("utf-8", "replace")) > MAX_PASSWORD_BYTES:
        raise ValidationError("password", f"must be 1 to {MAX_PASSWORD_BYTES} bytes")
    try:
        return hash_password(password)
    except (ValueError, UnicodeEncodeError):
        raise ValidationError("password", "must be text (no lone surrogates)") from None
