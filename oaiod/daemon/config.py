"""The daemon's configuration: one TOML file → frozen dataclasses, every key checked where it enters.

A wrong key or value raises :class:`~oaiod.errors.ConfigError` with one line naming the key and the reason,
e.g. ``sync.interval: must be a number of seconds > 0, got "fast"``. Without a file, embedded defaults apply:
an in-process hub and ``~/oaio_root``.

Every per-instance path (state database, control socket, lock, logs, trash, device id, embedded hub data) is
derived here from the config: the *instance* is a short hash of the config file's absolute path
(``default`` without a file), so two daemons with two configs run side by side for one OS user.

Secrets are not read at load time (``ctl`` loads the config only to find the socket); the daemon calls
:meth:`ServerConfig.password` at start, which reads the env variable, 0600 file or keyring.
"""

from __future__ import annotations

import getpass
import hashlib
import ipaddress
import logging
import os
import re
import secrets
import socket
import tomllib
import urllib.parse
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, cast

import platformdirs

from oaiod.errors import ConfigError, ValidationError
from oaiod.model import validate_name, validate_username
from oaiod.secrets import Secret, secret_from_args

APP_NAME = "oaiod"
EMBEDDED = "embedded"
DEFAULT_INSTANCE = "default"
DEVICE_ID_FILE = "device_id"
EMBEDDED_PASSWORD_FILE = "embedded_password"
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
SOCKET_PATH_MAX = 104  # sun_path is 108 bytes on Linux, 104 on macOS
_DEVICE_ID = re.compile(r"\A[A-Za-z0-9][A-Za-z0-9._-]{0,63}\Z")

# -- value parsers: each returns the parsed value or raises ValueError with the reason ------------------------


def _show(value: Any) -> str:
    """A value as the user wrote it in TOML, shortened for an error line."""
    text = f'"{value}"' if isinstance(value, str) else repr(value).lower() if isinstance(value, bool) else repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _seconds(*, allow_zero: bool = False, unit: str = "seconds") -> Callable[[Any], float]:
    def parse(value: Any) -> float:
        ok = isinstance(value, int | float) and not isinstance(value, bool) and value == value  # not NaN
        if not ok or value < 0 or (value == 0 and not allow_zero) or value == float("inf"):
            raise ValueError(f"must be a number of {unit} {'>= 0' if allow_zero else '> 0'}, got {_show(value)}")
        return float(value)

    return parse


def _integer(low: int, high: int | None = None, unit: str = "") -> Callable[[Any], int]:
    def parse(value: Any) -> int:
        if not isinstance(value, int) or isinstance(value, bool) or value < low or (high is not None and value > high):
            span = f"between {low} and {high}" if high is not None else f">= {low}"
            raise ValueError(f"must be a whole number{unit} {span}, got {_show(value)}")
        return value

    return parse


def _ratio(value: Any) -> float:
    if not isinstance(value, int | float) or isinstance(value, bool) or not 0 < value <= 1:
        raise ValueError(f"must be a number > 0 and <= 1, got {_show(value)}")
    return float(value)


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"must be a string, got {_show(value)}")
    return value


def _path(value: Any) -> Path:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"must be a path (a non-empty string), got {_show(value)}")
    if "\0" in value:
        raise ValueError("must not contain a NUL character")
    return Path(value).expanduser()


