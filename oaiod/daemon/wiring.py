"""Where the daemon's engine comes from: the config becomes server API (or an embedded hub), state repository,
storage opener, engine settings and change feed — in one place, :func:`build_engine`.

Imports of the engine, the hub and the storage backends are local to the functions: ``ctl`` and the tests
with a fake engine never load them.

Everything raised here is an :class:`~oaiod.errors.OaiodError` (a ``ConfigError`` for a missing password, a
``RemoteError``/``StorageError`` from the server, a state database error…): the daemon stays up in the
``error`` state and ``oaiod ctl status`` says why.
"""

from __future__ import annotations

import logging
import os
import secrets
import time
import urllib.parse
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from oaiod.daemon.config import Config, device_id, is_loopback
from oaiod.daemon.scheduler import ChangeFeed, Engine
from oaiod.errors import ConfigError, ValidationError
from oaiod.model import validate_stamp
from oaiod.secrets import Secret

if TYPE_CHECKING:
    from oaiod.engine.status import EngineStatus, Listing
    from oaiod.server_api import OaioServerApi, ObjectVersion
    from oaiod.state import StateRepo
    from oaiod.state.models import ConflictRow, HistoryRow
    from oaiod.storage.base import Backend

log = logging.getLogger(__name__)


class DaemonEngine(Engine, Protocol):
    """Every call the daemon, its scheduler and ``ctl`` make on the engine (design §7):
    :class:`oaiod.engine.cycle.SyncEngine` satisfies it, and so does the tests' fake engine (mypy checks both).
    Results ``ctl`` only passes on as JSON are ``object``; what it shows is data that :mod:`oaiod.daemon.ctl.present`
    makes plain."""

    @property
    def progress(self) -> object: ...  # transfer progress for ctl status (read from another thread)

    @property
    def repo(self) -> StateRepo | None: ...  # ctl reads registrations and per-object errors (None: no database)

    def mark_dirty(self, root: Path, paths: list[str]) -> None: ...  # the watcher's changed paths
    def local_changes_left(self) -> int: ...  # changed paths the next cycle looks at (ctl sync --wait waits)
    def roots(self) -> list[Path]: ...  # the folders to watch
    def status(self) -> EngineStatus: ...
    def rebuild_index(self) -> None: ...  # forget the index (no cycle runs meanwhile)
    def add_folder(self, path: Path, mode: str = "") -> str: ...  # the new object's id
    def set_mode(self, oaio_id: str, mode: str) -> str: ...  # folder type; answers the previous one
    def override(self, oaio_id: str) -> str: ...  # a send-only folder's next push replaces the server's changes
    def revert(self, oaio_id: str) -> list[str]: ...  # a receive-only folder's local changes to the trash
    def mode_notes(self) -> dict[str, str]: ...  # what each folder's type keeps apart from the server
    def remove(self, oaio_id: str) -> None: ...  # stop syncing here only
    def delete(self, oaio_id: str) -> str: ...  # delete on the server, for everybody
    def confirm_delete(self, oaio_id: str) -> None: ...
    def exclude(self, path: Path, *, dry_run: bool = False) -> object: ...  # selective sync
    def include(self, path: Path) -> list[str]: ...
    def exclusions(self) -> list[tuple[str, str]]: ...
    def trash(self) -> list[Any]: ...
    def file_status(self, path: Path) -> object: ...
    def file_versions(self, path: Path) -> list[Any]: ...
    def restore_path(self, path: Path, stamp: str, to: Path | None = None) -> list[str]: ...
    def restore_trash(self, path: Path, day: str | None = None) -> list[str]: ...
    def restore(self, oaio_id: str, stamp: str, to: Path | None = None) -> object: ...
    def share(self, oaio_id: str, user: str, right: str) -> object: ...
    def unshare(self, oaio_id: str, user: str) -> object: ...
    def users(self, oaio_id: str) -> list[dict[str, str]]: ...
    def link(self, oaio_id: str, path: str, expires_in: int, password: str | None) -> dict[str, Any]: ...
    def links(self, oaio_id: str) -> list[dict[str, Any]]: ...
    def revoke_link(self, link_id: str) -> dict[str, Any]: ...
    def objects(self) -> Listing: ...  # what ctl ls shows
    def conflicts(self) -> list[ConflictRow]: ...
    def history(self, limit: int = 200, *, since: str = "", path: Path | None = None) -> list[HistoryRow]: ...
    def versions(self, oaio_id: str) -> list[ObjectVersion]: ...
    # objects of apps (oaiod.client, ctl values|new|put)
    def values(self, oaio_id: str) -> dict[str, Any]: ...
    def set_values(self, oaio_id: str, values: dict[str, Any], unset: Iterable[str] = ()) -> None: ...
    def new_object(self, values: dict[str, Any]) -> str: ...
    def new_file_object(
        self, name: str, source: Path | None, root: Path | None = None, values: dict[str, Any] | None = None
    ) -> str: ...
    def update_file(self, oaio_id: str, name: str = "", source: Path | None = None) -> str: ...
    def unregister(self, oaio_id: str, wipe_files: bool = False) -> str: ...


