"""Where passwords, tokens and keys come from, and how they stay out of logs and ``ps``.

A secret is given in exactly one of four forms: inline (config only, never a command-line argument), the name
of an environment variable (``<name>_env``), a file readable by its owner only (``<name>_file``), or the OS
keyring (``keyring:SERVICE/USER`` in the config; needs the ``keyring`` extra). The value is wrapped in
:class:`Secret`, whose ``repr``/``str`` are masked, so an accidental log line shows ``***``.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from oaiod.errors import ConfigError

MASK = "***"


class Secret:
    """A secret value; ``str()`` and ``repr()`` are masked, :meth:`reveal` gives the value."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return f"Secret({MASK!r})"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __bool__(self) -> bool:
        return bool(self._value)


def read_secret_file(path: str | os.PathLike[str], key: str) -> Secret:
    """The first line of ``path``; refused unless the file belongs to this user and no one else may read it."""
    file = Path(path).expanduser()
    try:
        info = file.stat()
    except OSError as exc:
        raise ConfigError(key, f"cannot read secret file {file}: {exc.strerror}") from None
    if not stat.S_ISREG(info.st_mode):
        raise ConfigError(key, f"secret file {file} is not a regular file")
    if info.st_mode & 0o077:
        raise ConfigError(
            key, f"secret file {file} is readable by others (mode {info.st_mode & 0o777:o}), chmod 600 it"
        )
    if hasattr(os, "getuid") and info.st_uid != os.getuid():
        raise ConfigError(key, f"secret file {file} belongs to another user")
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(key, f"cannot read secret file {file}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError(key, f"secret file {file} is not UTF-8 text") from None
    lines = text.splitlines()
    value = lines[0] if lines else ""
    if not value:
        raise ConfigError(key, f"secret file {file} is empty")
    return Secret(value)


def read_secret_env(name: str, key: str) -> Secret:
    """The value of environment variable ``name``; an unset or empty variable is an error."""
    value = os.environ.get(name, "")
    if not value:
        raise ConfigError(key, f"environment variable {name} is not set")
    return Secret(value)


def read_secret_keyring(spec: str, key: str) -> Secret:
    """A secret from the OS keyring; ``spec`` is ``SERVICE/USER``."""
    service, _, user = spec.partition("/")
    if not service or not user:
        raise ConfigError(key, "keyring reference must read keyring:SERVICE/USER")
    try:
        import keyring
        import keyring.errors
    except ImportError:
        raise ConfigError(key, "the OS keyring needs the keyring extra: pip install 'oaiod[keyring]'") from None
    try:
        value = keyring.get_password(service, user)
    except keyring.errors.KeyringError as exc:
        raise ConfigError(key, f"keyring lookup failed: {exc}") from None
    if not value:
        raise ConfigError(key, f"no keyring entry for service {service!r} and user {user!r}")
    return Secret(value)


def secret_from_args(args: Mapping[str, Any], name: str, *, required: bool = True) -> Secret | None:
    """The secret ``name`` from a mapping of arguments, in any of its forms.

    ``name`` inline (a ``keyring:SERVICE/USER`` value reads the keyring), ``<name>_env`` or ``<name>_file``;
    more than one form is an error, as is none when ``required``.
    """
    forms = [form for form in (name, f"{name}_env", f"{name}_file") if args.get(form) not in (None, "")]
    if len(forms) > 1:
        raise ConfigError(name, f"give only one of {', '.join(forms)}")
    if not forms:
        if required:
            raise ConfigError(name, f"missing; give {name}_env (a variable name) or {name}_file (a 0600 file)")
        return None
    form = forms[0]
    raw = args[form]
    if isinstance(raw, Secret):
        return raw
    if not isinstance(raw, str):
        raise ConfigError(form, f"must be a string, not {type(raw).__name__}")
    if form.endswith("_env"):
        return read_secret_env(raw, form)
    if form.endswith("_file"):
        return read_secret_file(raw, form)
    if raw.startswith("keyring:"):
        return read_secret_keyring(raw[len("keyring:") :], form)
    return Secret(raw)


def without_secrets(args: Mapping[str, Any], names: tuple[str, ...]) -> dict[str, Any]:
    """A copy of ``args`` for display with inline secrets masked (``*_env`` and ``*_file`` only name a place)."""
    return {k: (MASK if k in names and v not in (None, "") else v) for k, v in args.items()}
