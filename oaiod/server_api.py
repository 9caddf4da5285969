"""Client of the oaio server API: part A of ``oaio-api.md`` for any oaio server, and part B (``docs/hub-api.md``)
only when the server says it offers it (:meth:`OaioServerApi.features`, detected once, never assumed).

Everything the server sends is validated with :mod:`oaiod.model` before it is returned: server data is hostile.
An invalid answer raises :class:`~oaiod.http.ProtocolError`, except an invalid object in a listing: it is
returned apart (:class:`RejectedObject`), so one hostile object cannot stop every other from syncing.
Logging in, CSRF, retries and the one re-login after an expired session are :mod:`oaiod.http`'s work.

Exceptions (below :class:`~oaiod.http.RemoteError`; the transport and status errors are those of
:mod:`oaiod.http`)::

    RemoteError
    ├── TransportError, RequestTimeout            no usable answer (transient)
    ├── HTTPStatusError                           AuthError, PermissionDenied, NotFound, Gone, ServerError, …
    │   └── Conflict
    │       └── UploadConflict                    409 on register/upload: .server_object is the stored object
    ├── ProtocolError                             an invalid object, stamp, id or header from the server
    ├── ClockSkewError                            server and local clock differ by more than 69 s
    └── NotSupported                              a part-B call to a server that does not offer it
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import quote

import requests

from oaiod.errors import ConfigError, ValidationError
from oaiod.http import (
    DEFAULT_TIMEOUT,
    NO_RETRY,
    AuthError,
    Conflict,
    Gone,
    HttpClient,
    HTTPStatusError,
    NotFound,
    OaioSessionAuth,
    PermissionDenied,
    ProtocolError,
    RemoteError,
    RequestTimeout,
    RetryPolicy,
    TransportError,
    json_of,
    server_base_url,
)
from oaiod.model import (
    MAX_STAMP_DIFF,
    NO_ACCESS_RIGHT,
    OaiObject,
    context_encode,
    now_stamp,
    stamp_diff,
    validate_access_right,
    validate_exact_keys,
    validate_name,
    validate_oaio_id,
    validate_object_dict,
    validate_stamp,
    validate_username,
    validate_values,
)
from oaiod.secrets import Secret

__all__ = [
    "DELETED_COUNT_HEADER",
    "FEED_TIMEOUT_MARGIN",
    "HUB_HEADER",
    "SYNC_STAMP_HEADER",
    "AuthError",
    "ClockSkewError",
    "Conflict",
    "Gone",
    "HTTPStatusError",
    "NotFound",
    "NotSupported",
    "OaioServerApi",
    "ObjectOrigin",
    "ObjectVersion",
    "PermissionDenied",
    "ProtocolError",
    "RejectedObject",
    "RemoteError",
    "RequestTimeout",
    "StampzResult",
    "TransportError",
    "UploadConflict",
]

log = logging.getLogger("oaiod.server_api")
T = TypeVar("T")

HUB_HEADER = "X-Oaiod-Hub"
SYNC_STAMP_HEADER = "X-Oaiod-Sync-Stamp"
DELETED_COUNT_HEADER = "X-Oaiod-Deleted-Count"
LEAN_HEADER = "X-Oaiod-Lean"  # "1": the hub answers objects with empty server_values (feature "lean")
FEED_TIMEOUT_MARGIN = 15.0  # seconds the read timeout of the change feed exceeds its poll time


class UploadConflict(Conflict):
    """409 from ``register/`` or ``upload/``: the server kept its version, ``server_object`` (None when a server
    answered 409 without one). Pull, merge, and upload again on top of ``server_object.client_stamp``."""

    def __init__(self, conflict: Conflict, server_object: OaiObject | None) -> None:
        super().__init__(conflict.method, conflict.url, conflict.status, conflict.body, "Conflict")
        self.server_object = server_object


class ClockSkewError(RemoteError):
    """The server's clock and ours differ by more than :data:`~oaiod.model.MAX_STAMP_DIFF` seconds."""

    def __init__(self, local_stamp: str, server_stamp: str, seconds: float) -> None:
        super().__init__(
            f"clocks are out of sync by {seconds:+.1f} s (more than {MAX_STAMP_DIFF:g} s): local {local_stamp}, "
            f"server {server_stamp}; fix the time of this device (NTP) or of the server"
        )
        self.local_stamp = local_stamp
        self.server_stamp = server_stamp
        self.seconds = seconds


