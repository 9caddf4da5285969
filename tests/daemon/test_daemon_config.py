"""The daemon config: every bad key or value names the key in one line; per-instance paths never collide."""

from __future__ import annotations

import os
import stat
import tomllib
from pathlib import Path

import pytest

from oaiod.daemon.config import Config, config_from_dict, derive_paths, device_id, instance_name, load_config
from oaiod.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
REMOTE = {"url": "https://hub.example.org/api/", "username": "alice", "password_env": "OAIOD_TEST_PW"}

BAD_CONFIGS = [
    ({"sync": {"interval": "fast"}}, "sync.interval", 'must be a number of seconds > 0, got "fast"'),
    ({"sync": {"interval": 0}}, "sync.interval", "> 0"),
    ({"sync": {"interval": -5}}, "sync.interval", "> 0"),
    ({"sync": {"interval": True}}, "sync.interval", "got true"),
    ({"sync": {"interval": float("nan")}}, "sync.interval", "number of seconds"),
    ({"sync": {"debounce": -0.1}}, "sync.debounce", ">= 0"),
    ({"sync": {"trash_days": "1w"}}, "sync.trash_days", "number of days"),
    ({"sync": {"mass_delete_ratio": 1.5}}, "sync.mass_delete_ratio", "<= 1"),
    ({"sync": {"mass_delete_ratio": 0}}, "sync.mass_delete_ratio", "> 0"),
    ({"sync": {"mass_delete_min": 2.5}}, "sync.mass_delete_min", "whole number"),
    ({"sync": {"ignore": "*.tmp"}}, "sync.ignore", "list of gitignore patterns"),
    ({"sync": {"ignore": ["ok", ""]}}, "sync.ignore", "list of gitignore patterns"),
    ({"sync": {"intervall": 5}}, "sync.intervall", "unknown key"),
    ({"synk": {"interval": 5}}, "synk", "unknown section"),
    ({"sync": 5}, "sync", "must be a table"),
    ({"limits": {"upload": -1}}, "limits.upload", ">= 0"),
    ({"limits": {"download": "1M"}}, "limits.download", "bytes/s"),
    ({"limits": {"connections": 0}}, "limits.connections", "between 1 and 64"),
    ({"limits": {"connections": 1000}}, "limits.connections", "between 1 and 64"),
    ({"log": {"level": "LOUD"}}, "log.level", "must be one of DEBUG"),
    ({"log": {"file": ""}}, "log.file", "must be a path"),
    ({"log": {"backups": -1}}, "log.backups", "between 0 and 100"),
    ({"client": {"device_id": "my laptop"}}, "client.device_id", "letters, digits"),
    ({"client": {"device_id": "a/b"}}, "client.device_id", "letters, digits"),
    ({"client": {"device_id": ""}}, "client.device_id", "letters, digits"),
    ({"client": {"root": 5}}, "client.root", "must be a path"),
    ({"client": {"app_id": "a\x07"}}, "client.app_id", "control character"),
    ({"client": {"root": "/tmp/x", "state_dir": "/tmp/x/state"}}, "client.state_dir", "must not overlap"),
    ({"server": {"url": "ftp://x"}}, "server.url", "http(s) URL"),
    ({"server": {"url": 42}}, "server.url", "must be a URL"),
    ({"server": {**REMOTE, "url": "http://hub.example.org/api/"}}, "server.url", "must use https"),
    ({"server": {**REMOTE, "url": "http://10.0.0.1/"}}, "server.url", "must use https"),
    ({"server": {**REMOTE, "username": "al ice"}}, "server.username", "letters, digits"),
    ({"server": {"url": "https://h/", "password_env": "X"}}, "server.username", "missing"),
    ({"server": {"url": "https://h/", "username": "a"}}, "server.password_file", "missing"),
    ({"server": {**REMOTE, "password_file": "/f"}}, "server.password_file", "give only one of"),
    ({"server": {"password_env": "X"}}, "server.password_env", 'not used with url = "embedded"'),
    ({"server": {"embedded_listen": "localhost"}}, "server.embedded_listen", "HOST:PORT"),
    ({"server": {"embedded_listen": "h:99999"}}, "server.embedded_listen", "HOST:PORT"),
]


@pytest.mark.parametrize(("data", "key", "reason"), BAD_CONFIGS, ids=[f"{c[1]}-{i}" for i, c in enumerate(BAD_CONFIGS)])
def test_bad_config_names_key_and_reason(data: dict, key: str, reason: str) -> None:
    with pytest.raises(ConfigError) as info:
        config_from_dict(data)
    assert info.value.key == key
    assert reason in str(info.value)
    assert "\n" not in str(info.value)
    assert str(info.value).startswith(f"{key}: ")


def test_error_from_file_names_the_file(tmp_path: Path) -> None:
    file = tmp_path / "c.toml"
    file.write_text('[sync]\ninterval = "fast"\n')
    with pytest.raises(ConfigError, match=r'c\.toml: sync\.interval: must be a number of seconds > 0, got "fast"'):
        load_config(file)
    file.write_text("[sync\n")
    with pytest.raises(ConfigError, match="TOML syntax error"):
        load_config(file)
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.toml")


