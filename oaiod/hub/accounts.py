"""Accounts, login sessions and storage hosts: the hub's administrative state.

Mixed into :class:`oaiod.hub.service.HubService`, which provides ``sessions``, ``settings`` and ``_writing``.
Session tokens are random 32-byte values; the database keeps only their sha256, so a leaked database does
not hand out logins. Passwords are hashed outside the write lock (scrypt takes tens of milliseconds). Failed
logins are throttled as :mod:`oaiod.hub.loginguard` describes.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from oaiod.hub.db import LoginSession, StorageHost, User, stamp_add
from oaiod.hub.errors import Conflict, NotAuthenticated, NotFound, RateLimited
from oaiod.hub.loginguard import DEVICE_TOKEN_LIFETIME, DeviceTokens, LoginThrottle
from oaiod.hub.passwords import hash_password, verify_password
from oaiod.hub.settings import HubSettings
from oaiod.model import now_stamp, validate_name, validate_username

log = logging.getLogger("oaiod.hub")

_GUARD_LOCK = threading.Lock()
SECRET_KEY_WORDS = ("password", "passwd", "secret", "token", "key", "cred", "auth")  # cred: Goodrive's sa_cred_dict


def token_hash(token: str) -> str:
    """What the sessions table stores for a session token."""
    return hashlib.sha256(token.encode()).hexdigest()


def looks_secret(key: str) -> bool:
    """True for a storage host argument whose value should be masked when shown (passwords, keys, tokens)."""
    lowered = key.lower()
    return any(word in lowered for word in SECRET_KEY_WORDS)


class AccountsMixin:
    """Users, sessions and storage hosts (see the module docstring)."""

    settings: HubSettings
    sessions: sessionmaker[Session]
    _writing: Callable[..., AbstractContextManager[tuple[Session, str]]]
    _removing: Callable[[], AbstractContextManager[tuple[Session, str, Any]]]
    _wipe: Callable[[Session, str, Any], None]
    _throttle: LoginThrottle | None = None
    _devices: DeviceTokens | None = None

    # -- login sessions -----------------------------------------------------------------------------------------

    def login(self, username: str, password: str, address: str, device_token: str = "") -> tuple[str, User, str]:
        """A new session token, the user and a device token for valid credentials; 401 otherwise, 429 when the
        throttle (:mod:`oaiod.hub.loginguard`) says so. ``device_token`` is what the client kept from an earlier
        login (empty: none); the answer's device token renews it or starts one."""
        throttle, devices = self._login_guard()
        device = devices.device(device_token, username) if device_token else ""
        try:
            throttle.check(username, address, device)
        except RateLimited:
            via = " with a known device" if device else ""
            log.warning("hub: login for %r from %s%s refused after too many failures", username, address, via)
            raise
        with self.sessions() as db:
            user = db.get(User, username)
        if not verify_password(password, user.password_hash if user is not None else None) or user is None:
            throttle.failed(username, address, device)
            log.info("hub: failed login for %r from %s", username, address)
            raise NotAuthenticated("wrong username or password")
        throttle.succeeded(username, address, device)
        token = secrets.token_urlsafe(32)
        with self._writing(changes=False) as (db, stamp):
            db.execute(sa.delete(LoginSession).where(LoginSession.expires < stamp))
            expires = stamp_add(stamp, self.settings.session_lifetime)
            db.add(LoginSession(token_hash=token_hash(token), username=username, created=stamp, expires=expires))
        return token, user, devices.issue(username, device)

    def _login_guard(self) -> tuple[LoginThrottle, DeviceTokens]:
        with _GUARD_LOCK:  # made on first use: reads (or creates) the device secret in the database
            if self._throttle is not None and self._devices is not None:
                return self._throttle, self._devices
            settings = self.settings
            self._devices = DeviceTokens.shared(self.sessions, settings.data_dir, DEVICE_TOKEN_LIFETIME)
            self._throttle = LoginThrottle.shared(
                self.sessions,
                settings.login_max_failures,
                settings.login_address_max_failures,
                settings.login_name_max_failures,
                settings.login_window,
                settings.login_lockout_max,
            )
            return self._throttle, self._devices

    def session_user(self, token: str) -> User | None:
        """The user of a live session, or None (unknown or expired token)."""
        if not token or len(token) > 200:
            return None
        with self.sessions() as db:
            row = db.execute(
                sa.select(User)
                .join(LoginSession, LoginSession.username == User.username)
                .where(LoginSession.token_hash == token_hash(token), LoginSession.expires > now_stamp())
            ).scalar_one_or_none()
        return row

    def logout(self, token: str) -> None:
        """End a session (nothing happens for an unknown token)."""
        if token:
            with self._writing(changes=False) as (db, _stamp):
                db.execute(sa.delete(LoginSession).where(LoginSession.token_hash == token_hash(token)))

    def user(self, username: str) -> User | None:
        with self.sessions() as db:
            return db.get(User, username)

    # -- users (admin) ------------------------------------------------------------------------------------------

    def add_user(self, username: str, password: str | None, *, supervisor: bool = False) -> None:
        """Create a user; ``password`` None makes one that can be subscribed but cannot log in."""
        validate_username(username)
        hashed = hash_password(password) if password is not None else None
        with self._writing(changes=False) as (db, stamp):
            if db.get(User, username) is not None:
                raise Conflict(f"user {username!r} exists already")
            db.add(User(username=username, password_hash=hashed, is_supervisor=supervisor, created=stamp))

    def set_password(self, username: str, password: str | None) -> None:
        """Change a password (None: the user can no longer log in); ends the user's sessions."""
        hashed = hash_password(password) if password is not None else None
        with self._writing(changes=False) as (db, _stamp):
            user = db.get(User, username)
            if user is None:
                raise NotFound(f"no user named {username!r}")
            user.password_hash = hashed
            db.execute(sa.delete(LoginSession).where(LoginSession.username == username))

    def delete_user(self, username: str) -> None:
        """Wipe a user as ``wipe_user/`` does (for the admin CLI)."""
        with self._removing() as (db, _stamp, removal):
            if db.get(User, username) is None:
                raise NotFound(f"no user named {username!r}")
            self._wipe(db, username, removal)

    def list_users(self) -> list[dict[str, Any]]:
        with self.sessions() as db:
            rows = db.scalars(sa.select(User).order_by(User.username))
            return [
                {
                    "username": row.username,
                    "is_supervisor": row.is_supervisor,
                    "can_login": row.password_hash is not None,
                    "created": row.created,
                }
                for row in rows
            ]

    # -- storage hosts ------------------------------------------------------------------------------------------

    def storage_args(self, csh_id: str) -> dict[str, Any]:
        """The keyword arguments of a storage host; 404 when unknown."""
        with self.sessions() as db:
            row = db.get(StorageHost, csh_id)
            if row is None:
                raise NotFound(f"no cloud storage host {csh_id!r}")
            return dict(row.kwargs)

    def set_storage(self, csh_id: str, kwargs: dict[str, Any]) -> None:
        """Register or replace a storage host's keyword arguments."""
        validate_name(csh_id, "csh_id")
        with self._writing(changes=False) as (db, stamp):
            row = db.get(StorageHost, csh_id)
            if row is None:
                db.add(StorageHost(csh_id=csh_id, kwargs=kwargs, updated=stamp))
            else:
                row.kwargs, row.updated = kwargs, stamp

    def delete_storage(self, csh_id: str) -> None:
        with self._writing(changes=False) as (db, _stamp):
            if db.get(StorageHost, csh_id) is None:
                raise NotFound(f"no cloud storage host {csh_id!r}")
            db.execute(sa.delete(StorageHost).where(StorageHost.csh_id == csh_id))

    def list_storage(self) -> Iterator[tuple[str, dict[str, Any]]]:
        with self.sessions() as db:
            rows = db.scalars(sa.select(StorageHost).order_by(StorageHost.csh_id)).all()
        return iter([(row.csh_id, dict(row.kwargs)) for row in rows])
