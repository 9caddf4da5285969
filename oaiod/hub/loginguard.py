"""Failed-login throttling that slows a password guesser without locking the account's owner out.

Who is limited, for one ``login/`` attempt of NAME from ADDRESS (each limit counts failures in a sliding window of
``login_window`` seconds; reaching it locks only that key, for a lockout that doubles with each repeat, up to
``login_lockout_max``):

=====================  =====================================  ==============================================
key                    limit (HubSettings)                    applies to
=====================  =====================================  ==============================================
NAME from a device     ``login_max_failures`` (10)            a client holding a device token for NAME
NAME from ADDRESS      ``login_max_failures`` (10)            every other client
ADDRESS, any name      ``login_address_max_failures`` (50)    every other client
NAME, any address      ``login_name_max_failures`` (100)      every other client
=====================  =====================================  ==============================================

A **device token** is what a client gets (the ``oaiod_device`` cookie) after a successful login: it names the
user and is signed with a secret only the hub knows, so a guesser cannot make one. Its holder is limited only by
its own failures, so neither a guesser at the owner's name, nor one behind the owner's address (a shared NAT),
nor a spray of names from many addresses can deny the owner's devices. A client without one — a new device —
can be slowed by a distributed guesser (the per-name limit); that is what keeps such a guesser from trying more
than ``login_name_max_failures`` passwords a window.

Counts and the token's secret live in the hub's database (tables ``login_failures`` and ``hub_secrets``), so every
hub process on it — several workers, several machines behind a load balancer — counts the same failures and
accepts the same device tokens, and both survive restarts. A guesser spreading attempts over N hub processes gets
no more tries than against one. A ``login-device.key`` file left in the data folder by an older hub becomes the
shared secret on first use, so device tokens issued before stay valid. (The database holds password hashes
already: whoever reads it gains nothing from the secret that the hashes would not give them.)
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import secrets
import threading
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from oaiod.hub.db import HubSecret, LoginFailure
from oaiod.hub.errors import RateLimited

SECRET_FILE_NAME = "login-device.key"
DEVICE_COOKIE = "oaiod_device"
DEVICE_TOKEN_LIFETIME = 365 * 24 * 3600.0  #: seconds a device token stays valid; renewed at every login
MAX_KEYS = 100_000  #: remembered keys beyond which quiet ones are forgotten (a spray of names costs bounded memory)
PURGE_INTERVAL = 60.0  #: seconds between two purges of quiet keys from the database, per process
DEVICE_SECRET = "login-device"  #: the name of the device-token key in ``hub_secrets``


@dataclass
class _Record:
    failures: list[float] = field(default_factory=list)  #: times of the failures in the window, oldest first
    lockouts: int = 0  #: lockouts so far; the next lasts ``window * 2**lockouts``
    locked_until: float = 0.0
    last: float = 0.0


class Counter(ABC):
    """Failures per key in a sliding window; ``limit`` of them lock the key, each lockout twice the last.

    Subclasses keep the records; :meth:`_count` is the rule. Times are seconds on the wall clock."""

    def __init__(self, limit: int, window: float, lockout_max: float) -> None:
        self.limit = limit
        self.window = window
        self.lockout_max = lockout_max

    def _count(self, record: _Record, now: float) -> None:
        record.last = now
        record.failures = [*(t for t in record.failures if t > now - self.window), now]
        if len(record.failures) >= self.limit:
            record.locked_until = now + min(self.window * 2**record.lockouts, self.lockout_max)
            record.lockouts += 1
            record.failures = []

    def _quiet(self, record: _Record, now: float) -> bool:
        """No failure in the window and no lockout within ``lockout_max`` (its doubling ends): forgettable."""
        return record.last <= now - self.window and record.locked_until <= now - self.lockout_max

    @abstractmethod
    def locked_for(self, key: str, now: float) -> float:
        """Seconds ``key`` stays locked (0: free)."""

    @abstractmethod
    def failed(self, key: str, now: float) -> None:
        """Count a failure of ``key`` (atomically, whoever else counts at once)."""

    @abstractmethod
    def forget(self, key: str) -> None:
        """Start ``key`` afresh."""

    @abstractmethod
    def forget_quiet(self, now: float) -> None:
        """Drop the records of quiet keys (see :meth:`_quiet`)."""


class FailureCounter(Counter):
    """A :class:`Counter` in this process's memory (at most :data:`MAX_KEYS` keys before quiet ones go)."""

    def __init__(self, limit: int, window: float, lockout_max: float) -> None:
        super().__init__(limit, window, lockout_max)
        self._records: dict[str, _Record] = {}

    def locked_for(self, key: str, now: float) -> float:
        record = self._records.get(key)
        return max(0.0, record.locked_until - now) if record is not None else 0.0

    def failed(self, key: str, now: float) -> None:
        self._count(self._records.setdefault(key, _Record()), now)
        if len(self._records) > MAX_KEYS:
            self.forget_quiet(now)

    def forget(self, key: str) -> None:
        self._records.pop(key, None)

    def forget_quiet(self, now: float) -> None:
        self._records = {key: record for key, record in self._records.items() if not self._quiet(record, now)}