class NotSupported(RemoteError):
    """The server does not offer this part-B feature; the caller falls back (e.g. polls instead of waiting)."""


@dataclass(frozen=True)
class StampzResult:
    """What :meth:`OaioServerApi.stampz` found.

    ``full``: ``objects`` is everything the user may read, so anything missing from it is gone for the user
    (``deleted_ids`` is then empty). Otherwise ``objects`` changed and ``deleted_ids`` became unreadable after
    the ``since`` asked for. ``sync_stamp`` is the next ``since`` ("" when the server offers no cursor).
    """

    objects: list[OaiObject]
    deleted_ids: list[str]
    sync_stamp: str
    full: bool
    rejected: list[RejectedObject] = field(default_factory=list)


@dataclass(frozen=True)
class RejectedObject:
    """An item of a listing that failed validation (a path that leaves its folder, a malformed id or value): it is
    left out of :attr:`StampzResult.objects` alone, and the rest of the listing stays usable. ``oaio_id`` is the
    item's id when that much of it is valid (still listed: not deleted), else None; ``reason`` says what was wrong.
    """

    oaio_id: str | None
    reason: str


@dataclass(frozen=True)
class ObjectVersion:
    """One stored version of an object (``hub/versions/``), newest first."""

    stamp: str
    values: dict[str, Any]
    csh_id: str | None
    username: str
    device_id: str
    app_id: str
    created: str  # hub clock


@dataclass(frozen=True)
class ObjectOrigin:
    """Who registered an object and when, as the hub's own records say (``hub/origin/``), never read off the id."""

    oaio_id: str
    creator: str
    registered: str  # hub clock