@dataclass
class EngineHandle:
    """A ready engine with its change feed (None when the server offers none) and how to close it all."""

    engine: DaemonEngine
    change_feed: ChangeFeed | None = None
    server_url: str = ""
    device_id: str = ""
    closers: list[Callable[[], None]] = field(default_factory=list)

    def close(self) -> None:
        close_all(self.closers)


def close_all(closers: list[Callable[[], None]]) -> None:
    """Call each of ``closers``, the last first; one that fails is logged and the rest still run."""
    for closer in reversed(closers):
        try:
            closer()
        except Exception:  # closing is best effort; the process is going away or rebuilding
            log.exception("error while closing %r", closer)


EngineFactory = Callable[[Config], EngineHandle]


def build_engine(config: Config) -> EngineHandle:
    """The real engine for ``config``: server API (or the embedded hub), state repository, storage opener."""
    from oaiod.engine.cycle import SyncEngine
    from oaiod.server_api import OaioServerApi
    from oaiod.state import StateRepo

    device = device_id(config)
    closers: list[Callable[[], None]] = []
    try:
        if config.server.embedded:
            url, password = start_embedded_hub(config, closers)
        else:
            url, password = config.server.url, config.server.read_password()
        api = OaioServerApi(
            url,
            config.username,
            password,
            device_id=device,
            app_id=config.client.app_id,
            allow_insecure=is_loopback(urllib.parse.urlsplit(url).hostname or ""),
        )
        closers.append(api.close)
        repo = StateRepo(config.paths.state_dir)
        closers.append(repo.close)
        engine = SyncEngine(engine_settings(config, device), repo, api, storage_opener(config, api))
        closers.append(engine.close)
        feed = change_feed_of(api, lambda: repo.cursor(engine.server_key))
    except BaseException:
        close_all(closers)
        raise
    return EngineHandle(engine, feed, server_url=url, device_id=device, closers=closers)


def engine_settings(config: Config, device: str) -> Any:
    """The engine's :class:`~oaiod.engine.settings.EngineSettings` from the daemon's config."""
    from oaiod.engine.settings import EngineSettings

    sync = config.sync
    return EngineSettings(
        client_root=config.client.root,
        device_id=device,
        state_dir=config.paths.state_dir,
        username=config.username,
        csh_id=csh_id_for(config),
        app_id=config.client.app_id,
        trash_days=sync.trash_days,
        mass_delete_ratio=sync.mass_delete_ratio,
        mass_delete_min=sync.mass_delete_min,
        ignore_patterns=sync.ignore,
        folder_modes=dict(sync.folder_modes),
        # the watcher already waited ``debounce`` seconds without an event for the file; half of that as the
        # engine's "still being written" age keeps a just-debounced file from waiting for the next interval
        quiet_period=sync.debounce / 2,
    )


def storage_opener(config: Config, api: OaioServerApi) -> Callable[[str, Mapping[str, Any]], Backend]:
    """``open_backend(csh_id, csh_args)`` for the engine: every backend wrapped with the configured limits."""
    from oaiod.storage.registry import open_backend
    from oaiod.storage.wrappers import WrapperConfig

    limits = config.limits
    wrappers = WrapperConfig(
        max_connections=limits.connections,
        upload_limit=limits.upload or None,
        download_limit=limits.download or None,
    )

    def opener(csh_id: str, args: Mapping[str, Any]) -> Backend:
        if csh_id == "Hub" and not args.get("username"):  # the hub's blob store: share our own hub session
            from oaiod.storage.hub import HubBackend
            from oaiod.storage.wrappers import wrap_backend

            return wrap_backend(HubBackend.sharing(api.http, args), wrappers)
        return open_backend(csh_id, args, wrappers=wrappers)

    return opener