class SharedFailureCounter(Counter):
    """A :class:`Counter` in the database (``login_failures``), shared by every hub process on it.

    A key is stored as the sha256 of ``name`` and the key. A failure is counted in a transaction that holds the
    key's row (inserted if missing, then locked), so concurrent failures through several processes all count."""

    def __init__(self, name: str, limit: int, window: float, lockout_max: float, sessions: sessionmaker[Session]):
        super().__init__(limit, window, lockout_max)
        self.name = name
        self._sessions = sessions
        self._last_purge = 0.0

    def _hash(self, key: str) -> str:
        return hashlib.sha256(f"{self.name}\0{key}".encode()).hexdigest()

    def locked_for(self, key: str, now: float) -> float:
        with self._sessions() as db:
            until = db.scalar(sa.select(LoginFailure.locked_until).where(LoginFailure.key_hash == self._hash(key)))
        return max(0.0, until - now) if until is not None else 0.0

    def failed(self, key: str, now: float) -> None:
        key_hash = self._hash(key)
        with self._sessions.begin() as db:
            _insert_missing(db, LoginFailure, key_hash=key_hash, failures=[], lockouts=0, locked_until=0.0, last=0.0)
            row = db.scalars(sa.select(LoginFailure).where(LoginFailure.key_hash == key_hash).with_for_update()).one()
            record = _Record(list(row.failures), row.lockouts, row.locked_until, row.last)
            self._count(record, now)
            row.failures, row.lockouts, row.locked_until, row.last = (
                record.failures, record.lockouts, record.locked_until, record.last
            )  # fmt: skip
        if now - self._last_purge > PURGE_INTERVAL:
            self._last_purge = now
            self.forget_quiet(now)

    def forget(self, key: str) -> None:
        with self._sessions.begin() as db:
            db.execute(sa.delete(LoginFailure).where(LoginFailure.key_hash == self._hash(key)))

    def forget_quiet(self, now: float) -> None:
        with self._sessions.begin() as db:
            db.execute(
                sa.delete(LoginFailure).where(
                    LoginFailure.last <= now - self.window, LoginFailure.locked_until <= now - self.lockout_max
                )
            )


def _insert_missing(db: Session, table: type[LoginFailure] | type[HubSecret], **values: object) -> None:
    """``INSERT … ON CONFLICT DO NOTHING`` of one row (a row another process inserted first stays)."""
    from sqlalchemy.dialects import postgresql, sqlite

    insert = postgresql.insert if db.get_bind().dialect.name == "postgresql" else sqlite.insert
    db.execute(insert(table).values(**values).on_conflict_do_nothing())


