"""Password hashing with scrypt (stdlib): a per-user random salt, parameters kept in the hash string.

Format: ``scrypt$<n>$<r>$<p>$<salt b64>$<hash b64>``, so parameters can be raised later without breaking
stored hashes. Verification compares in constant time and burns the same work for unknown users.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

SCRYPT_N = 2**14
SCRYPT_R = 8
SCRYPT_P = 1
KEY_BYTES = 32
MAX_PASSWORD_BYTES = 1024  #: longer passwords are refused, so a login cannot make the hub hash megabytes

_DUMMY_HASH = ""


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def _derive(password: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(password.encode(), salt=salt, n=n, r=r, p=p, maxmem=256 * 1024 * 1024, dklen=KEY_BYTES)


def hash_password(password: str) -> str:
    """A new hash string for ``password`` with a fresh random salt."""
    if not password:
        raise ValueError("a password must not be empty")
    if len(password.encode()) > MAX_PASSWORD_BYTES:
        raise ValueError(f"a password must be at most {MAX_PASSWORD_BYTES} bytes")
    salt = secrets.token_bytes(16)
    key = _derive(password, salt, SCRYPT_N, SCRYPT_R, SCRYPT_P)
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${_b64(salt)}${_b64(key)}"


def verify_password(password: str, stored: str | None) -> bool:
    """True when ``password`` matches ``stored``; ``None`` (a user who cannot log in) never matches.

    Does the full KDF work even when there is nothing to compare, so timing does not tell whether a user exists.
    """
    global _DUMMY_HASH
    if not _DUMMY_HASH:
        _DUMMY_HASH = hash_password("dummy password")
    candidate = stored or _DUMMY_HASH
    if len(password.encode()) > MAX_PASSWORD_BYTES:
        return False
    try:
        scheme, n, r, p, salt_b64, key_b64 = candidate.split("$")
        if scheme != "scrypt":
            return False
        salt, key = base64.b64decode(salt_b64), base64.b64decode(key_b64)
        derived = _derive(password, salt, int(n), int(r), int(p))
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(derived, key) and stored is not None
