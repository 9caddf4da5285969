"""How ``ctl`` shows what the engine reports: rows of the state database, versions and the engine's status become
the plain JSON that ``ctl status``, ``ls``, ``conflicts``, ``history`` and ``versions`` answer (and the CLI renders).
The engine hands over data (:mod:`oaiod.engine.status`, rows, :class:`~oaiod.server_api.ObjectVersion`) and
never builds an answer itself.
"""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Iterable, Mapping
from pathlib import Path, PurePath
from typing import TYPE_CHECKING, Any

from oaiod.model import FILES_VALUES_KEY

if TYPE_CHECKING:
    from oaiod.engine.status import EngineStatus, Listing
    from oaiod.server_api import ObjectVersion


def jsonable(value: Any) -> Any:
    """``value`` as plain JSON types: dataclasses become objects, paths and stamps strings, sets lists."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {str(key): jsonable(item) for key, item in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [jsonable(item) for item in value]
    if isinstance(value, Path | PurePath):
        return str(value)
    if isinstance(value, datetime.datetime | datetime.date):
        return value.isoformat()
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if hasattr(value, "__dict__"):
        return {key: jsonable(item) for key, item in vars(value).items() if not key.startswith("_")}
    return str(value)


def status(report: EngineStatus) -> dict[str, Any]:
    """The ``engine`` part of ``ctl status``: the status's fields (a subclass's too), held objects with their
    reason, failed items as rows, the last cycle's report, and the transfer progress flattened in."""
    shown = {field.name: getattr(report, field.name) for field in dataclasses.fields(report)}
    progress = shown.pop("progress")
    shown["held"] = [{"oaio_id": row.oaio_id, "path": row.local_root, "reason": row.hold_reason} for row in report.held]
    shown["errors"] = rows(report.errors)
    shown["last_cycle"] = None if report.last_cycle is None else dict(vars(report.last_cycle))
    return {**shown, **progress}


def listing(synced: Listing, notes: Mapping[str, str] | None = None) -> list[dict[str, Any]]:
    """What ``ctl ls`` shows: every object, then every folder excluded from the synced folder around it;
    ``notes``: what a send-only or receive-only folder keeps apart from the server (``mode_note``)."""
    notes = notes or {}
    excluded_paths = {excluded.path for excluded in synced.excluded}
    shown = [
        {
            "oaio_id": row.oaio_id,
            "kind": row.kind,
            "path": row.local_root,
            "right": row.csh_access_right,
            "status": row.status,
            "stamp": row.synced_stamp,
            "owner": row.username,
            "detail": row.hold_reason,
            "mode": row.mode or "send-receive",
            "mode_note": notes.get(row.oaio_id, ""),
        }
        for row in synced.objects
        if not (row.status == "removed" and row.local_root in excluded_paths)  # the excluded entry says it
    ]
    for excluded in synced.excluded:
        shown.append(
            {
                "oaio_id": excluded.oaio_id,
                "kind": "excluded",
                "path": excluded.path,
                "right": "",
                "status": "excluded",
                "stamp": excluded.created,
                "owner": "",
                "detail": f"not synced ({excluded.reason}); `oaiod ctl add {excluded.path}` syncs it again",
            }
        )
    return shown


def row_dict(row: Any) -> dict[str, Any]:
    """A state database row as plain data: every column (``ctl conflicts``, ``history``, the errors of ``status``)."""
    return {column.key: getattr(row, column.key) for column in row.__table__.columns}


def rows(found: Iterable[Any]) -> list[dict[str, Any]]:
    return [row_dict(row) for row in found]


def version_dict(version: ObjectVersion) -> dict[str, Any]:
    """One stored version for ``ctl versions``: its stamp, who made it, how many files, when."""
    files = version.values.get(FILES_VALUES_KEY) or []
    return {
        "stamp": version.stamp,
        "device_id": version.device_id,
        "username": version.username,
        "files": len(files),
        "created": version.created,
    }


def versions(found: Iterable[ObjectVersion]) -> list[dict[str, Any]]:
    return [version_dict(version) for version in found]


def file_versions(found: Iterable[Any]) -> list[dict[str, Any]]:
    """``ctl versions PATH``: one row per change of the file, with its version's stamp in local time."""
    return [{**jsonable(version), "when": local_time(version.stamp)} for version in found]


def local_time(stamp: str) -> str:
    """A stamp (UTC) as the local time people read, ``YYYY-MM-DD HH:MM:SS``."""
    try:
        moment = datetime.datetime.strptime(stamp[:14], "%Y%m%d%H%M%S").replace(tzinfo=datetime.UTC)
    except ValueError:
        return stamp
    return moment.astimezone().strftime("%Y-%m-%d %H:%M:%S")


def error_text(exc: BaseException) -> str:
    """A failure as one line for people: what went wrong and, where it helps, what to do — never a raw
    ``POST http://…/api/subscribe/ answered 404 …`` (that stays in the DEBUG log). The server's own reason is kept
    (the hub says ``no user named 'nobody'``); transport errors become "the server is unreachable (why)"."""
    from oaiod.http import AuthError, HTTPStatusError, RemoteError, TransportError

    if isinstance(exc, AuthError):
        return (
            f"the server refused the login ({_server_reason(exc) or 'wrong user name or password'}); "
            "check server.username and the password in the config, then run: oaiod ctl reload"
        )
    if isinstance(exc, HTTPStatusError):
        reason = _server_reason(exc)
        path = exc.url.split("/api/", 1)[-1].split("?", 1)[0].strip("/") or exc.url
        if reason:
            return f"the server refused it: {reason}"
        return f"the server answered {exc.status} to {path}"
    if isinstance(exc, TransportError):
        return f"the server is unreachable ({_transport_reason(str(exc))})"
    if isinstance(exc, RemoteError):
        return _strip_urls(str(exc))
    return str(exc)


def _server_reason(exc: Any) -> str:
    body = exc.body
    if isinstance(body, Mapping):
        for key in ("reason", "detail", "message"):
            value = body.get(key)
            if isinstance(value, str) and value:
                return value
    return ""


def _transport_reason(message: str) -> str:
    import re

    errno_text = re.search(r"\[Errno -?\d+\] ([^)\]']+)", message)
    if errno_text:
        return errno_text.group(1).strip().rstrip(".").lower()
    if "timed out" in message.lower() or "timeout" in message.lower():
        return "no answer in time"
    return _strip_urls(message.rsplit(": ", 1)[-1])


def _strip_urls(message: str) -> str:
    import re

    return re.sub(r"(GET|POST|PUT|DELETE|HEAD) https?://\S+", "a request", message)