def _server_url(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f'must be a URL or "{EMBEDDED}", got {_show(value)}')
    if value == EMBEDDED:
        return value
    parts = urllib.parse.urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f'must be an http(s) URL or "{EMBEDDED}", got {_show(value)}')
    if parts.scheme == "http" and not is_loopback(parts.hostname):
        raise ValueError(f"must use https for a server that is not on this machine, got {_show(value)}")
    return value if value.endswith("/") else value + "/"


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback addresses: plain HTTP never leaves the machine."""
    if host.lower() in ("localhost", "localhost.localdomain"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _username(value: Any) -> str:
    try:
        return validate_username(value, "username")
    except ValidationError as exc:
        raise ValueError(exc.reason) from None


def _device_id(value: Any) -> str:
    if not isinstance(value, str) or not _DEVICE_ID.match(value):
        raise ValueError(
            f"must be 1-64 letters, digits, '.', '_' or '-' (starting with a letter or digit), got {_show(value)}"
        )
    return value


def _app_id(value: Any) -> str:
    """An app or storage-host id: a short name without control characters."""
    try:
        return validate_name(value, "id")
    except ValidationError as exc:
        raise ValueError(exc.reason) from None


def _secret_form(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError(f"must be a non-empty string, got {_show(value)}")
    return value


def _log_level(value: Any) -> str:
    if not isinstance(value, str) or value.upper() not in LOG_LEVELS:
        raise ValueError(f"must be one of {', '.join(LOG_LEVELS)}, got {_show(value)}")
    return value.upper()


def _patterns(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(item, str) and item.strip() for item in value):
        raise ValueError(f"must be a list of gitignore patterns (non-empty strings), got {_show(value)}")
    import pathspec  # a pattern pathspec cannot parse is a config error, not a crash in the watcher

    try:
        pathspec.PathSpec.from_lines("gitignore", value)
    except Exception as exc:  # pathspec raises several types for a bad pattern
        raise ValueError(f"bad gitignore pattern: {exc}") from None
    return tuple(value)


FOLDER_MODES = ("send-receive", "send-only", "receive-only")


def _folder_modes(value: Any) -> dict[str, str]:
    """``{ "/abs/folder" = "send-only" }``: the folder type of each synced folder named (issue 14 §4)."""
    if not isinstance(value, dict):
        raise ValueError(f'must be a table of folder = mode, e.g. {{ "~/Photos" = "send-only" }}, got {_show(value)}')
    modes: dict[str, str] = {}
    for folder, mode in value.items():
        path = Path(folder).expanduser()
        if not path.is_absolute():
            raise ValueError(f"folder {_show(folder)} must be an absolute path (or start with ~)")
        if mode not in FOLDER_MODES:
            raise ValueError(f"mode of {_show(folder)} must be one of {', '.join(FOLDER_MODES)}, got {_show(mode)}")
        modes[str(path)] = mode
    return modes


def _host_port(value: Any) -> str:
    host, sep, port = value.rpartition(":") if isinstance(value, str) else ("", "", "")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise ValueError(f'must read "HOST:PORT" (port 0 picks a free one), got {_show(value)}')
    return f"{host}{sep}{port}"


# -- the sections -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ServerConfig:
    """Where the oaio server is and who we are there; ``url == "embedded"`` starts an in-process hub."""

    url: str = EMBEDDED
    username: str = ""  #: empty with ``embedded``: the OS login name (or ``oaiod``)
    password: str = field(default="", repr=False)  #: inline or ``keyring:SERVICE/USER``
    password_env: str = ""
    password_file: str = ""
    embedded_listen: str = "127.0.0.1:0"  #: where the embedded hub listens (port 0: a free port)
    csh_id: str = ""  #: storage host for new objects; empty: Hub storage if installed, else Local

    @property
    def embedded(self) -> bool:
        return self.url == EMBEDDED

    def read_password(self) -> Secret:
        """The server password from its one configured source; :class:`ConfigError` names the key."""
        args = {"password": self.password, "password_env": self.password_env, "password_file": self.password_file}
        try:
            secret = secret_from_args(args, "password")
        except ConfigError as exc:
            raise ConfigError(f"server.{exc.key}", exc.reason, exc.source) from None
        assert secret is not None  # required=True never returns None
        return secret


@dataclass(frozen=True)
class ClientConfig:
    """This device: the synced client root, its id and where its state lives."""

    root: Path = field(default_factory=lambda: Path("~/oaio_root").expanduser())
    device_id: str = ""  #: empty: a stable id kept in ``<state_dir>/device_id``
    state_dir: Path | None = None  #: None: derived per instance
    app_id: str = APP_NAME


@dataclass(frozen=True)
class SyncConfig:
    """When to sync and how careful to be with deletions."""

    interval: float = 30.0
    debounce: float = 0.5
    rescan_interval: float = 600.0
    gc_interval: float = 3600.0
    trash_days: float = 30.0
    mass_delete_ratio: float = 0.5
    mass_delete_min: int = 5
    ignore: tuple[str, ...] = ()
    #: folder path -> send-receive, send-only or receive-only (``ctl mode`` changes a folder not named here)
    folder_modes: dict[str, str] = field(default_factory=dict, hash=False)


@dataclass(frozen=True)
class LimitsConfig:
    """Bandwidth in bytes per second (0: unlimited) and parallel transfers."""

    upload: int = 0
    download: int = 0
    connections: int = 4


@dataclass(frozen=True)
class LogConfig:
    level: str = "INFO"
    file: Path | None = None  #: None: ``<log_dir>/oaiod.log``
    max_bytes: int = 10 * 1024 * 1024
    backups: int = 5


@dataclass(frozen=True)
class UiConfig:
    """The status page (:mod:`oaiod.daemon.ui`): served on 127.0.0.1 only while the daemon runs."""

    enabled: bool = True
    port: int = 0  #: 0: a free port picked at each start


def _flag(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"must be true or false, got {_show(value)}")
    return value


SCHEMA: dict[str, tuple[type, dict[str, Callable[[Any], Any]]]] = {
    "server": (
        ServerConfig,
        {
            "url": _server_url,
            "username": _username,
            "password": _secret_form,
            "password_env": _secret_form,
            "password_file": _secret_form,
            "embedded_listen": _host_port,
            "csh_id": _app_id,
        },
    ),
    "client": (ClientConfig, {"root": _path, "device_id": _device_id, "state_dir": _path, "app_id": _app_id}),
    "sync": (
        SyncConfig,
        {
            "interval": _seconds(),
            "debounce": _seconds(allow_zero=True),
            "rescan_interval": _seconds(),
            "gc_interval": _seconds(),
            "trash_days": _seconds(allow_zero=True, unit="days"),
            "mass_delete_ratio": _ratio,
            "mass_delete_min": _integer(1),
            "ignore": _patterns,
            "folder_modes": _folder_modes,
        },
    ),
    "limits": (
        LimitsConfig,
        {
            "upload": _integer(0, unit=" of bytes/s"),
            "download": _integer(0, unit=" of bytes/s"),
            "connections": _integer(1, 64),
        },
    ),
    "log": (LogConfig, {"level": _log_level, "file": _path, "max_bytes": _integer(1024), "backups": _integer(0, 100)}),
    "ui": (UiConfig, {"enabled": _flag, "port": _integer(0, 65535)}),
}


@dataclass(frozen=True)
class Paths:
    """Every file and folder one daemon instance owns; derived from the config, never shared between instances."""

    instance: str
    state_dir: Path
    runtime_dir: Path
    log_dir: Path
    data_dir: Path

    @property
    def state_db(self) -> Path:
        return self.state_dir / "state.sqlite3"

    @property
    def lock_file(self) -> Path:
        return self.state_dir / "oaiod.lock"

    @property
    def device_id_file(self) -> Path:
        return self.state_dir / DEVICE_ID_FILE

    @property
    def embedded_password_file(self) -> Path:
        return self.state_dir / EMBEDDED_PASSWORD_FILE

    @property
    def hub_data_dir(self) -> Path:
        return self.data_dir / "hub"

    @property
    def hub_url_file(self) -> Path:
        """Where a daemon with the embedded hub writes the hub's URL, for a second device on this machine."""
        return self.state_dir / "hub.url"

    @property
    def socket(self) -> Path:
        return self.runtime_dir / f"oaiod-{self.instance}.sock"


