"""The daemon's side of ``oaiod ctl``: :class:`DaemonCommands`, one method per command, served by
:class:`oaiod.daemon.ctl.protocol.CtlServer`.

Three kinds of command (design §6): reads and server-side calls (status, ls, users, share…) answer at once, even
during a sync cycle; commands that change the engine's state (add, remove, delete, confirm-delete, restore,
rebuild-index) are queued to run between cycles; reload runs on the daemon's main thread.

``remove`` stops syncing an object on this device only; ``delete`` deletes it on the server for everybody and is
refused unless the request says ``confirmed`` (the CLI asks the user, or takes ``--yes``).

**A folder just added** exists only locally until a sync cycle registers it on the server (its files first, then
``register/``: the commit point). So that ``oaiod ctl add DIR && oaiod ctl share ID bob --right U`` works,
``add`` asks for that cycle at once and answers once the object is registered (``registered: true``), or says why
not yet — the server is unreachable, sync is paused, or (without ``--wait``) the cycle uploading the folder still
runs; and ``share``, ``unshare`` and ``users`` of an object still waiting for registration first wait for the
cycle that registers it (streaming progress), or fail saying why it is not registered yet.

Request arguments are untrusted: each is checked here (``oaiod.model`` validators) before the engine sees it.
"""

from __future__ import annotations

import concurrent.futures
import datetime
import json
import os
import re
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from oaiod import model
from oaiod.daemon.ctl import handles, present
from oaiod.daemon.ctl.protocol import HEARTBEAT, CommandFailed, Handler, Stream
from oaiod.errors import OaiodError, ValidationError
from oaiod.state.models import MODES

if TYPE_CHECKING:
    from oaiod.daemon.wiring import DaemonEngine


def _arg(args: Mapping[str, Any], name: str, check: Callable[[Any, str], Any] | None = None, default: Any = ...) -> Any:
    """One request argument, validated; a missing or bad one is a :class:`CommandFailed` naming it."""
    if name not in args:
        if default is ...:
            raise CommandFailed(f"missing argument {name!r}")
        return default
    value = args[name]
    if check is None:
        return value
    try:
        return check(value, name)
    except ValidationError as exc:
        raise CommandFailed(str(exc)) from None


def _flag(value: Any, name: str) -> bool:
    if not isinstance(value, bool):
        raise ValidationError(name, "must be true or false")
    return value


