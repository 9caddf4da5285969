"""The Python API for apps: :class:`Client`, one running daemon's objects over its control socket.

The verbs are the published client's (``ae.oaio_client.OaioClient``), named the same where they mean the same, so
an app switches with little change; what differs is that the daemon does the syncing. A call records the change in
the daemon's state and the daemon's next cycle commits it — with its journal, its merge of values by key and its
conflict rules (design §4, §5) — instead of the app uploading whole objects itself. Results are dataclasses and
failures the exceptions of :mod:`oaiod.client.errors`; nothing answers an error string.

Every call opens its own connection to the socket (:class:`oaiod.daemon.ctl.protocol.CtlClient`): a ``Client``
holds no connection and may be shared by threads.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from oaiod.client.errors import ClientError, ValuesClash, translated
from oaiod.daemon.ctl.protocol import CtlClient, CtlError


@dataclass(frozen=True)
class ObjectInfo:
    """An object this daemon syncs. ``values`` holds a data or file object's own values (None for folders: see
    :meth:`Client.values`); ``path`` is its local folder (None for a data object)."""

    oaio_id: str
    kind: str  #: root, folder, files or data
    name: str  #: its ``_name`` ("" when it has none)
    path: str | None
    status: str  #: active, new (not registered yet), held, removed
    right: str  #: this user's access right: C, D, U or r
    stamp: str  #: the synced version
    owner: str
    values: dict[str, Any] | None = None


@dataclass(frozen=True)
class Registered:
    """A new object: ``registered`` once the server has it, else ``detail`` says why not yet (offline, paused)."""

    oaio_id: str
    registered: bool
    detail: str


@dataclass(frozen=True)
class Clash:
    """A key of an object's values changed differently here and elsewhere; ``detail`` says which value stayed."""

    oaio_id: str
    key: str
    detail: str


@dataclass(frozen=True)
class Change:
    """A change the daemon pulled from the server: ``change`` is new, updated, deleted or clash (then ``key`` and
    ``detail`` say which key and which value stayed)."""

    change: str
    oaio_id: str
    kind: str = ""
    stamp: str = ""
    key: str = ""
    detail: str = ""


@dataclass(frozen=True)
class UserAccess:
    """A user and their right on an object (``userz_access``)."""

    username: str
    access_right: str


@dataclass(frozen=True)
class Synced:
    """What :meth:`Client.wait_synced` waited for: the cycle, what it did, and the value clashes standing."""

    cycle: int
    pushed: int = 0
    pulled: int = 0
    errors: list[str] = field(default_factory=list)
    clashes: list[Clash] = field(default_factory=list)