@dataclass(frozen=True)
class Config:
    """One daemon's whole configuration; ``source`` is the file it came from (None: embedded defaults)."""

    server: ServerConfig = field(default_factory=ServerConfig)
    client: ClientConfig = field(default_factory=ClientConfig)
    sync: SyncConfig = field(default_factory=SyncConfig)
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    log: LogConfig = field(default_factory=LogConfig)
    ui: UiConfig = field(default_factory=UiConfig)
    source: Path | None = None
    paths: Paths = field(default=None)  # type: ignore[assignment]  # set by __post_init__

    def __post_init__(self) -> None:
        if cast("Paths | None", self.paths) is None:  # the field's default: derived here
            object.__setattr__(self, "paths", derive_paths(self.source, self.client.state_dir))

    @property
    def log_file(self) -> Path:
        return self.log.file or self.paths.log_dir / "oaiod.log"

    def ctl(self, *words: str) -> str:
        """How to run ``oaiod ctl WORDS…`` for this config, as a line to paste (:func:`ctl_line`)."""
        return ctl_line(self.source, *words)

    @property
    def username(self) -> str:
        """The configured user; with the embedded hub an empty one becomes the OS login name."""
        return self.server.username or (default_username() if self.server.embedded else "")


def config_dir() -> Path:
    """Where named configs live (``-c NAME`` is ``<config_dir>/NAME.toml``), e.g. ``~/.config/oaiod``."""
    return Path(platformdirs.user_config_dir(APP_NAME))