def csh_id_for(config: Config) -> str:
    """The storage host new objects go to: the configured one, else Hub storage if installed, else Local."""
    if config.server.csh_id:
        return config.server.csh_id
    from oaiod.storage.registry import backend_class

    try:
        backend_class("Hub")
    except ConfigError:
        return "Local"  # without the Hub storage backend: a Local folder under the hub's data dir
    return "Hub"


def change_feed_of(api: OaioServerApi, cursor: Callable[[], str] = lambda: "") -> ChangeFeed:
    """The hub's long poll as a :data:`ChangeFeed` (asked lazily; a plain oaio server has none).

    The first poll starts at ``cursor()`` — the engine's sync cursor, so a change made after the last cycle
    listed the server (even one made while the daemon was down) wakes it at once. Without a valid cursor (first
    start, or one the server would refuse) it starts at the server's current stamp. After that the loop passes
    each answer's cursor back as ``since``.
    """
    from oaiod.server_api import NotSupported

    def start() -> str:
        stamp = cursor()
        try:
            return validate_stamp(stamp, "cursor")
        except ValidationError:
            return api.current_stamp()

    def feed(since: str | None, timeout: float) -> tuple[bool, str | None]:
        try:
            return api.wait_for_changes(since or start(), timeout)
        except NotSupported:
            time.sleep(min(timeout, 60.0))  # a plain oaio server: the periodic cycle is all there is
            return False, since

    return feed


def remove_stale_temp_files(roots: list[Path], started: float) -> int:
    """Delete the download temp files and staged folders (``.oaiod-tmp-*``) a killed daemon left in the synced
    folders: only those whose inode last changed before ``started`` (this daemon's start), which cannot belong to
    a download of this process, so this may run beside the first cycles."""
    from oaiod.engine.localfs import sweep_temp_files

    removed = sweep_temp_files(roots, started)
    if removed:
        log.info("removed %d temp file(s) of downloads interrupted by a crash", removed)
    return removed


# -- the embedded hub -----------------------------------------------------------------------------------------------


def start_embedded_hub(config: Config, closers: list[Callable[[], None]]) -> tuple[str, Secret]:
    """Start the in-process hub, make sure our user and storage host exist; returns its URL and our password.
    What stops the hub joins ``closers``."""
    from oaiod.hub.server import HubServer
    from oaiod.hub.settings import HubSettings

    host, _, port = config.server.embedded_listen.rpartition(":")
    data_dir = config.paths.hub_data_dir
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    hub = HubServer(HubSettings(data_dir=data_dir, host=host, port=int(port))).start()
    closers.append(hub.stop)
    service = hub.service
    assert service is not None  # set by start()
    password = embedded_password(config)
    if service.user(config.username) is None:
        service.add_user(config.username, password.reveal())
        log.info("embedded hub: created user %s (password in %s)", config.username, config.paths.embedded_password_file)
    else:
        service.set_password(config.username, password.reveal())  # the file is the truth, even if it was replaced
    csh_id = csh_id_for(config)
    if csh_id == "Local" and not any(name == "Local" for name, _ in service.list_storage()):
        service.set_storage("Local", {"root_folder": str(data_dir / "files")})
    write_private(config.paths.hub_url_file, hub.url + "\n", replace=True)
    log.info("embedded hub listening on %s", hub.url)
    return hub.url, password


def embedded_password(config: Config) -> Secret:
    """The embedded hub user's password: read from its 0600 file, or generated and stored there on first start."""
    from oaiod.secrets import read_secret_file

    file = config.paths.embedded_password_file
    if not file.exists():
        write_private(file, secrets.token_urlsafe(24) + "\n", replace=False)
    return read_secret_file(file, "embedded password")


def write_private(path: Path, text: str, *, replace: bool) -> None:
    """Write ``text`` to a file created 0600 (never readable by others, not even for a moment).

    ``replace=False`` keeps a file another process created meanwhile (theirs wins).
    """
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(text)
    if replace:
        os.replace(tmp, path)
    else:
        try:
            os.link(tmp, path)  # fails if another process created it meanwhile: theirs wins
        except FileExistsError:
            pass
        finally:
            tmp.unlink()