def _count(value: Any, name: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= 100_000:
        raise ValidationError(name, "must be a whole number between 0 and 100000")
    return value


def _local_path(value: Any, name: str) -> Path:
    if not isinstance(value, str) or not value or "\0" in value:
        raise ValidationError(name, "must be a path")
    path = Path(value).expanduser()
    if not path.is_absolute():
        raise ValidationError(name, "must be an absolute path (the CLI makes it absolute)")
    return path


QUEUE_GRACE = 2.0  #: seconds a state-changing command waits for its result before answering "queued"


class DaemonCommands:
    """The commands the daemon serves (``daemon`` is an :class:`oaiod.daemon.process.Daemon`): one method per
    ``ctl`` command, each taking the request's arguments (untrusted: checked here); :meth:`table` names them.

    Three kinds of command (design §6): reads and server-side calls (status, ls, users, share…) answer at once,
    even during a sync cycle; commands that change the engine's state (add, remove, confirm-delete, restore,
    rebuild-index) are queued to run between cycles and answer their result when it comes within
    :data:`QUEUE_GRACE`, else ``{"queued": …}`` — with ``wait: true`` they stream progress until the result.
    """

    def __init__(self, daemon: Any) -> None:
        self.daemon = daemon

    def table(self) -> dict[str, Handler]:
        """Command name -> handler."""
        return {
            "ping": self.ping,
            "status": self.status,
            "sync": self.sync,
            "pause": self.pause,
            "resume": self.resume,
            "stop": self.stop,
            "reload": self.reload,
            "rebuild-index": self.rebuild_index,
            "ls": self.ls,
            "add": self.add,
            "remove": self.remove,
            "delete": self.delete,
            # server-side calls only: safe while a cycle runs (the engine takes no lock for them)
            "share": self.share,
            "unshare": self.unshare,
            "users": self.users,
            "link": self.link,
            "conflicts": self.conflicts,
            "confirm-delete": self.confirm_delete,
            "exclude": self.exclude,
            "include": self.include,
            "exclusions": self.exclusions,
            "filestatus": self.filestatus,
            "trash": self.trash,
            "trash-restore": self.trash_restore,
            "history": self.history,
            "versions": self.versions,
            "restore": self.restore,
            "log": self.log,
            # objects of apps (oaiod.client, ctl values|new|put): changes queued like add, reads at once
            "values": self.values,
            "set-values": self.set_values,
            "new": self.new,
            "put": self.put,
            "update-file": self.update_file,
            "unregister": self.unregister,
            "changes": self.changes,
            # the status page (oaiod.daemon.ui) and live transfers
            "ui": self.ui,
            "activity": self.activity,
            # folder types (issue 14 §4)
            "mode": self.mode,
            "override": self.override,
            "revert": self.revert,
        }

    # -- how commands run ----------------------------------------------------------------------------------------

    def _scheduler(self) -> Any:
        self.daemon.ready.wait(600)  # commands sent while the daemon starts wait for it
        if self.daemon.scheduler is None:
            self.daemon.engine()  # raises with the reason
        return self.daemon.scheduler

    def _queued(
        self, what: str, func: Callable[[DaemonEngine], Any], args: Mapping[str, Any], *, resync: bool = True
    ) -> Any:
        """Run ``func(engine)`` between cycles (see the class docstring), then watch the roots again and ask for a
        cycle."""
        daemon = self.daemon

        def operation() -> Any:
            result = func(daemon.engine())
            daemon.rewatch()
            if resync and daemon.scheduler is not None:
                daemon.scheduler.trigger(what, force=True)
            return present.jsonable(result)

        wait = _arg(args, "wait", _flag, False)
        return _answer_future(daemon, what, self._scheduler().submit(what, operation), wait)

    def _read(self, func: Callable[[DaemonEngine], Any]) -> Any:
        self.daemon.ready.wait(600)
        return present.jsonable(func(self.daemon.engine()))

    def _in_main(self, what: str, func: Callable[[], Any], args: Mapping[str, Any]) -> Any:
        return _answer_future(self.daemon, what, self.daemon.call_in_main(func), _arg(args, "wait", _flag, False))

    def _server_call(self, args: Mapping[str, Any], call: Callable[[DaemonEngine, str], Any]) -> Any:
        """``call(engine, oaio_id)`` — after the cycle registering the object when it is not on the server yet."""
        daemon = self.daemon
        daemon.ready.wait(600)
        oaio_id = _object(daemon, args)
        registration = Registration(daemon, oaio_id)
        if not registration.pending():
            return present.jsonable(call(daemon.engine(), oaio_id))

        def items() -> Iterator[Any]:
            yield from registration.wait()
            if registration.reason:
                raise CommandFailed(f"{oaio_id} is not registered on the server yet: {registration.reason}")

        return Stream(items(), lambda: present.jsonable(call(daemon.engine(), oaio_id)))

    # -- the daemon -------------------------------------------------------------------------------------------------

    def ping(self, args: Mapping[str, Any]) -> Any:
        return {"pid": os.getpid()}

    def status(self, args: Mapping[str, Any]) -> Any:
        return present.jsonable(self.daemon.status())

    def sync(self, args: Mapping[str, Any]) -> Any:
        return _sync(self.daemon, self._scheduler(), _arg(args, "wait", _flag, False))

    def pause(self, args: Mapping[str, Any]) -> Any:
        self._scheduler().pause()
        return "paused"

    def resume(self, args: Mapping[str, Any]) -> Any:
        self._scheduler().resume()
        return "resumed"

    def stop(self, args: Mapping[str, Any]) -> Any:
        self.daemon.request_stop()
        return "stopping"

    def reload(self, args: Mapping[str, Any]) -> Any:
        return self._in_main("ctl reload", self.daemon.reload, args)

    def rebuild_index(self, args: Mapping[str, Any]) -> Any:
        daemon = self.daemon
        daemon.ready.wait(600)
        if daemon.scheduler is not None and daemon.handle is not None:
            return _answer_future(
                daemon,
                "ctl rebuild-index",
                daemon.scheduler.submit("ctl rebuild-index", daemon.forget_index),
                _arg(args, "wait", _flag, False),
            )
        return self._in_main("ctl rebuild-index", daemon.rebuild_index, args)  # no engine: no cycle to wait for

    def log(self, args: Mapping[str, Any]) -> Any:
        return _log(self.daemon, _arg(args, "lines", _count, 50), _arg(args, "follow", _flag, False))

    # -- objects --------------------------------------------------------------------------------------------------

    def ls(self, args: Mapping[str, Any]) -> Any:
        return self._read(lambda e: present.listing(e.objects(), e.mode_notes()))

    def add(self, args: Mapping[str, Any]) -> Any:
        daemon = self.daemon
        path, wait = _arg(args, "path", _local_path), _arg(args, "wait", _flag, False)
        mode = _arg(args, "mode", _mode, "")
        what = f"ctl add {path}"

        def operation() -> tuple[str, int | None]:
            oaio_id = daemon.engine().add_folder(path, mode)
            daemon.rewatch()
            registering = daemon.scheduler  # the cycle that registers it, asked for before anybody waits for it
            return oaio_id, registering.trigger(what, force=True) if registering is not None else None

        return _added(daemon, what, self._scheduler().submit(what, operation), wait)

    def remove(self, args: Mapping[str, Any]) -> Any:
        oaio_id = _object(self.daemon, args)
        return self._queued(f"ctl remove {oaio_id}", lambda e: e.remove(oaio_id), args)

    def delete(self, args: Mapping[str, Any]) -> Any:
        oaio_id = _object(self.daemon, args)
        if _arg(args, "confirmed", _flag, False) is not True:  # the CLI asks the user first; a script says --yes
            raise CommandFailed(f"deleting {oaio_id} for everybody needs confirmation: oaiod ctl delete OBJ --yes")
        return self._queued(f"ctl delete {oaio_id}", lambda e: e.delete(oaio_id), args)

    def confirm_delete(self, args: Mapping[str, Any]) -> Any:
        oaio_id = _object(self.daemon, args)
        return self._queued(f"ctl confirm-delete {oaio_id}", lambda e: e.confirm_delete(oaio_id), args)

    def exclude(self, args: Mapping[str, Any]) -> Any:
        """Selective sync: stop holding a path here (``dry_run``: what would go to the trash, nothing done)."""
        path, dry_run = _arg(args, "path", _local_path), _arg(args, "dry_run", _flag, False)
        if dry_run:
            return self._read(lambda e: e.exclude(path, dry_run=True))
        return self._queued(f"ctl exclude add {path}", lambda e: e.exclude(path), args)

    def include(self, args: Mapping[str, Any]) -> Any:
        path = _arg(args, "path", _local_path)
        return self._queued(f"ctl exclude remove {path}", lambda e: e.include(path), args)

    def exclusions(self, args: Mapping[str, Any]) -> Any:
        return self._read(lambda e: [{"folder": folder, "path": path} for folder, path in e.exclusions()])

    def trash(self, args: Mapping[str, Any]) -> Any:
        return self._read(lambda e: e.trash())

    def trash_restore(self, args: Mapping[str, Any]) -> Any:
        path, day = _arg(args, "path", _local_path), _arg(args, "day", _day, None)
        return self._queued(f"ctl trash restore {path}", lambda e: e.restore_trash(path, day), args)

    def restore(self, args: Mapping[str, Any]) -> Any:
        stamp, to = _arg(args, "stamp", model.validate_stamp), _arg(args, "to", _local_path, None)
        path = _inside(self.daemon, args)
        if path is not None:  # one file or folder inside a synced folder
            return self._queued(f"ctl restore {path} {stamp}", lambda e: e.restore_path(path, stamp, to=to), args)
        oaio_id = _object(self.daemon, args)
        return self._queued(f"ctl restore {oaio_id} {stamp}", lambda e: e.restore(oaio_id, stamp, to=to), args)

    def filestatus(self, args: Mapping[str, Any]) -> Any:
        path = _arg(args, "path", _local_path)
        return self._read(lambda e: e.file_status(path))

    def conflicts(self, args: Mapping[str, Any]) -> Any:
        return self._read(lambda e: present.rows(e.conflicts()))

    def history(self, args: Mapping[str, Any]) -> Any:
        """Per-file changes, newest first: ``limit`` rows, ``since`` (``2h``, ``3d``, an ISO date or time, local),
        of ``path`` (a synced folder, a file or folder in one)."""
        limit, since = _arg(args, "limit", _count, 50), _arg(args, "since", _since, "")
        path = _arg(args, "path", _local_path, None)
        return self._read(lambda e: present.history(e.history(limit, since=since, path=path), e.objects().objects))

    def versions(self, args: Mapping[str, Any]) -> Any:
        path = _inside(self.daemon, args)
        if path is not None:
            return self._read(lambda e: present.file_versions(e.file_versions(path)))
        return self._read(lambda e: present.versions(e.versions(_object(self.daemon, args))))

    # -- the status page and live transfers (oaiod.daemon.ui reads the same) ------------------------------------

    def ui(self, args: Mapping[str, Any]) -> Any:
        """Where the status page is, with a one-time login URL (the token itself stays in its 0600 file)."""
        server = self.daemon.ui_server
        if server is None:
            raise CommandFailed(f"the status page is off: {self.daemon.ui_error or 'ui.enabled = false in the config'}")
        return {"url": server.url, "login_url": server.login_url(), "token_file": str(server.token_file)}

    def activity(self, args: Mapping[str, Any]) -> Any:
        """The transfers in flight and what waits (:func:`present.activity`); ``follow`` streams each change."""
        if not _arg(args, "follow", _flag, False):
            return _activity(self.daemon)

        def items() -> Iterator[Any]:
            shown: Any = None
            while True:  # until the client goes (the server checks at each heartbeat) or the daemon stops
                now = _activity(self.daemon)
                if now != shown:
                    shown = now
                    yield now
                else:
                    yield HEARTBEAT
                time.sleep(ACTIVITY_INTERVAL)

        return Stream(items(), lambda: None)

    # -- sharing: server-side calls, after the object's registration --------------------------------------------

    def share(self, args: Mapping[str, Any]) -> Any:
        who, right = _user(args), _arg(args, "right", _right)
        return self._server_call(args, lambda e, oaio_id: e.share(oaio_id, who, right))

    def unshare(self, args: Mapping[str, Any]) -> Any:
        who = _user(args)
        return self._server_call(args, lambda e, oaio_id: e.unshare(oaio_id, who))

    def users(self, args: Mapping[str, Any]) -> Any:
        return self._server_call(args, lambda e, oaio_id: e.users(oaio_id))

    # -- folder types: send-only and receive-only (engine/modes.py) ----------------------------------------------

    def mode(self, args: Mapping[str, Any]) -> Any:
        oaio_id, mode = _object(self.daemon, args), _arg(args, "mode", _mode)
        return self._queued(f"ctl mode {oaio_id}", lambda e: {"oaio_id": oaio_id, "mode": mode,
                                                              "was": e.set_mode(oaio_id, mode)}, args)  # fmt: skip

    def override(self, args: Mapping[str, Any]) -> Any:
        oaio_id = _object(self.daemon, args)
        return self._queued(f"ctl override {oaio_id}", lambda e: e.override(oaio_id), args)

    def revert(self, args: Mapping[str, Any]) -> Any:
        oaio_id = _object(self.daemon, args)
        return self._queued(f"ctl revert {oaio_id}", lambda e: e.revert(oaio_id), args)

    # -- share links: server-side calls (the hub's "links" feature) -------------------------------------------

    def link(self, args: Mapping[str, Any]) -> Any:
        """A link to the synced folder (``oaio_id``, any handle) or a file or folder inside it; with ``list`` the
        object's links, with ``revoke`` (a link id) that link revoked. ``password`` travels only on this socket."""
        revoke = _arg(args, "revoke", _link_id, None)
        if revoke is not None:
            return self._read(lambda e: e.revoke_link(revoke))
        if _arg(args, "list", _flag, False):
            return self._server_call(args, lambda e, oaio_id: e.links(oaio_id))
        expires, password = _arg(args, "expires", _lifetime, LINK_LIFETIME), _arg(args, "password", _secret, None)
        inside = _inside(self.daemon, args)
        path = _path_in_object(self.daemon, inside) if inside is not None else ""
        return self._server_call(args, lambda e, oaio_id: e.link(oaio_id, path, expires, password))

    # -- objects of apps: data and file objects, values (oaiod.client, ctl values|new|put) -----------------------

    def values(self, args: Mapping[str, Any]) -> Any:
        oaio_id = _object(self.daemon, args)
        return self._read(lambda e: e.values(oaio_id))

    def set_values(self, args: Mapping[str, Any]) -> Any:
        """Change (``values``) and delete (``unset``) keys; answers the values as they are then on this device."""
        oaio_id = _object(self.daemon, args)
        values, unset = _arg(args, "values", _values, {}), _arg(args, "unset", _keys, [])

        def change(engine: DaemonEngine) -> Any:
            engine.set_values(oaio_id, values, unset)
            return engine.values(oaio_id)

        return self._queued(f"ctl values {oaio_id}", change, args)

    def new(self, args: Mapping[str, Any]) -> Any:
        """A new data object; answers as ``add`` does, once registered (or why not yet)."""
        values = _arg(args, "values", _values)
        return self._registered("ctl new", lambda e: e.new_object(values), args)

    def put(self, args: Mapping[str, Any]) -> Any:
        """A new file object: ``name`` (the file's name in it) copied from ``source`` (absent: the file is in
        ``root`` already), in ``root`` or else ``client_root/filez/<oaio_id>/``."""
        name, values = _arg(args, "name", model.validate_file_path), _arg(args, "values", _values, {})
        source, root = _arg(args, "source", _local_path, None), _arg(args, "root", _local_path, None)
        if source is None and root is None:
            raise CommandFailed("put needs the file: a source, or a root holding it")
        return self._registered(f"ctl put {name}", lambda e: e.new_file_object(name, source, root, values), args)

    def update_file(self, args: Mapping[str, Any]) -> Any:
        oaio_id, source = _object(self.daemon, args), _arg(args, "source", _local_path, None)
        name = _arg(args, "name", lambda value, field: model.validate_file_path(value, field) if value else "", "")
        return self._queued(f"update file of {oaio_id}", lambda e: e.update_file(oaio_id, name, source), args)

    def unregister(self, args: Mapping[str, Any]) -> Any:
        """Delete an object for everybody (an app's call: no confirmation); ``wipe_files`` deletes its files too."""
        oaio_id, wipe = _object(self.daemon, args), _arg(args, "wipe_files", _flag, False)
        return self._queued(f"unregister {oaio_id}", lambda e: e.unregister(oaio_id, wipe), args)

    def changes(self, args: Mapping[str, Any]) -> Any:
        """Stream the server-side changes the daemon pulls (:mod:`oaiod.daemon.ctl.changes`) until it stops."""
        from oaiod.daemon.ctl import changes

        daemon = self.daemon
        daemon.ready.wait(600)
        device = daemon.handle.device_id if daemon.handle is not None else ""
        return Stream(changes.stream(daemon, device), lambda: None)

    def _registered(self, what: str, func: Callable[[DaemonEngine], str], args: Mapping[str, Any]) -> Any:
        """Run ``func`` (it records a new object) between cycles, then answer as ``add``: registered or why not."""
        daemon = self.daemon

        def operation() -> tuple[str, int | None]:
            oaio_id = func(daemon.engine())
            daemon.rewatch()
            registering = daemon.scheduler
            return oaio_id, registering.trigger(what, force=True) if registering is not None else None

        return _added(daemon, what, self._scheduler().submit(what, operation), _arg(args, "wait", _flag, False))


APPS = ("data", "files")  #: kinds of objects apps make: named by their ``_name`` (a folder by its folder's name)
MAX_VALUES = 256 * 1024  #: bytes of JSON an app's values may take in one request (a data object, not a file)


def _values(value: Any, name: str) -> dict[str, Any]:
    """An app's values: an object with text keys, at most :data:`MAX_VALUES` bytes as JSON."""
    if not isinstance(value, dict) or not all(isinstance(key, str) and key for key in value):
        raise ValidationError(name, "must be an object with non-empty text keys")
    if len(json.dumps(value)) > MAX_VALUES:
        raise ValidationError(name, f"more than {MAX_VALUES} bytes of JSON")
    return value


def _keys(value: Any, name: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(key, str) and key for key in value):
        raise ValidationError(name, "must be a list of keys")
    return value


def _mode(value: Any, name: str) -> str:
    if value not in MODES:
        raise ValidationError(name, f"must be one of {', '.join(MODES)}")
    return str(value)


def _day(value: Any, name: str) -> str:
    """A trash day, ``YYYY-MM-DD``."""
    try:
        return datetime.date.fromisoformat(value).isoformat()
    except (TypeError, ValueError):
        raise ValidationError(name, "must be a day as YYYY-MM-DD") from None


SINCE_UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def _since(value: Any, name: str, now: datetime.datetime | None = None) -> str:
    """``2h``, ``3d``, ``90m``, ``1w`` ago, or an ISO date or time (local unless it names its zone), as a stamp."""
    text = value.strip().lower() if isinstance(value, str) else ""
    now = now or datetime.datetime.now(datetime.UTC)
    ago = re.fullmatch(r"(\d{1,6})\s*([mhdw])", text)
    try:
        if ago:
            moment = now - datetime.timedelta(**{SINCE_UNITS[ago.group(2)]: int(ago.group(1))})
        else:
            moment = datetime.datetime.fromisoformat(text.upper())
            if moment.tzinfo is None:
                moment = moment.astimezone()  # the local time people type
    except (ValueError, OverflowError):
        raise ValidationError(
            name, f"must be like 2h, 3d or an ISO date (2026-12-01), not {str(value)[:40]!r}"
        ) from None
    return moment.astimezone(datetime.UTC).strftime(model.STAMP_FORMAT)


def _right(value: Any, name: str) -> str:
    return model.validate_access_right(value, name, allow_none=False)


def _object(daemon: Any, args: Mapping[str, Any]) -> str:
    """The id of the object the request's ``oaio_id`` names: an id, a path, a name or a unique prefix
    (:mod:`oaiod.daemon.ctl.handles`)."""
    handle = _arg(args, "oaio_id")
    if not isinstance(handle, str) or len(handle) > 4096 or "\0" in handle:
        raise CommandFailed("oaio_id: must be an object's id, path or name")
    daemon.ready.wait(600)
    listing = daemon.engine().objects()
    known = [
        handles.Known(row.oaio_id, row.local_root or "", listing.names.get(row.oaio_id, "") if row.kind in APPS else "")
        for row in listing.objects
    ]
    oaio_id: str = _arg({"oaio_id": handles.resolve(handle, known)}, "oaio_id", model.validate_oaio_id)
    return oaio_id


def _inside(daemon: Any, args: Mapping[str, Any]) -> Path | None:
    """The file or folder that the request's ``oaio_id`` names when it is a path *inside* a synced folder (the
    file forms of ``versions`` and ``restore``); None for anything else (an object's handle, its folder)."""
    handle = args.get("oaio_id")
    if not isinstance(handle, str) or not os.path.isabs(handle) or "\0" in handle or len(handle) > 4096:
        return None
    daemon.ready.wait(600)
    folders = {os.path.realpath(row.local_root) for row in daemon.engine().objects().objects if row.local_root}
    real = os.path.realpath(handle)
    if real in folders or not any(real.startswith(folder.rstrip("/") + "/") for folder in folders):
        return None
    return Path(handle)


LINK_LIFETIME = 7 * 86400  #: seconds a link made by ``ctl link`` works unless told


def _link_id(value: Any, name: str) -> str:
    if not isinstance(value, str) or not 1 <= len(value) <= 64 or not value.replace("-", "").replace("_", "").isalnum():
        raise ValidationError(name, "must be a link's id, as ctl link --list shows it")
    return value


def _lifetime(value: Any, name: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 60 <= value <= 365 * 86400:
        raise ValidationError(name, "must be 60 seconds to 365 days")
    return value


def _secret(value: Any, name: str) -> str:
    if not isinstance(value, str) or not value or len(value) > 1024:
        raise ValidationError(name, "must be 1 to 1024 characters")
    return value


def _path_in_object(daemon: Any, path: Path) -> str:
    """The ``/``-separated path of ``path`` inside the synced folder holding it most closely."""
    real = os.path.realpath(path)
    roots = [os.path.realpath(row.local_root) for row in daemon.engine().objects().objects if row.local_root]
    holding = max((root for root in roots if real.startswith(root.rstrip("/") + "/")), key=len)
    return Path(os.path.relpath(real, holding)).as_posix()


def _user(args: Mapping[str, Any]) -> str:
    username: str = _arg(args, "user", model.validate_username)
    return username


def _answer_future(daemon: Any, what: str, future: concurrent.futures.Future[Any], wait: bool) -> Any:
    """The result when it comes within :data:`QUEUE_GRACE`; else ``{"queued": what}``, or with ``wait`` a stream
    of progress items that ends with the result (or the operation's error)."""
    try:
        return future.result(timeout=QUEUE_GRACE)
    except concurrent.futures.TimeoutError:
        pass
    if not wait:
        return _queued(what)
    return Stream(_future_progress(daemon, future), future.result)


def _queued(what: str) -> dict[str, str]:
    return {"queued": what, "detail": "runs when the current sync cycle ends (--wait waits for it)"}


def _future_progress(daemon: Any, future: concurrent.futures.Future[Any]) -> Iterator[Any]:
    """Progress items every half second until ``future`` is done (its error is left for ``result()`` to raise)."""
    while True:
        try:
            future.result(timeout=0.5)
            return
        except concurrent.futures.TimeoutError:
            yield _progress(daemon)
        except Exception:
            return


def _added(daemon: Any, what: str, future: concurrent.futures.Future[tuple[str, int | None]], wait: bool) -> Any:
    """``ctl add``'s answer: ``{"oaio_id", "registered", "detail"}`` once the folder is registered on the server or
    it is clear why not yet; without ``wait`` within :data:`QUEUE_GRACE` (else ``{"queued": …}``), with ``wait``
    streaming progress until then."""
    deadline = time.monotonic() + QUEUE_GRACE
    if not wait:
        try:
            oaio_id, cycle = future.result(timeout=QUEUE_GRACE)
        except concurrent.futures.TimeoutError:
            return _queued(what)
        registration = Registration(daemon, oaio_id)
        for _item in registration.wait(deadline, cycle):
            pass
        return registration.answer()
    done: list[Registration] = []

    def items() -> Iterator[Any]:
        yield from _future_progress(daemon, future)
        oaio_id, cycle = future.result()  # the add's own error is the answer
        done.append(Registration(daemon, oaio_id))
        yield from done[0].wait(None, cycle)

    return Stream(items(), lambda: done[0].answer())


class Registration:
    """Waits for the sync cycle that registers a folder added with ``ctl add`` on the server (see the module
    docstring); after :meth:`wait`, :attr:`reason` is empty when it is registered, else says why not yet."""

    def __init__(self, daemon: Any, oaio_id: str) -> None:
        self.daemon = daemon
        self.oaio_id = oaio_id
        self.reason = ""

    def pending(self) -> bool:
        """True while the object exists only in the state database (status ``new``)."""
        from oaiod.state.models import STATUS_NEW

        repo = self.daemon.engine().repo
        row = repo.get_object(self.oaio_id) if repo is not None else None
        return row is not None and row.status == STATUS_NEW

    def wait(self, deadline: float | None = None, cycle: int | None = None) -> Iterator[Any]:
        """Progress items until the object is registered, or cycle ``cycle`` (one asked for here when None) ended
        without registering it, or ``time.monotonic()`` passes ``deadline``."""
        self.reason = ""
        scheduler = self.daemon.scheduler
        while self.pending():
            if scheduler is None or not scheduler.running or scheduler is not self.daemon.scheduler:
                self.reason = "the daemon is stopping or reloading; it is registered at the next sync cycle"
                return
            if scheduler.paused:
                self.reason = "sync is paused; it is registered after: oaiod ctl resume"
                return
            if cycle is None:
                cycle = scheduler.trigger(f"registering {self.oaio_id}", force=True)
            outcome = scheduler.wait_for_cycle(cycle, 0.5)
            if outcome is not None:
                if self.pending():
                    self.reason = self._why_not(outcome)
                return
            if deadline is not None and time.monotonic() >= deadline:
                self.reason = "the sync cycle uploading its files runs now (see: oaiod ctl status); share waits for it"
                return
            yield _progress(self.daemon)

    def _why_not(self, outcome: Any) -> str:
        if outcome.error is not None:
            what = "the server is unreachable" if outcome.transient else "the sync cycle failed"
            return f"{what} ({outcome.error}); it is registered at the next sync cycle"
        repo = self.daemon.engine().repo
        for row in repo.errors() if repo is not None else []:
            if row.oaio_id == self.oaio_id:
                return f"registering it failed ({row.message}); it is tried again at the next sync cycle"
        return "it is registered at the next sync cycle"

    def answer(self) -> dict[str, Any]:
        if not self.reason:
            return {"oaio_id": self.oaio_id, "registered": True, "detail": "registered on the server"}
        return {
            "oaio_id": self.oaio_id,
            "registered": False,
            "detail": f"not registered on the server yet: {self.reason}",
        }


SYNC_WAIT_ROUNDS = 30  #: cycles ``ctl sync --wait`` runs at most while files keep changing under it


def _sync(daemon: Any, scheduler: Any, wait: bool) -> Any:
    """``ctl sync``: request a cycle now (even while backing off, and every backed-off item tried again);
    ``--wait`` streams progress until everything changed before the call is committed and the server's changes
    are pulled.

    One cycle is not enough for that: the watcher holds changes until they were quiet for ``debounce`` seconds
    (a cycle asked for at once would not see them), and a cycle leaves files still being written (the engine's
    quiet period) to the next one. So each round hands the watcher's changes over first (:meth:`Watcher.settle`),
    waits for a cycle that started after that, and goes round again while the engine has changed paths left —
    after a pause of the quiet period, at most :data:`SYNC_WAIT_ROUNDS` times (files that never stop changing).
    A cycle that failed ends the wait with its error; per-item failures are in the result's report."""
    if scheduler.paused:
        raise CommandFailed("sync is paused; run: oaiod ctl resume")
    daemon.engine().retry_failed()
    if not wait:
        return {"requested": scheduler.trigger("ctl sync", force=True)}
    outcome: list[Any] = []
    quiet = max(0.1, float(daemon.config.sync.debounce) / 2)

    def items() -> Iterator[Any]:
        for _round in range(SYNC_WAIT_ROUNDS):
            daemon.settle_local_changes()
            number = scheduler.trigger("ctl sync --wait", force=True)
            while (done := scheduler.wait_for_cycle(number, 0.5)) is None:
                if not scheduler.running:
                    raise CommandFailed("the daemon is stopping")
                if scheduler.paused:  # no cycle runs until resumed: do not wait for ever
                    raise CommandFailed("sync was paused meanwhile; run: oaiod ctl resume")
                yield _progress(daemon)
            outcome[:] = [done]
            daemon.settle_local_changes()  # what the cycle's own downloads or a late writer changed meanwhile
            if done.error is not None or not daemon.engine().local_changes_left():
                return
            yield _progress(daemon)
            time.sleep(quiet)  # files still being written: the engine looks again once they were quiet

    def result() -> Any:
        done = outcome[0]
        if done.error is not None:
            raise CommandFailed(f"sync failed: {done.error}")
        left = daemon.engine().local_changes_left()
        answer = {"cycle": done.number, "report": present.jsonable(done.report)}
        if left:
            answer["still_changing"] = left
        return answer

    return Stream(items(), result)


def _progress(daemon: Any) -> Any:
    try:
        return {"state": daemon.state(), "progress": present.jsonable(daemon.engine().progress)}
    except OaiodError:
        return {"state": daemon.state(), "progress": None}


ACTIVITY_INTERVAL = 0.5  #: seconds between two looks at the transfers for ``activity --follow`` and the page


def _activity(daemon: Any) -> dict[str, Any]:
    """Read off the engine's live ``Progress`` (plain attributes: no lock, no database), cheap enough to poll."""
    handle = daemon.handle
    progress = handle.engine.progress if handle is not None else None
    as_dict = getattr(progress, "as_dict", None)
    shown = as_dict() if callable(as_dict) else progress if isinstance(progress, Mapping) else None
    return present.activity(daemon.state(), shown)


def _log(daemon: Any, lines: int, follow: bool) -> Any:
    buffer = daemon.log_buffer
    recent = buffer.since(0)[-lines:] if lines else []
    if not follow:
        return [line for _, line in recent]
    start = recent[0][0] - 1 if recent else buffer.counter

    def items() -> Iterator[Any]:
        for line in daemon.follow_log(start, lambda: False):
            yield HEARTBEAT if line is None else line

    return Stream(items(), lambda: None)