def config_file(value: str | Path) -> Path:
    """The file a ``--config``/``-c`` value names: a path as given, or — a bare name that is no existing file, like
    Maestral's ``-c NAME`` — ``<config_dir>/NAME.toml``."""
    text = str(value)
    if os.sep in text or "/" in text or text.endswith(".toml") or Path(text).exists():
        return Path(text).expanduser()
    return config_dir() / f"{text}.toml"


def ctl_line(source: Path | None, *words: str) -> str:
    """``oaiod [--config FILE] ctl WORDS…`` as a line to paste (hints in messages and logs name the config)."""
    import shlex

    config = f"--config {shlex.quote(os.path.abspath(source))} " if source is not None else ""
    return f"oaiod {config}ctl {' '.join(words)}".rstrip()


def instance_name(source: Path | None) -> str:
    """``default`` without a config file, else 10 hex digits of the sha256 of the file's absolute path."""
    if source is None:
        return DEFAULT_INSTANCE
    return hashlib.sha256(os.path.abspath(Path(source).expanduser()).encode()).hexdigest()[:10]


def derive_paths(source: Path | None, state_dir: Path | None = None) -> Paths:
    """The per-instance paths under the platformdirs user directories (nothing is created here)."""
    instance = instance_name(source)
    state = state_dir or Path(platformdirs.user_state_dir(APP_NAME)) / instance
    return Paths(
        instance=instance,
        state_dir=state,
        runtime_dir=_runtime_dir(state, instance),
        log_dir=Path(platformdirs.user_log_dir(APP_NAME)) / instance,
        data_dir=Path(platformdirs.user_data_dir(APP_NAME)) / instance,
    )


