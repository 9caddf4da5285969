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

Counts live in memory, per process (a restart forgets them); the token's secret is a file in the data folder
(mode 0600), so tokens survive restarts.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import os
import secrets
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

from oaiod.hub.errors import RateLimited

SECRET_FILE_NAME = "login-device.key"
DEVICE_COOKIE = "oaiod_device"
DEVICE_TOKEN_LIFETIME = 365 * 24 * 3600.0  #: seconds a device token stays valid; renewed at every login
MAX_KEYS = 100_000  #: remembered keys beyond which quiet ones are forgotten (a spray of names costs bounded memory)


@dataclass
class _Record:
    failures: deque[float] = field(default_factory=deque)
    lockouts: int = 0  #: lockouts so far; the next lasts ``window * 2**lockouts``
    locked_until: float = 0.0
    last: float = 0.0


class FailureCounter:
    """Failures per key in a sliding window; ``limit`` of them lock the key, each lockout twice the last."""

    def __init__(self, limit: int, window: float, lockout_max: float) -> None:
        self.limit = limit
        self.window = window
        self.lockout_max = lockout_max
        self._records: dict[str, _Record] = {}

    def locked_for(self, key: str, now: float) -> float:
        """Seconds ``key`` stays locked (0: free)."""
        record = self._records.get(key)
        return max(0.0, record.locked_until - now) if record is not None else 0.0

    def failed(self, key: str, now: float) -> None:
        record = self._records.setdefault(key, _Record())
        record.last = now
        record.failures.append(now)
        while record.failures[0] <= now - self.window:
            record.failures.popleft()
        if len(record.failures) >= self.limit:
            record.locked_until = now + min(self.window * 2**record.lockouts, self.lockout_max)
            record.lockouts += 1
            record.failures.clear()
        if len(self._records) > MAX_KEYS:
            self.forget_quiet(now)

    def forget(self, key: str) -> None:
        self._records.pop(key, None)

    def forget_quiet(self, now: float) -> None:
        """Drop keys with no failure in the window and no lockout within ``lockout_max`` (their doubling ends)."""
        self._records = {
            key: record
            for key, record in self._records.items()
            if record.last > now - self.window or record.locked_until > now - self.lockout_max
        }


class LoginThrottle:
    """The limits of the module docstring; thread-safe (logins run in worker threads)."""

    def __init__(self, pair_limit: int, address_limit: int, name_limit: int, window: float, lockout_max: float) -> None:
        self.pairs = FailureCounter(pair_limit, window, lockout_max)  #: NAME@ADDRESS and NAME@device keys
        self.addresses = FailureCounter(address_limit, window, lockout_max)
        self.names = FailureCounter(name_limit, window, lockout_max)
        self._lock = threading.Lock()

    def _keys(self, username: str, address: str, device: str) -> list[tuple[FailureCounter, str]]:
        if device:
            return [(self.pairs, f"{username}\0device\0{device}")]
        return [(self.pairs, f"{username}\0{address}"), (self.addresses, address), (self.names, username)]

    def check(self, username: str, address: str, device: str) -> None:
        """Raise :class:`RateLimited` when a key this attempt counts against is locked.

        ``device`` is the id of a valid device token for ``username``, or empty."""
        now = time.monotonic()
        with self._lock:
            wait = max(counter.locked_for(key, now) for counter, key in self._keys(username, address, device))
        if wait > 0:
            retry_after = int(wait) + 1
            raise RateLimited(f"too many failed logins; retry in {retry_after} s", retry_after)

    def failed(self, username: str, address: str, device: str) -> None:
        now = time.monotonic()
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
    def in_data_dir(cls, data_dir: Path, lifetime: float) -> DeviceTokens:
        return cls(_load_secret(data_dir / SECRET_FILE_NAME), lifetime)

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


def _load_secret(path: Path) -> bytes:
    """The secret in ``path``, created (mode 0600) on first use; two processes starting at once agree on one."""
    with contextlib.suppress(FileNotFoundError):
        secret = path.read_bytes()
        if len(secret) >= 32:
            return secret
    temp = path.with_name(f".{path.name}.{secrets.token_hex(6)}")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, secrets.token_bytes(32))
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        os.link(temp, path)  # never replaces a secret another process wrote meanwhile
    except FileExistsError:
        if len(path.read_bytes()) < 32:  # truncated: a short key would make tokens guessable
            os.replace(temp, path)
    finally:
        temp.unlink(missing_ok=True)
    return path.read_bytes()