class LoginThrottle:
    """The limits of the module docstring; thread-safe (logins run in worker threads)."""

    def __init__(self, pairs: Counter, addresses: Counter, names: Counter) -> None:
        self.pairs = pairs  #: NAME@ADDRESS and NAME@device keys
        self.addresses = addresses
        self.names = names
        self._lock = threading.Lock()

    @classmethod
    def shared(
        cls, sessions: sessionmaker[Session], pair: int, address: int, name: int, window: float, lockout_max: float
    ) -> LoginThrottle:
        """The hub's throttle: counters in the database, shared by every hub process on it."""
        return cls(
            SharedFailureCounter("pair", pair, window, lockout_max, sessions),
            SharedFailureCounter("address", address, window, lockout_max, sessions),
            SharedFailureCounter("name", name, window, lockout_max, sessions),
        )

    def _keys(self, username: str, address: str, device: str) -> list[tuple[Counter, str]]:
        if device:
            return [(self.pairs, f"{username}\0device\0{device}")]
        return [(self.pairs, f"{username}\0{address}"), (self.addresses, address), (self.names, username)]

    def check(self, username: str, address: str, device: str) -> None:
        """Raise :class:`RateLimited` when a key this attempt counts against is locked.

        ``device`` is the id of a valid device token for ``username``, or empty."""
        now = time.time()
        with self._lock:
            wait = max(counter.locked_for(key, now) for counter, key in self._keys(username, address, device))
        if wait > 0:
            retry_after = int(wait) + 1
            raise RateLimited(f"too many failed logins; retry in {retry_after} s", retry_after)

    def failed(self, username: str, address: str, device: str) -> None:
        now = time.time()
        with self._lock:
            for counter, key in self._keys(username, address, device):
                counter.failed(key, now)

    def succeeded(self, username: str, address: str, device: str) -> None:
        """The owner got in: their own key starts afresh (the address and name counts stay, or a guesser could
        clear them by logging in to an account of their own)."""
        with self._lock:
            self.pairs.forget(self._keys(username, address, device)[0][1])


class DeviceTokens:
    """Tokens ``DEVICE.ISSUED.MAC`` with MAC = HMAC-SHA256(secret, NAME, DEVICE, ISSUED): valid for one user name
    until ``lifetime`` seconds after issue. Nothing is stored per token."""

    def __init__(self, secret: bytes, lifetime: float) -> None:
        self._secret = secret
        self.lifetime = lifetime

    @classmethod
    def shared(cls, sessions: sessionmaker[Session], data_dir: Path, lifetime: float) -> DeviceTokens:
        """Tokens signed with the database's secret (every hub process on it agrees), made on first use from an
        older hub's ``login-device.key`` in ``data_dir`` when there is one, else at random."""
        return cls(shared_secret(sessions, DEVICE_SECRET, data_dir / SECRET_FILE_NAME), lifetime)

    def _mac(self, username: str, device: str, issued: str) -> str:
        message = "\0".join((username, device, issued)).encode()
        digest = hmac.new(self._secret, message, hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).decode().rstrip("=")

    def issue(self, username: str, device: str = "") -> str:
        """A token for ``username`` (keeping ``device`` when renewing one)."""
        device = device or secrets.token_urlsafe(12)
        issued = str(int(time.time()))
        return f"{device}.{issued}.{self._mac(username, device, issued)}"

    def device(self, token: str, username: str) -> str:
        """The device id of a valid, unexpired token for ``username``; empty for anything else."""
        parts = token.split(".") if 0 < len(token) <= 200 else []
        if len(parts) != 3 or not parts[1].isascii() or not parts[1].isdigit():
            return ""
        device, issued, mac = parts
        if not hmac.compare_digest(mac.encode(), self._mac(username, device, issued).encode()):
            return ""
        return device if time.time() - int(issued) < self.lifetime else ""


def shared_secret(
    sessions: sessionmaker[Session], name: str, legacy: Path | None = None, *, seed: bytes = b""
) -> bytes:
    """The secret ``name`` in ``hub_secrets``; the first process to ask makes it (from ``seed`` or the file
    ``legacy`` when it holds one of 32 to 64 bytes, else 32 random bytes) and every other one reads that one."""
    with sessions() as db:
        stored = db.scalar(sa.select(HubSecret.value).where(HubSecret.name == name))
    if stored is None:
        made = seed
        if legacy is not None and not made:
            with contextlib.suppress(OSError):
                made = legacy.read_bytes()
        if len(made) < 32 or len(made) > 64:
            made = secrets.token_bytes(32)
        with sessions.begin() as db:
            _insert_missing(db, HubSecret, name=name, value=made.hex())
        with sessions() as db:
            stored = db.scalars(sa.select(HubSecret.value).where(HubSecret.name == name)).one()
    return bytes.fromhex(stored)