def _runtime_dir(state_dir: Path, instance: str) -> Path:
    """The user runtime dir, or the state dir when there is none usable (or its socket path would be too long)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs warns about a missing XDG_RUNTIME_DIR and falls back
        try:
            runtime = Path(platformdirs.user_runtime_dir(APP_NAME))
        except OSError:
            runtime = state_dir
    if len(os.fsencode(runtime / f"oaiod-{instance}.sock")) > SOCKET_PATH_MAX:
        runtime = state_dir
    return runtime


def default_username() -> str:
    """The OS login name when it is a valid oaio user name, else ``oaiod``."""
    try:
        return validate_username(getpass.getuser())
    except (ValidationError, OSError, KeyError):
        return APP_NAME


# -- loading ----------------------------------------------------------------------------------------------------


def load_config(source: Path | str | None) -> Config:
    """The config in ``source`` (TOML), or the embedded defaults when ``source`` is None.

    A missing or unreadable file, a TOML syntax error, an unknown section or key and a bad value each raise
    :class:`ConfigError` naming the key (``section.key``) and the reason.
    """
    if source is None:
        return Config()
    path = Path(source).expanduser()
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError("config", f"cannot read {path}: {exc.strerror or exc}", str(path)) from None
    except UnicodeDecodeError:
        raise ConfigError("config", "is not UTF-8 text", str(path)) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError("config", f"TOML syntax error: {exc}", str(path)) from None
    try:
        return config_from_dict(data, path)
    except ConfigError as exc:
        raise ConfigError(exc.key, exc.reason, str(path)) from None


def config_from_dict(data: Mapping[str, Any], source: Path | None = None) -> Config:
    """Validate a parsed TOML document; every key must be known, every value valid."""
    sections: dict[str, Any] = {}
    for name, value in data.items():
        if name not in SCHEMA:
            raise ConfigError(name, f"unknown section; known: {', '.join(SCHEMA)}")
        if not isinstance(value, dict):
            raise ConfigError(name, f"must be a table ([{name}]), got {_show(value)}")
        sections[name] = _section(name, value, source.parent if source else Path.cwd())
    config = Config(**sections, source=source)
    _check_whole(config)
    return config


def _section(name: str, table: Mapping[str, Any], base: Path) -> Any:
    """One section's dataclass; a relative path is taken relative to the config file's folder."""
    cls, parsers = SCHEMA[name]
    values: dict[str, Any] = {}
    for key, raw in table.items():
        if key not in parsers:
            raise ConfigError(f"{name}.{key}", f"unknown key; known in [{name}]: {', '.join(parsers)}")
        try:
            values[key] = parsers[key](raw)
        except ValueError as exc:
            raise ConfigError(f"{name}.{key}", str(exc)) from None
        if isinstance(values[key], Path) and not values[key].is_absolute():
            values[key] = base / values[key]
        if key == "password_file":  # a path kept as text (the secret's form): relative to the config's folder too
            values[key] = str(base / Path(values[key]).expanduser())
    assert {f.name for f in fields(cls)} >= set(parsers)
    return cls(**values)


def _check_whole(config: Config) -> None:
    """Rules that involve more than one key."""
    server = config.server
    forms = [k for k in ("password", "password_env", "password_file") if getattr(server, k)]
    if server.embedded and forms:
        raise ConfigError(f"server.{forms[0]}", 'is not used with url = "embedded" (its password is generated)')
    if not server.embedded:
        if not server.username:
            raise ConfigError("server.username", f"missing; needed with url = {_show(server.url)}")
        if len(forms) > 1:
            raise ConfigError(f"server.{forms[1]}", f"give only one of {', '.join(forms)}")
        if not forms:
            raise ConfigError("server.password_file", "missing; give password_file, password_env or password")
    root = config.client.root.absolute()
    state = config.paths.state_dir.absolute()
    if root == state or state.is_relative_to(root) or root.is_relative_to(state):
        raise ConfigError("client.state_dir", f"must not overlap the synced root {root}")


# -- device id --------------------------------------------------------------------------------------------------


def new_device_id() -> str:
    """A fresh id: the host name (reduced to safe characters) and 8 random hex digits, e.g. ``laptop-3f9a01bc``."""
    host = re.sub(r"[^A-Za-z0-9._-]+", "-", socket.gethostname()).strip(".-_")[:40] or "device"
    if not host[0].isalnum():
        host = "d" + host
    return f"{host}-{secrets.token_hex(4)}"


def device_id(config: Config) -> str:
    """The configured device id, or the one stored in the state dir (created on first call, kept forever)."""
    if config.client.device_id:
        return config.client.device_id
    file = config.paths.device_id_file
    try:
        stored = file.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        stored = ""
    if stored:
        try:
            return _device_id(stored)
        except ValueError as exc:
            raise ConfigError("client.device_id", f"stored id in {file} is invalid: {exc}") from None
    file.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    new = new_device_id()
    tmp = file.with_name(file.name + ".tmp")
    tmp.write_text(new + "\n", encoding="utf-8")
    os.replace(tmp, file)
    logging.getLogger(__name__).info("new device id %s stored in %s", new, file)
    return new