class OaioServerApi:
    """One user's (and device's, app's) connection to an oaio server; a method per route.

    ``server`` is a host (``HOST[:PORT]``: http for loopback, https otherwise), a base URL, or a ready
    :class:`~oaiod.http.HttpClient` whose auth logs in to that server (its default headers get the context ids).
    ``clock`` gives the local stamp for :meth:`check_clock` (injectable for tests). ``lean``: on an oaiod hub,
    objects travel without ``server_values`` both ways (empty; the hub keeps its own) — for a folder they are a
    second copy of its manifest, and oaiod never reads them; False gets the published client's full objects.
    """

    def __init__(
        self,
        server: HttpClient | str,
        username: str,
        password: Secret | str | None = None,
        *,
        device_id: str,
        app_id: str,
        auth: OaioSessionAuth | None = None,
        clock: Callable[[], str] = now_stamp,
        allow_insecure: bool = False,
        timeout: float | tuple[float, float] = DEFAULT_TIMEOUT,
        retry: RetryPolicy | None = None,
        lean: bool = True,
    ) -> None:
        self.username = validate_username(username)
        self.device_id = validate_name(device_id, "device_id")
        self.app_id = validate_name(app_id, "app_id")
        context = context_encode(self.username, self.device_id, self.app_id)
        if isinstance(server, HttpClient):
            self.http = server
        else:
            if auth is None:
                if password is None:
                    raise ConfigError("password", f"no password given for {username!r} on {server}")
                auth = OaioSessionAuth(username, password if isinstance(password, Secret) else Secret(password))
            base_url = server_base_url(server, allow_insecure=allow_insecure)
            self.http = HttpClient(base_url, auth=auth, timeout=timeout, retry=retry, allow_insecure=allow_insecure)
        self.http.session.headers.update(context)  # every request, the login and CSRF fetches included
        self._context = context
        self._clock = clock
        self._features: frozenset[str] | None = None
        self.hub_version: str | None = None
        self.lean = lean

    def __repr__(self) -> str:
        return f"OaioServerApi({self.http.base_url!r}, {self.username!r}, device_id={self.device_id!r})"

    @property
    def base_url(self) -> str:
        """The server's base URL (ends with ``/``): names the server, e.g. for the engine's change cursor."""
        return self.http.base_url

    def close(self) -> None:
        self.http.close()

    def as_user(self, username: str) -> OaioServerApi:
        """A view acting for ``username`` through the same session: a supervisor's impersonation (spec A)."""
        other = object.__new__(OaioServerApi)
        other.__dict__.update(self.__dict__)
        other.username = validate_username(username)
        other._context = context_encode(other.username, self.device_id, self.app_id)
        return other

    # -- requests -------------------------------------------------------------------------------------------------

    def _get(self, path: str, headers: dict[str, str] | None = None, **kwargs: Any) -> requests.Response:
        headers = {**self._context, "Accept": "application/json", **(headers or {})}
        return self.http.request("GET", path, headers=headers, **kwargs)

    def _get_json(self, path: str, **kwargs: Any) -> Any:
        return json_of(self._get(path, **kwargs))

    def _post(self, path: str, payload: Any, headers: dict[str, str] | None = None) -> requests.Response:
        headers = {**self._context, "Accept": "application/json", **(headers or {})}
        return self.http.request("POST", path, json=payload, headers=headers)

    def _post_json(self, path: str, payload: Any, headers: dict[str, str] | None = None) -> Any:
        return json_of(self._post(path, payload, headers))

    def _lean_headers(self) -> dict[str, str]:
        """The header asking for objects without ``server_values``, when wanted and the server offers it."""
        return {LEAN_HEADER: "1"} if self.lean and "lean" in self.features() else {}

    # -- session and clock --------------------------------------------------------------------------------------

    def login(self) -> None:
        """Log in now (requests log in by themselves; this checks the credentials early)."""
        auth = self.http.auth
        if auth is not None:
            auth.ensure(self.http)

    def logout(self) -> None:
        """End the server session."""
        if isinstance(self.http.auth, OaioSessionAuth):
            self.http.auth.logout(self.http)

    def current_stamp(self) -> str:
        answer = self._get_json("current_stamp/")
        return _checked(lambda: validate_stamp(_field(answer, "current_stamp"), "current_stamp"), "current_stamp/")

    def check_clock(self) -> float:
        """Seconds the server's clock is ahead of ours; :class:`ClockSkewError` beyond 69 s (the spec's limit)."""
        server = self.current_stamp()
        local = self._clock()
        seconds = stamp_diff(local, server)
        if abs(seconds) > MAX_STAMP_DIFF:
            raise ClockSkewError(local, server, seconds)
        return seconds

    # -- objects --------------------------------------------------------------------------------------------------

    def csh_args(self, csh_id: str) -> dict[str, Any]:
        """Keyword arguments of the storage host ``csh_id`` (may hold credentials: never log them)."""
        answer = self._get_json(f"csh_args/{quote(validate_name(csh_id, 'csh_id'), safe='')}")
        if not isinstance(answer, dict) or not all(isinstance(key, str) for key in answer):
            raise ProtocolError(f"csh_args/{csh_id}: the server sent {type(answer).__name__}, not a JSON object")
        return answer

    def register(self, obj: OaiObject) -> OaiObject:
        """Create ``obj`` on the server (the caller gets ``C``); 409 when the id exists → :class:`UploadConflict`."""
        return self._post_object("register/", obj)

    def upload(self, obj: OaiObject) -> OaiObject:
        """Store a new version; ``obj.server_stamp`` must be the server's newest stamp, else (hub) 409."""
        return self._post_object("upload/", obj)

    def _post_object(self, route: str, obj: OaiObject) -> OaiObject:
        payload, lean = obj.to_dict(), self._lean_headers()
        if lean:
            payload["server_values"] = {}  # an oaiod hub never reads them (it moves its stored newest there)
        try:
            answer = self._post_json(route, payload, lean)
        except Conflict as exc:
            stored = exc.body.get("object") if isinstance(exc.body, dict) else None
            server_object = _valid_object(stored, f"{route} conflict") if stored is not None else None
            raise UploadConflict(exc, server_object) from None
        return _valid_object(answer, route)

    def delete(self, obj: OaiObject | str) -> None:
        """Remove an object and its subscriptions (needs ``C`` or ``D``)."""
        oaio_id = obj.oaio_id if isinstance(obj, OaiObject) else obj
        self._post("delete/", {"oaio_id": validate_oaio_id(oaio_id)}).close()  # any 2xx; the body is not read

    def stampz(self, since: str | None = None) -> StampzResult:
        """Objects changed after ``since`` and ids deleted since then (part B), else the full listing.

        Falls back to the full listing when the server lacks deltas or no longer knows deletions that old (410).
        An id both changed and deleted in the window stays in ``objects`` only: a deletion after the returned
        cursor is reported again by the next call.
        """
        if since is not None and "since" in self.features():
            try:
                return self._stampz_since(validate_stamp(since, "since"))
            except Gone:
                log.info("%s forgot deletions since %s; listing every object instead", self.http.base_url, since)
        response = self._get("oaio_stampz/", self._lean_headers())
        cursor = response.headers.get(SYNC_STAMP_HEADER)
        sync_stamp = _checked(lambda: validate_stamp(cursor, SYNC_STAMP_HEADER), "oaio_stampz/") if cursor else ""
        objects, rejected = _valid_listing(json_of(response))
        return StampzResult(objects, [], sync_stamp, True, rejected)

    def _stampz_since(self, since: str) -> StampzResult:
        response = self._get("oaio_stampz/", self._lean_headers(), params={"since": since})
        objects, rejected = _valid_listing(json_of(response))
        cursor = _checked(lambda: validate_stamp(response.headers.get(SYNC_STAMP_HEADER), SYNC_STAMP_HEADER), "since")
        count = response.headers.get(DELETED_COUNT_HEADER, "")
        if not count.isdigit():
            raise ProtocolError(f"oaio_stampz/?since: header {DELETED_COUNT_HEADER} is {count[:20]!r}, not a count")
        deleted: list[str] = []
        if int(count):
            answer = self._get_json("hub/deleted/", params={"since": since})
            ids = _field(answer, "deleted")
            if not isinstance(ids, list):
                raise ProtocolError("hub/deleted/: 'deleted' is not a list")
            listed = {obj.oaio_id for obj in objects} | {item.oaio_id for item in rejected}
            deleted = [i for i in _valid_ids(ids, "hub/deleted/") if i not in listed]
        return StampzResult(objects, deleted, cursor, False, rejected)

    def versions(self, oaio_id: str, stamp: str | None = None) -> list[ObjectVersion]:
        """Every version the server keeps of an object, newest first (hub ``versions`` feature); only the one of
        ``stamp`` when given (an older hub answers all of them: callers pick)."""
        self._require("versions")
        params = {"stamp": validate_stamp(stamp, "stamp")} if stamp is not None else None
        answer = self._get_json(f"hub/versions/{quote(validate_oaio_id(oaio_id), safe='')}", params=params)
        if not isinstance(answer, list):
            raise ProtocolError("hub/versions/: not a list")
        return [_checked(functools.partial(_valid_version, item), "hub/versions/") for item in answer]

    def origin(self, oaio_id: str) -> ObjectOrigin:
        """The hub's record of who registered an object the user may read and when (hub ``origin`` feature)."""
        self._require("origin")
        answer = self._get_json(f"hub/origin/{quote(validate_oaio_id(oaio_id), safe='')}")

        def valid() -> ObjectOrigin:
            validate_exact_keys(answer, ("oaio_id", "creator", "registered"), "origin")
            found = ObjectOrigin(
                oaio_id=validate_oaio_id(answer["oaio_id"]),
                creator=validate_name(answer["creator"], "creator"),
                registered=validate_stamp(answer["registered"], "registered"),
            )
            if found.oaio_id != oaio_id:
                raise ValidationError("oaio_id", f"answers for {found.oaio_id!r}, not the object asked for")
            return found

        return _checked(valid, "hub/origin/")

    # -- subscriptions and users -------------------------------------------------------------------------------

    def subscribe(self, oaio_id: str, username: str, right: str) -> int:
        """Give ``username`` the access ``right`` (``x`` removes it); returns the subscription's id (``Pid``)."""
        payload = {
            "oaio_id": validate_oaio_id(oaio_id),
            "username": validate_username(username),
            "access_right": validate_access_right(right),
        }
        pid = _field(self._post_json("subscribe/", payload), "Pid")
        if not isinstance(pid, int) or isinstance(pid, bool):
            raise ProtocolError(f"subscribe/: Pid is {type(pid).__name__}, not an integer")
        return pid

    def unsubscribe(self, oaio_id: str, username: str) -> int:
        return self.subscribe(oaio_id, username, NO_ACCESS_RIGHT)

    def user_subz(self, oaio_id: str) -> list[dict[str, str]]:
        """Every registered user with their right to the object (``x`` for none), sorted by right and name."""
        answer = self._get_json(f"user_subz/{quote(validate_oaio_id(oaio_id), safe='')}")
        if not isinstance(answer, list):
            raise ProtocolError("user_subz/: not a list")

        def entry(item: Any) -> dict[str, str]:
            validate_exact_keys(item, ("username", "access_right"), "user_subz item")
            return {
                "username": validate_name(item["username"], "username"),
                "access_right": validate_access_right(item["access_right"]),
            }

        rows = [_checked(functools.partial(entry, item), "user_subz/") for item in answer]
        return sorted(rows, key=lambda row: row["access_right"] + row["username"])

    # -- share links (hub feature "links"; docs/hub-api.md, Share links) -------------------------------------------

    def create_link(
        self, oaio_id: str, path: str = "", *, expires_in: int, password: str | None = None, stamp: str = ""
    ) -> dict[str, Any]:
        """A new share link to ``path`` (a file or folder of the object; ``""`` all of it) of version ``stamp``
        (``""``: the newest at each use); the link with its ``url``. The password goes in the body, never a URL."""
        self._require("links")
        payload: dict[str, Any] = {"oaio_id": validate_oaio_id(oaio_id), "path": path, "expires_in": expires_in}
        if stamp:
            payload["stamp"] = validate_stamp(stamp)
        if password is not None:
            payload["password"] = password
        return _link(self._post_json("hub/links/", payload))

    def links(self, oaio_id: str) -> list[dict[str, Any]]:
        """Every link of an object (the caller needs the right D or C), newest first."""
        self._require("links")
        answer = self._get_json("hub/links/", params={"oaio_id": validate_oaio_id(oaio_id)})
        if not isinstance(answer, list):
            raise ProtocolError(f"hub/links/: the answer is {type(answer).__name__}, not a list")
        return [_link(item) for item in answer]

    def revoke_link(self, link_id: str) -> dict[str, Any]:
        """Revoke a link by its id; the link as it is now."""
        self._require("links")
        headers = {**self._context, "Accept": "application/json"}
        return _link(json_of(self.http.request("DELETE", f"hub/links/{quote(link_id, safe='')}", headers=headers)))

    def wipe_user(self, username: str) -> None:
        """Remove a user with their subscriptions and log entries."""
        self._post("wipe_user/", {"Uid": validate_username(username)}).close()

    # -- part B: features and the change feed -----------------------------------------------------------------

    def features(self) -> frozenset[str]:
        """The part-B features the server offers (empty for a plain oaio server); asked once, then remembered."""
        if self._features is None:
            try:
                response = self._get("hub/features/")
            except NotFound:
                self._features = frozenset()
            else:
                answer = json_of(response)
                names = _field(answer, "features")
                if not isinstance(names, list) or not all(isinstance(name, str) for name in names):
                    raise ProtocolError("hub/features/: 'features' is not a list of names")
                self.hub_version = str(response.headers.get(HUB_HEADER) or _field(answer, "version"))[:40]
                self._features = frozenset(names)
                log.debug("%s is an oaiod hub %s with %s", self.http.base_url, self.hub_version, sorted(names))
        return self._features

    def _require(self, feature: str) -> None:
        if feature not in self.features():
            raise NotSupported(f"{self.http.base_url} does not offer {feature!r} (not an oaiod hub, or too old)")

    def wait_for_changes(self, since: str, timeout: float = 30.0) -> tuple[bool, str]:
        """Long poll: ``(True, cursor)`` as soon as an object the user may read changes after ``since``, else
        ``(False, cursor)`` after ``timeout`` seconds (the hub caps it at 60). Loop on it with the cursor."""
        self._require("changes")
        connect = self.http.timeout[0] if isinstance(self.http.timeout, tuple) else self.http.timeout
        params = {"since": validate_stamp(since, "since"), "timeout": f"{timeout:g}"}
        answer = self._get_json(  # no retries: the caller's loop backs off, a hung poll is not waited out 5 times
            "hub/changes/", params=params, timeout=(connect, timeout + FEED_TIMEOUT_MARGIN), retry=NO_RETRY
        )
        changed = _field(answer, "changed")
        if not isinstance(changed, bool):
            raise ProtocolError("hub/changes/: 'changed' is not true or false")
        cursor = _checked(lambda: validate_stamp(_field(answer, "sync_stamp"), "sync_stamp"), "hub/changes/")
        return changed, cursor


