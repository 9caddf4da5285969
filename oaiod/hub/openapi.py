"""The hub's OpenAPI document, ``GET /api/openapi.json``: FastAPI's, completed with what FastAPI cannot see.

The routes read their bodies by hand (:func:`oaiod.hub.deps.json_body`, the blob store's bounded readers, streamed
uploads and batches) so that every malformed body is the hub's own 4xx JSON answer; FastAPI therefore knows no
request body. :data:`REQUEST_BODIES` describes each one here, in one table, as the route's validation accepts it
(the validators stay the truth: a body the schema allows may still be refused with 400). Also added: the
``X-OAIO-*`` context headers every route reads, the ``Range`` header of downloads, the session and CSRF cookies
as security schemes, and the hub's error answer in place of FastAPI's 422 (the hub answers 400). The root paths
for load balancers and scrapers (``/healthz``, ``/readyz``, ``/metrics``) are documented as they are: no session,
no CSRF token, no context headers.

A POST or PUT route must have its body here or in :data:`NO_BODY`; :func:`openapi_document` raises otherwise,
and for an entry that names no route or parameter, so the tables cannot fall behind the routes unnoticed.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from oaiod.model import ACCESS_RIGHTS, MAX_NAME_CHARS, NO_ACCESS_RIGHT, OBJECT_KEYS, STAMP_LENGTH

Schema = dict[str, Any]

OPENAPI_PATH = "/api/openapi.json"
BLOBS = "/api/hub/blobs"
SHARE = "/api/hub/share"  #: a share link's public download: no session, no CSRF (oaiod.hub.shareroutes)
BATCH_MEDIA_TYPE = "application/x-oaiod-blob-batch"  #: oaiod.hub.blobbatch.MEDIA_TYPE (not imported: a cycle)

_STRING: Schema = {"type": "string"}
_NAME: Schema = {"type": "string", "minLength": 1, "maxLength": MAX_NAME_CHARS}
#: UTC %Y%m%d%H%M%S%f, 2023 or later (after OLDEST_SYNC_STAMP); the pattern lets an impossible day (Feb 30) through
_STAMP: Schema = {
    "type": "string",
    "minLength": STAMP_LENGTH,
    "maxLength": STAMP_LENGTH,
    "pattern": "^20(2[3-9]|[3-9][0-9])(0[1-9]|1[0-2])(0[1-9]|[12][0-9]|3[01])"  # date
    "([01][0-9]|2[0-3])([0-5][0-9]){2}[0-9]{6}$",  # time
}
_KEY: Schema = {"type": "string", "minLength": 1, "description": "a storage key <oaio_id>/<client_stamp>/<path>"}
_UPLOAD_ID: Schema = {"type": "string", "pattern": "^[A-Za-z0-9_-]{22,128}$"}
_SIZE: Schema = {"type": "integer", "minimum": 0}


def _obj(required: dict[str, Schema], optional: dict[str, Schema] | None = None) -> Schema:
    """A JSON object with exactly these keys (``validate_exact_keys``)."""
    return {
        "type": "object",
        "properties": {**required, **(optional or {})},
        "required": list(required),
        "additionalProperties": False,
    }


_OBJECT = _obj(
    {
        "oaio_id": _NAME,
        "client_stamp": _STAMP,
        "server_stamp": {"type": "string", "description": "a stamp, or empty"},
        "client_values": {"type": "object"},
        "server_values": {"type": "object"},
        "csh_id": {"type": ["string", "null"]},
        "username": _STRING,
        "device_id": _STRING,
        "app_id": _STRING,
        "csh_access_right": _STRING,
    }
)
assert tuple(_OBJECT["properties"]) == OBJECT_KEYS
_PAIR = _obj({"src": _KEY, "dst": _KEY})

#: (method, path) → (media type, schema) of each request body the routes read by hand
REQUEST_BODIES: dict[tuple[str, str], tuple[str, Schema]] = {
    ("post", "/api/login/"): ("application/json", _obj({"username": _NAME, "password": _STRING})),
    ("post", "/api/register/"): ("application/json", _OBJECT),
    ("post", "/api/upload/"): ("application/json", _OBJECT),
    ("post", "/api/delete/"): (
        "application/json",
        _obj({"oaio_id": _NAME}, {key: {} for key in OBJECT_KEYS if key != "oaio_id"}),
    ),
    ("post", "/api/subscribe/"): (
        "application/json",
        _obj({"oaio_id": _NAME, "username": _NAME, "access_right": {"enum": [*ACCESS_RIGHTS, NO_ACCESS_RIGHT]}}),
    ),
    ("post", "/api/wipe_user/"): ("application/json", _obj({"Uid": _NAME})),
    ("post", "/api/hub/restore/"): ("application/json", _obj({"oaio_id": _NAME, "stamp": _STAMP}, {"path": _STRING})),
    ("post", "/api/hub/users/"): (
        "application/json",
        _obj({"username": _NAME, "password": _STRING}, {"is_supervisor": {"type": "boolean"}}),
    ),
    ("post", "/api/hub/users/password/"): (
        "application/json",
        _obj({"username": _NAME, "password": {"type": ["string", "null"]}}),
    ),
    ("put", f"{BLOBS}/upload/{{name}}"): (
        "application/json",
        _obj(
            {
                "uploadId": _UPLOAD_ID,
                "sha256": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
                "size": _SIZE,
                "proposedUploadMethods": _obj(
                    {},
                    {
                        "dataInline": _obj({"contentType": _STRING, "objectData": {"type": "string"}}),
                        "putUrl": _obj({"contentType": _STRING, "contentLength": _SIZE}),
                    },
                ),
            },
            {"expires": {"anyOf": [_STAMP, {"type": "null"}]}},
        ),
    ),
    ("put", f"{BLOBS}/data/{{name}}"): ("application/octet-stream", {"type": "string", "format": "binary"}),
    ("post", f"{BLOBS}/finish-upload/{{name}}"): ("application/json", _obj({"uploadId": _UPLOAD_ID})),
    ("put", f"{BLOBS}/start-download/{{name}}"): (
        "application/json",
        _obj({"acceptDownloadMethods": _obj({}, {"simple": {"type": "boolean"}, "getUrl": {"type": "boolean"}})}),
    ),
    ("post", f"{BLOBS}/copy/"): ("application/json", _PAIR),
    ("post", f"{BLOBS}/copy-many/"): ("application/json", _obj({"pairs": {"type": "array", "items": _PAIR}})),
    ("post", f"{BLOBS}/copy-prefix/"): (
        "application/json",
        _obj({"src": _KEY, "dst": _KEY, "exclude": {"type": "array", "items": _KEY}}),
    ),
    ("post", f"{BLOBS}/put-many/"): (BATCH_MEDIA_TYPE, {"type": "string", "format": "binary"}),
    ("post", f"{BLOBS}/get-many/"): ("application/json", _obj({"names": {"type": "array", "items": _KEY}})),
    ("put", f"{BLOBS}/blocks/{{name}}"): ("application/octet-stream", {"type": "string", "format": "binary"}),
    ("put", f"{BLOBS}/recipe/{{name}}"): (
        "application/json",
        _obj(
            {
                "sha256": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
                "blocks": {"type": "array", "items": {"type": "array"}},
            },
            {"expires": {"anyOf": [_STAMP, {"type": "null"}]}},
        ),
    ),
    ("post", "/api/hub/archives/"): (
        "application/json",
        _obj({"oaio_id": _NAME}, {"path": _STRING, "stamp": {"anyOf": [_STAMP, {"const": ""}]}}),
    ),
    ("post", "/api/hub/links/"): (
        "application/json",
        _obj(
            {"oaio_id": _NAME},
            {
                "path": _STRING,
                "stamp": {"anyOf": [_STAMP, {"const": ""}]},
                "expires_in": {"type": "integer", "minimum": 60, "maximum": 365 * 86400},
                "password": {"type": "string", "minLength": 1},
            },
        ),
    ),
    ("post", f"{SHARE}/{{link_id}}"): (
        "application/x-www-form-urlencoded",
        {"type": "object", "properties": {"password": _STRING}, "required": ["password"]},
    ),
}
NO_BODY = {("post", "/api/logout/")}  #: changing routes that read no body

#: (path, query parameter) → what the route requires of it, where FastAPI sees only ``str | None = None``
QUERY_PARAMETERS: dict[tuple[str, str], tuple[bool, Schema]] = {
    ("/api/hub/changes/", "since"): (True, _STAMP),
    ("/api/hub/changes/", "timeout"): (False, {"type": "number", "minimum": 0}),
    ("/api/hub/deleted/", "since"): (True, _STAMP),
    ("/api/oaio_stampz/", "since"): (False, _STAMP),
    (f"{BLOBS}/data/{{name}}", "uploadId"): (True, _UPLOAD_ID),
    (f"{BLOBS}/data/{{name}}", "offset"): (False, _SIZE),
    (f"{BLOBS}/upload-status/{{name}}", "uploadId"): (True, _UPLOAD_ID),
}

_CONTEXT_HEADERS = [
    {
        "name": header,
        "in": "header",
        "required": False,
        "schema": _STRING,
        "description": "context as the published client sends it: a Python bytes literal (b'...')",
    }
    for header in ("X-OAIO-user", "X-OAIO-dvc", "X-OAIO-app")
]
_RANGE_HEADER = {"name": "Range", "in": "header", "required": False, "schema": _STRING}
_LINK_PASSWORD_HEADER = {"name": "X-Oaiod-Link-Password", "in": "header", "required": False, "schema": _STRING}
_ERROR: Schema = {
    "description": "refused: {error, reason, ...} (docs/hub-api.md, Errors)",
    "content": {
        "application/json": {
            "schema": {
                "type": "object",
                "properties": {"error": _STRING, "reason": _STRING, "field": _STRING},
                "required": ["error", "reason"],
            }
        }
    },
}
_SECURITY_SCHEMES = {
    "session": {"type": "apiKey", "in": "cookie", "name": "sessionid"},
    "csrfCookie": {"type": "apiKey", "in": "cookie", "name": "csrftoken"},
    "csrfHeader": {"type": "apiKey", "in": "header", "name": "X-CSRFToken"},
}


def openapi_document(app: FastAPI) -> dict[str, Any]:
    """The document of every route of ``app`` (built once, then cached on the app as FastAPI does)."""
    if app.openapi_schema is not None:
        return app.openapi_schema
    document = get_openapi(title=app.title, version=app.version, routes=app.routes)
    paths: dict[str, dict[str, Any]] = document["paths"]
    for method, path in [*REQUEST_BODIES, *NO_BODY]:
        if method not in paths.get(path, {}):
            raise RuntimeError(f"oaiod.hub.openapi describes {method.upper()} {path}, which is no route")
    for path, name in QUERY_PARAMETERS:
        if not any(p["name"] == name for op in paths.get(path, {}).values() for p in op.get("parameters", [])):
            raise RuntimeError(f"oaiod.hub.openapi describes the parameter {name} of {path}, which has none")
    for path, operations in paths.items():
        for method, operation in operations.items():
            _complete(method, path, operation)
    components = document.setdefault("components", {})
    components["securitySchemes"] = _SECURITY_SCHEMES
    for unused in ("HTTPValidationError", "ValidationError"):
        components.get("schemas", {}).pop(unused, None)
    app.openapi_schema = document
    return document


def _complete(method: str, path: str, operation: dict[str, Any]) -> None:
    if (method, path) in REQUEST_BODIES:
        media_type, schema = REQUEST_BODIES[method, path]
        operation["requestBody"] = {"required": True, "content": {media_type: {"schema": schema}}}
    elif method in ("post", "put") and (method, path) not in NO_BODY:
        raise RuntimeError(f"{method.upper()} {path} has no request body in oaiod.hub.openapi.REQUEST_BODIES")
    if not path.startswith("/api/"):  # /healthz, /readyz, /metrics (oaiod.hub.health): no session, no context
        operation.setdefault("responses", {}).pop("422", None)
        return
    parameters = operation.setdefault("parameters", [])
    for parameter in parameters:
        if (path, parameter["name"]) in QUERY_PARAMETERS and parameter["in"] == "query":
            parameter["required"], parameter["schema"] = QUERY_PARAMETERS[path, parameter["name"]]
    parameters.extend(_CONTEXT_HEADERS)
    if path in (f"{BLOBS}/download/{{name}}", f"{SHARE}/{{link_id}}", "/api/hub/archives/{archive_id}/download"):
        parameters.append(_RANGE_HEADER)
    responses = operation.setdefault("responses", {})
    responses.pop("422", None)
    responses.setdefault("4XX", _ERROR)
    if path.startswith(f"{SHARE}/"):  # the URL's signature is the credential; a password in a form or header
        parameters.append(_LINK_PASSWORD_HEADER)
        operation["security"] = []
    elif path not in ("/api/login/", "/api/logout/"):
        safe = method in ("get", "head")
        operation["security"] = [{"session": []}] if safe else [{"session": [], "csrfCookie": [], "csrfHeader": []}]
    elif method == "post":
        operation["security"] = [{"csrfCookie": [], "csrfHeader": []}]


def install(app: FastAPI) -> None:
    """Serve :func:`openapi_document` at ``/api/openapi.json`` (``create_app`` passes that as ``openapi_url``)."""
    app.openapi = lambda: openapi_document(app)  # type: ignore[method-assign]
