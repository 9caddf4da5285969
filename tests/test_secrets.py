"""Secrets come from one of their forms, never leak through repr/str, and unsafe files are refused."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from oaiod.errors import ConfigError
from oaiod.secrets import MASK, Secret, secret_from_args, without_secrets

keyring = pytest.importorskip("keyring")
from keyring.backend import KeyringBackend  # noqa: E402


class MemoryKeyring(KeyringBackend):
    """An in-memory keyring: no OS keyring service (Secret Service, Keychain) can run in this sandbox."""

    priority = 1  # type: ignore[assignment]

    def __init__(self) -> None:
        super().__init__()
        self.entries: dict[tuple[str, str], str] = {}

    def get_password(self, service: str, username: str) -> str | None:
        return self.entries.get((service, username))

    def set_password(self, service: str, username: str, password: str) -> None:
        self.entries[(service, username)] = password

    def delete_password(self, service: str, username: str) -> None:
        self.entries.pop((service, username), None)


def test_secret_is_masked() -> None:
    secret = Secret("hunter2")
    assert "hunter2" not in repr(secret) and "hunter2" not in str(secret) and "hunter2" not in f"{secret}"
    assert secret.reveal() == "hunter2"
    assert secret == Secret("hunter2") and bool(secret)


def test_env_form(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OAIOD_TEST_PW", "from-env")
    assert secret_from_args({"password_env": "OAIOD_TEST_PW"}, "password").reveal() == "from-env"
    monkeypatch.delenv("OAIOD_TEST_PW")
    with pytest.raises(ConfigError, match="password_env: environment variable OAIOD_TEST_PW is not set"):
        secret_from_args({"password_env": "OAIOD_TEST_PW"}, "password")


def test_file_form_needs_owner_only_mode(tmp_path: Path) -> None:
    file = tmp_path / "pw"
    file.write_text("from-file\nignored second line\n")
    file.chmod(0o600)
    assert secret_from_args({"password_file": str(file)}, "password").reveal() == "from-file"
    file.chmod(0o644)
    with pytest.raises(ConfigError, match=r"password_file: .* readable by others \(mode 644\)"):
        secret_from_args({"password_file": str(file)}, "password")
    with pytest.raises(ConfigError, match="cannot read"):
        secret_from_args({"password_file": str(tmp_path / "missing")}, "password")
    empty = tmp_path / "empty"
    empty.write_text("")
    empty.chmod(0o600)
    with pytest.raises(ConfigError, match="is empty"):
        secret_from_args({"password_file": str(empty)}, "password")
    with pytest.raises(ConfigError, match="not a regular file"):
        secret_from_args({"password_file": str(tmp_path)}, "password")


def test_keyring_form() -> None:
    previous = keyring.get_keyring()
    memory = MemoryKeyring()
    memory.set_password("oaiod", "alice", "from-keyring")
    keyring.set_keyring(memory)
    try:
        assert secret_from_args({"password": "keyring:oaiod/alice"}, "password").reveal() == "from-keyring"
        with pytest.raises(ConfigError, match="no keyring entry"):
            secret_from_args({"password": "keyring:oaiod/bob"}, "password")
        with pytest.raises(ConfigError, match="SERVICE/USER"):
            secret_from_args({"password": "keyring:oaiod"}, "password")
    finally:
        keyring.set_keyring(previous)


def test_exactly_one_form(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="give only one of password, password_env"):
        secret_from_args({"password": "x", "password_env": "Y"}, "password")
    with pytest.raises(ConfigError, match="password: missing"):
        secret_from_args({}, "password")
    assert secret_from_args({}, "password", required=False) is None
    with pytest.raises(ConfigError, match="must be a string"):
        secret_from_args({"password": 42}, "password")
    given = Secret("already")
    assert secret_from_args({"password": given}, "password") is given


def test_display_copy_masks_inline_secrets_only() -> None:
    args = {"url": "https://dav", "password": "pw", "password_env": "VAR", "token": ""}
    assert without_secrets(args, ("password", "token")) == {
        "url": "https://dav",
        "password": MASK,
        "password_env": "VAR",
        "token": "",
    }


@pytest.mark.skipif(not hasattr(os, "getuid") or os.getuid() != 0, reason="needs root to chown a file")
def test_file_of_another_user_is_refused(tmp_path: Path) -> None:
    file = tmp_path / "pw"
    file.write_text("x")
    file.chmod(0o600)
    os.chown(file, 65534, 65534)
    with pytest.raises(ConfigError, match="belongs to another user"):
        secret_from_args({"password_file": str(file)}, "password")
