"""How ``ctl`` shows what the engine reports: rows of the state database, versions and the engine's status become
the plain JSON that ``ctl status``, ``ls``, ``conflicts``, ``history`` and ``versions`` answer (and the CLI renders).
The engine hands over data (:mod:`oaiod.engine.status`, rows, :class:`~oaiod.server_api.ObjectVersion`) and
never builds an answer itself.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
from collections.abc import Iterable, Mapping
from pathlib import Path, PurePath
from typing import TYPE_CHECKING, Any

from oaiod.errors import describe
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
            "name": synced.names.get(row.oaio_id, ""),
            "values": user_values(synced.values[row.oaio_id]) if row.oaio_id in synced.values else None,
            "files": list(synced.values.get(row.oaio_id, {}).get(FILES_VALUES_KEY) or []),
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


def user_values(values: Mapping[str, Any]) -> dict[str, Any]:
    """An object's values without those oaiod keeps for itself (the manifest, the file list, the folder)."""
    return {key: value for key, value in values.items() if key not in ("_oaiod", FILES_VALUES_KEY, "_root_path")}


def values_summary(values: Mapping[str, Any] | None, width: int = 40) -> str:
    """``key=value, …`` of an object's own values (``_name`` left out: shown as the name), cut at ``width``."""
    if not values:
        return ""
    text = ", ".join(f"{key}={_short(value)}" for key, value in sorted(values.items()) if key != "_name")
    return text if len(text) <= width else text[: width - 1] + "…"


def _short(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, sort_keys=True)


def activity(state: str, progress: Mapping[str, Any] | None) -> dict[str, Any]:
    """What ``ctl activity`` and the status page show live: each transfer in flight (direction, first path, files,
    bytes done of total, rate in bytes/s or None) and what waits (``progress``: the engine's ``Progress.as_dict()``;
    None when there is no engine)."""
    progress = progress or {}
    current = progress.get("current")
    transfers = []
    if isinstance(current, Mapping) and current.get("path"):
        transfers.append(
            {
                "direction": "upload" if current.get("upload") else "download",
                "path": current.get("path"),
                "files": current.get("files") or 1,
                "done": current.get("done") or 0,
                "total": current.get("total") or 0,
                "rate": progress.get("speed"),
            }
        )
    waiting = {
        key: int(progress.get(key) or 0)
        for key in ("queued_uploads", "queued_upload_bytes", "queued_downloads", "queued_download_bytes")
    }
    return {"state": state, "transfers": transfers, "waiting": waiting}


def row_dict(row: Any) -> dict[str, Any]:
    """A state database row as plain data: every column (``ctl conflicts``, ``history``, the errors of ``status``)."""
    return {column.key: getattr(row, column.key) for column in row.__table__.columns}


def rows(found: Iterable[Any]) -> list[dict[str, Any]]:
    return [row_dict(row) for row in found]


#: what rows written before per-file history (daemon migration 0007) call a file deleted or moved by a pull
_LEGACY_ACTIONS = {"trash": "deleted", "move": "moved"}


def history(found: Iterable[Any], objects: Iterable[Any]) -> list[dict[str, Any]]:
    """``ctl history``: a history row as people read it — the change, its file (``path`` relative to ``folder``,
    the object's folder), the device that made it, when (``when``: local time; ``at``: the UTC stamp)."""
    folders = {row.oaio_id: row.local_root or "" for row in objects}
    return [
        {
            "when": local_time(row.at),
            "at": row.at,
            "action": _LEGACY_ACTIONS.get(row.action, row.action),
            "path": row.path,
            "folder": folders.get(row.oaio_id, ""),
            "device": row.device or "",
            "detail": row.detail,
            "oaio_id": row.oaio_id,
        }
        for row in found
    ]


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


error_text = describe  #: a failure as one line for people (:func:`oaiod.errors.describe`)