# -- validation of answers ---------------------------------------------------------------------------------------


def _checked(check: Callable[[], T], where: str) -> T:
    """``check()``, with a :class:`ValidationError` turned into a :class:`ProtocolError` naming the route."""
    try:
        return check()
    except ValidationError as exc:
        raise ProtocolError(f"{where}: the server sent an invalid {exc}") from None


def _field(answer: Any, name: str) -> Any:
    if not isinstance(answer, Mapping) or name not in answer:
        raise ProtocolError(f"the server's answer has no {name!r}: {str(answer)[:80]!r}")
    return answer[name]


LINK_KEYS = ("id", "oaio_id", "path", "stamp", "folder", "creator", "created", "expires", "revoked", "password",
             "state", "url")  # fmt: skip


def _link(data: Any) -> dict[str, Any]:
    """A link as the hub describes it (hostile input like any answer: only its known keys, each checked for type)."""
    if not isinstance(data, Mapping):
        raise ProtocolError(f"hub/links/: a link is {type(data).__name__}, not an object")
    link = {key: data.get(key) for key in LINK_KEYS}
    if not isinstance(link["id"], str) or not isinstance(link["url"], str) or not link["url"].startswith("http"):
        raise ProtocolError("hub/links/: a link without an id or an http(s) url")
    return link