def test_defaults_without_file(isolated_home: Path) -> None:
    config = load_config(None)
    assert config.server.embedded
    assert config.client.root == isolated_home / "oaio_root"
    assert config.sync.debounce == 0.5
    assert config.paths.instance == "default"
    assert config.paths.state_dir == isolated_home / ".local/state/oaiod/default"
    assert config.paths.socket.parent == isolated_home / "run/oaiod"
    assert config.username  # the login name, or "oaiod"


def test_example_config_is_complete_and_valid(monkeypatch: pytest.MonkeyPatch) -> None:
    """config.example.toml documents every key: each one appears (set or commented) and the file loads."""
    text = (ROOT / "config.example.toml").read_text()
    from oaiod.daemon.config import SCHEMA

    for section, (_cls, parsers) in SCHEMA.items():
        assert f"[{section}]" in text
        for key in parsers:
            assert f"{key} =" in text or f"{key}  =" in text or f"{key}      =" in text, f"{section}.{key}"
    data = tomllib.loads(text)
    data["server"] = {**data["server"]}
    data["server"].pop("password_file")
    data["server"]["password_env"] = "OAIOD_TEST_PW"
    config = config_from_dict(data, ROOT / "config.example.toml")
    monkeypatch.setenv("OAIOD_TEST_PW", "s3cret")
    assert config.server.read_password().reveal() == "s3cret"


def test_relative_paths_are_relative_to_the_config_file(tmp_path: Path) -> None:
    file = tmp_path / "conf" / "a.toml"
    file.parent.mkdir()
    file.write_text('[client]\nroot = "sync"\nstate_dir = "state"\n[log]\nfile = "~/x.log"\n')
    config = load_config(file)
    assert config.client.root == file.parent / "sync"
    assert config.paths.state_dir == file.parent / "state"
    assert config.log_file == Path("~/x.log").expanduser()


def test_a_relative_password_file_is_relative_to_the_config_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 14: it was read relative to the working directory (where ``oaiod run`` happened to start)."""
    file = tmp_path / "conf" / "a.toml"
    file.parent.mkdir()
    secret = file.parent / "pw"
    secret.write_text("s3cret\n")
    secret.chmod(0o600)
    file.write_text('[server]\nurl = "https://h.example/"\nusername = "a"\npassword_file = "pw"\n')
    monkeypatch.chdir(tmp_path)
    config = load_config(file)
    assert config.server.password_file == str(secret)
    assert config.server.read_password().reveal() == "s3cret"
    secret.chmod(0o200)  # unreadable: a config error naming the key, not a traceback
    if os.getuid() != 0:
        with pytest.raises(ConfigError, match=r"^server\.password_file: cannot read secret file"):
            config.server.read_password()


def test_two_configs_get_disjoint_paths(tmp_path: Path) -> None:
    first, second = tmp_path / "a.toml", tmp_path / "b.toml"
    for file in (first, second):
        file.write_text("")
    a, b = load_config(first).paths, load_config(second).paths
    assert a.instance != b.instance
    for name in ("state_dir", "log_dir", "data_dir", "socket", "lock_file", "state_db", "device_id_file"):
        assert getattr(a, name) != getattr(b, name), name
    assert instance_name(first) == instance_name(Path(os.path.relpath(first)))  # the same file, however named
    assert derive_paths(first) == a


def test_http_allowed_for_loopback_only() -> None:
    for url in ("http://127.0.0.1:8765/api/", "http://localhost/api/", "http://[::1]:80/api/"):
        assert config_from_dict({"server": {**REMOTE, "url": url}}).server.url == url
    assert config_from_dict({"server": {**REMOTE, "url": "https://h.example/api"}}).server.url.endswith("/api/")


def test_password_errors_name_the_key(tmp_path: Path) -> None:
    loose = tmp_path / "pw"
    loose.write_text("secret\n")
    loose.chmod(0o644)
    config = config_from_dict(
        {"server": {**{k: v for k, v in REMOTE.items() if k != "password_env"}, "password_file": str(loose)}}
    )
    with pytest.raises(ConfigError, match=r"^server\.password_file: .*chmod 600"):
        config.server.read_password()
    loose.chmod(0o600)
    assert config.server.read_password().reveal() == "secret"
    assert "secret" not in repr(config)


def test_device_id_is_stable_and_defused_safe(isolated_home: Path) -> None:
    config = Config()
    first = device_id(config)
    assert first == device_id(load_config(None))
    assert config.paths.device_id_file.read_text().strip() == first
    from oaiod.model import defuse

    assert defuse(first) == first
    assert stat.S_IMODE(config.paths.state_dir.stat().st_mode) == 0o700
    config.paths.device_id_file.write_text("bad id\n")
    with pytest.raises(ConfigError, match=r"client\.device_id: stored id"):
        device_id(config)
    assert device_id(config_from_dict({"client": {"device_id": "pc-1"}})) == "pc-1"


def test_folder_modes_are_checked_per_key(tmp_path: Path) -> None:
    """A folder type that is not one names the key and the choices in one line."""
    path = tmp_path / "config.toml"
    path.write_text('[sync]\nfolder_modes = { "/srv/photos" = "send-only", "/srv/in" = "receive-only" }\n')
    assert load_config(path).sync.folder_modes == {"/srv/photos": "send-only", "/srv/in": "receive-only"}
    path.write_text('[sync]\nfolder_modes = { "/srv/photos" = "sideways" }\n')
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert caught.value.key == "sync.folder_modes" and "send-only" in str(caught.value)
    assert "\n" not in str(caught.value)
