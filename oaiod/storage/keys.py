"""Storage keys: validated on the way into a backend and on the way out of a listing.

A key is ``<oaio_id>/<client_stamp>/<path>`` (see :func:`oaiod.model.storage_key`), but backends accept any key
that is a safe relative path: ``/``-separated, normalized, no ``.`` or ``..``, no control characters, no
backslash (:func:`oaiod.model.validate_file_path`). A prefix is a key naming a folder: listing ``a/b`` yields
``a/b/c`` but never ``a/bc``.
"""

from __future__ import annotations

import posixpath
import secrets

from oaiod.errors import ValidationError
from oaiod.model import validate_file_path
from oaiod.storage.errors import InvalidKey

#: the name prefix of partial objects that backends write before an atomic rename; never a valid key part
TEMP_PREFIX = ".oaiod-tmp-"
_TEMP_PART = f"/{TEMP_PREFIX}"


def validate_key(key: object, fld: str = "key") -> str:
    """``key`` when it is a safe relative path, else :class:`InvalidKey`."""
    try:
        validate_file_path(key, fld)
    except ValidationError as exc:
        raise InvalidKey(exc.field, exc.reason) from None
    assert isinstance(key, str)
    if key.startswith(TEMP_PREFIX) or _TEMP_PART in key:  # a component starting with it (two C-speed tests)
        raise InvalidKey(fld, f"key {key[:80]!r} uses the reserved name prefix {TEMP_PREFIX}")
    return key


def validate_prefix(prefix: object, fld: str = "prefix") -> str:
    """A folder prefix: ``""`` (everything) or a valid key; one trailing ``/`` is dropped."""
    if prefix == "":
        return ""
    if isinstance(prefix, str) and prefix.endswith("/") and len(prefix) > 1:
        prefix = prefix[:-1]
    return validate_key(prefix, fld)


def join_key(prefix: str, rest: str) -> str:
    """``prefix/rest``, or ``rest`` under the empty prefix."""
    return f"{prefix}/{rest}" if prefix else rest


def is_under(key: str, prefix: str) -> bool:
    """True when ``key`` lies in the folder ``prefix`` (component-wise, so ``a/bc`` is not under ``a/b``)."""
    return not prefix or key.startswith(prefix + "/")


def temp_name(key: str) -> str:
    """A fresh temporary key beside ``key``, for upload-then-rename on hosts that have a rename."""
    folder = posixpath.dirname(key)
    return join_key(folder, f"{TEMP_PREFIX}{secrets.token_hex(8)}")