def _valid_object(data: Any, where: str) -> OaiObject:
    return _checked(lambda: validate_object_dict(data), where)


def _valid_listing(data: Any) -> tuple[list[OaiObject], list[RejectedObject]]:
    """The valid objects of an ``oaio_stampz/`` answer, and the items refused one by one (see
    :class:`RejectedObject`): one hostile object must not stop every other object from syncing."""
    if not isinstance(data, list):
        raise ProtocolError(f"oaio_stampz/: the server sent {type(data).__name__}, not a list")
    objects: list[OaiObject] = []
    rejected: list[RejectedObject] = []
    for item in data:
        try:
            objects.append(validate_object_dict(item))
        except ValidationError as exc:
            rejected.append(RejectedObject(_listed_id(item), f"the server sent an invalid {exc}"))
    return objects, rejected


def _listed_id(item: Any) -> str | None:
    """The id of a listed item that failed validation, when the id itself is valid."""
    try:
        return validate_oaio_id(item.get("oaio_id")) if isinstance(item, Mapping) else None
    except ValidationError:
        return None


def _valid_ids(ids: list[Any], where: str) -> list[str]:
    """The valid ids among ``ids``; an invalid one names no object this client knows, so it is logged and skipped."""
    valid: list[str] = []
    for oaio_id in ids:
        try:
            valid.append(validate_oaio_id(oaio_id))
        except ValidationError as exc:
            log.warning("%s: skipping an invalid id from the server (%s)", where, exc)
    return valid


def _valid_version(item: Any) -> ObjectVersion:
    keys = ("stamp", "values", "csh_id", "username", "device_id", "app_id", "created")
    validate_exact_keys(item, keys, "version")
    csh_id = item["csh_id"]
    return ObjectVersion(
        stamp=validate_stamp(item["stamp"], "stamp"),
        values=validate_values(item["values"], "values"),
        csh_id=None if csh_id is None else validate_name(csh_id, "csh_id", allow_empty=True),
        username=validate_name(item["username"], "username", allow_empty=True),
        device_id=validate_name(item["device_id"], "device_id", allow_empty=True),
        app_id=validate_name(item["app_id"], "app_id", allow_empty=True),
        created=validate_stamp(item["created"], "created"),
    )