class Client:
    """One daemon's objects (see the module docstring); made by :func:`oaiod.client.connect`."""

    def __init__(self, socket: Path, client_root: Path, timeout: float | None = 60.0) -> None:
        self.socket = socket
        self.client_root = client_root
        self._ctl = CtlClient(socket, timeout=timeout)
        self._waiting = CtlClient(socket, timeout=None)  # calls that wait for a sync cycle

    # -- registering ---------------------------------------------------------------------------------------------

    def register_object(self, values: Mapping[str, Any]) -> Registered:
        """A new data object with ``values`` (``_name`` names it); answers once the server registered it."""
        return Registered(**self._wait("new", values=dict(values)))

    def register_file(
        self,
        file_name: str,
        file_content: bytes | None = None,
        root_path: str | os.PathLike[str] = "",
        *,
        source: str | os.PathLike[str] | None = None,
        values: Mapping[str, Any] | None = None,
    ) -> Registered:
        """A new file object holding ``file_name``: in ``root_path`` (the file is there, or ``file_content`` writes
        it), or without one in ``client_root/filez/<oaio_id>/`` (from ``file_content`` or the file ``source``)."""
        root = str(Path(root_path).absolute()) if root_path else None
        with _content_file(file_content, source) as path:
            args: dict[str, Any] = {"name": file_name, "values": dict(values or {})}
            if root is not None:
                args["root"] = root
            if path is not None:
                args["source"] = path
            return Registered(**self._wait("put", **args))

    def register_folder(self, root_path: str | os.PathLike[str]) -> Registered:
        """Sync a folder as a folder object (as ``oaiod ctl add``)."""
        return Registered(**self._wait("add", path=str(Path(root_path).absolute())))

    # -- changing --------------------------------------------------------------------------------------------------

    def update_object(
        self, oaio_id: str, values: Mapping[str, Any], *, unset: Iterable[str] = (), sync: bool = False
    ) -> dict[str, Any]:
        """Change keys of an object's values (``unset``: delete keys); the values as they are now on this device.
        The next cycle merges them by key with the server's. With ``sync`` it waits for that and raises
        :class:`ValuesClash` when a key was changed differently elsewhere (the other value kept: design §5)."""
        before = self._last_clash() if sync else 0
        result: dict[str, Any] = self._wait("set-values", oaio_id=oaio_id, values=dict(values), unset=list(unset))
        if sync:
            self.wait_synced()
            clashes = [clash for clash in self._clashes(after=before) if clash.oaio_id == oaio_id]
            if clashes:
                raise ValuesClash(clashes)
            return self.values(oaio_id)
        return result

    def update_file(
        self,
        oaio_id: str,
        file_name: str = "",
        file_content: bytes | None = None,
        *,
        source: str | os.PathLike[str] | None = None,
    ) -> str:
        """Replace a file object's file (``file_name``: its first file by default; a new name is added) with
        ``file_content`` or the file ``source`` — or, with neither, commit it as it is now. Its local path."""
        with _content_file(file_content, source) as path:
            args: dict[str, Any] = {"oaio_id": oaio_id, "name": file_name}
            if path is not None:
                args["source"] = path
            return str(self._wait("update-file", **args))

    def unregister_object(self, oaio_id: str, wipe_files: bool = False) -> str:
        """Delete an object for everybody (with the right C or D; else leave its share); ``wipe_files`` also
        deletes its versions on the storage host and its files here. Says what was done."""
        return str(self._wait("unregister", oaio_id=oaio_id, wipe_files=wipe_files))

    # -- sharing ---------------------------------------------------------------------------------------------------

    def upsert_subscription(self, oaio_id: str, user_name: str, access_right: str = "r") -> int:
        """Share an object with a user (or change their right); the subscription's id on the server."""
        return int(self._call("share", oaio_id=oaio_id, user=user_name, right=access_right) or 0)

    def unsubscribe(self, oaio_id: str, user_name: str) -> None:
        """End a user's subscription of an object."""
        self._call("unshare", oaio_id=oaio_id, user=user_name)

    def userz_access(self, oaio_id: str) -> list[UserAccess]:
        """Every user and their right on an object, sorted by right then name (as the published client)."""
        rows = self._call("users", oaio_id=oaio_id)
        found = [UserAccess(str(row.get("username", "")), str(row.get("access_right", ""))) for row in rows]
        return sorted(found, key=lambda user: user.access_right + user.username)

    # -- reading ---------------------------------------------------------------------------------------------------

    def objects(self) -> list[ObjectInfo]:
        """Every object this daemon syncs."""
        return [
            ObjectInfo(
                oaio_id=row["oaio_id"],
                kind=row["kind"],
                name=row.get("name") or "",
                path=row.get("path"),
                status=row["status"],
                right=row.get("right") or "",
                stamp=row.get("stamp") or "",
                owner=row.get("owner") or "",
                values=row.get("values"),
            )
            for row in self._call("ls")
            if row.get("kind") != "excluded"
        ]

    def values(self, oaio_id: str) -> dict[str, Any]:
        """An object's values as this device has them (its uncommitted changes included)."""
        values: dict[str, Any] = self._call("values", oaio_id=oaio_id)
        return values

    def clashes(self) -> list[Clash]:
        """The value clashes that stand (``ctl conflicts``, kind ``value``)."""
        return self._clashes()

    # -- waiting ---------------------------------------------------------------------------------------------------

    def wait_synced(self) -> Synced:
        """Wait until every change made before the call is committed and the server's changes are pulled."""
        answer = self._wait_stream("sync", wait=True)
        report = answer.get("report") or {}
        return Synced(
            cycle=int(answer.get("cycle") or 0),
            pushed=int(report.get("pushed") or 0),
            pulled=int(report.get("pulled") or 0),
            errors=[str(error) for error in report.get("errors") or []],
            clashes=self._clashes(),
        )

    def changes(self) -> Iterator[Change]:
        """The server-side changes the daemon pulls, as they come (new, updated, deleted objects and value
        clashes); runs until the daemon stops (then :class:`ConnectionLost`) or the caller stops iterating."""
        try:
            for item in self._waiting.stream("changes"):
                yield Change(**item)
        except CtlError as exc:
            raise translated(exc) from None

    # -- the control connection -------------------------------------------------------------------------------

    def _call(self, cmd: str, **args: Any) -> Any:
        try:
            return self._ctl.call(cmd, **args)
        except CtlError as exc:
            raise translated(exc) from None

    def _wait(self, cmd: str, **args: Any) -> Any:
        """A command that changes the daemon's state: it runs between cycles, and this waits for its result."""
        return self._wait_stream(cmd, wait=True, **args)

    def _wait_stream(self, cmd: str, **args: Any) -> Any:
        """Run a command that streams progress (ignored here) and then answers; its result."""
        try:
            stream = self._waiting.stream(cmd, **args)
            for _progress in stream:
                pass
        except CtlError as exc:
            raise translated(exc) from None
        return stream.result

    def _clashes(self, after: int = 0) -> list[Clash]:
        return [
            Clash(row["oaio_id"], row["path"], row.get("detail") or "")
            for row in self._call("conflicts")
            if row.get("kind") == "value" and int(row.get("id") or 0) > after
        ]

    def _last_clash(self) -> int:
        return max(
            (int(row.get("id") or 0) for row in self._call("conflicts") if row.get("kind") == "value"), default=0
        )


@contextlib.contextmanager
def _content_file(content: bytes | None, source: str | os.PathLike[str] | None) -> Iterator[str | None]:
    """The path the daemon copies a file from: ``source``, or ``content`` in a private temp file (removed after
    the call; the daemon copies it beside its target and renames it there, never a torn file)."""
    if content is None:
        yield str(Path(source).absolute()) if source is not None else None
        return
    if source is not None:
        raise ClientError("give file_content or source, not both")
    fd, name = tempfile.mkstemp(prefix="oaiod-client-")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(content)
        yield name
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(name)
