"""The status page's routes, behind :class:`~oaiod.daemon.ui.guard.Guard`. Reads and actions go through
:class:`~oaiod.daemon.ctl.commands.DaemonCommands`, in a worker thread (they may block: the engine's database, a
queued command's grace period).

Routes: ``/`` the page; ``/events`` its live sections (server-sent events: a JSON object of section id → HTML);
``/conflict?obj=ID&path=P&copy=C`` a conflict's two files; ``/file?path=P`` one file's state and versions;
``/folder?obj=ID`` a folder's versions; ``POST /action`` pause, resume, sync, restore, exclude, include (then
back, with a note); ``/login?code=C`` a one-time login (sets the cookie); ``/static/NAME`` the CSS and the script.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import time
import urllib.parse
from collections.abc import AsyncIterator, Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jinja2
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import ASGIApp

from oaiod.daemon.ctl import present
from oaiod.daemon.ctl.commands import DaemonCommands
from oaiod.daemon.ui import compare
from oaiod.daemon.ui.guard import COOKIE, Guard
from oaiod.errors import OaiodError

if TYPE_CHECKING:
    from oaiod.daemon.ui.server import UiServer

HERE = Path(__file__).parent
MAX_FORM_BYTES = 64 * 1024
EVENT_INTERVAL = 1.0  #: seconds between two looks at the daemon for the live sections
KEEPALIVE = 15.0  #: seconds after which an idle event stream sends a comment (proxies, dead peers)
HISTORY_ROWS = 30
STATIC = {"ui.css": "text/css; charset=utf-8", "ui.js": "text/javascript; charset=utf-8"}
LIVE_SECTIONS = ("status", "activity", "folders", "conflicts", "history")


# -- the pages ----------------------------------------------------------------------------------------------------


class Pages:
    """The routes' handlers; one per server (it keeps the last action's note for the next page)."""

    def __init__(self, server: UiServer, token: str) -> None:
        from oaiod.daemon import cli

        self.server = server
        self.token = token
        self.commands = DaemonCommands(server.daemon)
        self.csrf = hmac.new(token.encode(), b"oaiod-ui-csrf", "sha256").hexdigest()
        self.note: tuple[str, str] | None = None  #: (ok|error, text) shown once by the next page
        self.static = {name: (HERE / "static" / name).read_bytes() for name in STATIC}
        env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(HERE / "templates"), autoescape=True, trim_blocks=True, lstrip_blocks=True
        )
        env.filters.update(size=cli._bytes, clock=lambda t: cli._clock(t, True), stamp=present.local_time)
        env.filters["home"] = cli.short_path
        env.globals.update(csrf=self.csrf, summary_line=cli.summary_line, transfer_summary=cli.transfer_summary)
        self.env = env

    def routes(self) -> list[Route]:
        return [
            Route("/", self.index),
            Route("/login", self.login),
            Route("/events", self.events),
            Route("/conflict", self.conflict),
            Route("/file", self.file),
            Route("/folder", self.folder),
            Route("/action", self.action, methods=["POST"]),
            Route("/static/{name}", self.static_file),
        ]

    def render(self, template: str, status_code: int = 200, **context: Any) -> HTMLResponse:
        note, self.note = self.note, None
        html = self.env.get_template(template).render(note=note, **context)
        return HTMLResponse(html, status_code=status_code)

    # -- what the page shows ----------------------------------------------------------------------------------

    def _read(self, call: Callable[[], Any], fallback: Any) -> tuple[Any, str]:
        """``(call(), "")``, or ``(fallback, why)`` when the daemon cannot say (starting, no engine)."""
        daemon = self.server.daemon
        if not daemon.ready.is_set():
            return fallback, "the daemon is starting"
        try:
            return call(), ""
        except OaiodError as exc:
            return fallback, present.error_text(exc)

    def live(self) -> dict[str, Any]:
        """Everything the live sections show, read as ``ctl`` reads it."""
        commands = self.commands
        status = commands.status({})
        folders, folders_error = self._read(lambda: commands.ls({}), [])
        exclusions, _ = self._read(lambda: commands.exclusions({}), [])
        conflicts, conflicts_error = self._read(lambda: commands.conflicts({}), [])
        history, history_error = self._read(lambda: commands.history({})[:HISTORY_ROWS], [])
        return {
            "status": status,
            "activity": commands.activity({}),
            "folders": folders,
            "folders_error": folders_error,
            "exclusions": exclusions,
            "conflicts": conflicts,
            "conflicts_error": conflicts_error,
            "history": history,
            "history_error": history_error,
        }

    def sections(self) -> dict[str, str]:
        """Each live section rendered on its own (what ``/events`` sends, and what the page starts with)."""
        data = self.live()
        return {name: self.env.get_template(f"_{name}.html").render(**data) for name in LIVE_SECTIONS}

    async def index(self, request: Request) -> Response:
        sections = await run_in_threadpool(self.sections)
        return self.render("index.html", sections=sections, title="Status")

    async def events(self, request: Request) -> Response:
        stopping = self.server.stopping

        async def stream() -> AsyncIterator[str]:
            shown: dict[str, str] = {}
            quiet_since = time.monotonic()
            yield "retry: 2000\n\n"
            while not stopping.is_set():
                sections = await run_in_threadpool(self.sections)
                changed = {name: html for name, html in sections.items() if shown.get(name) != html}
                if changed:
                    shown.update(changed)
                    quiet_since = time.monotonic()
                    yield f"data: {json.dumps(changed)}\n\n"
                elif time.monotonic() - quiet_since > KEEPALIVE:
                    quiet_since = time.monotonic()
                    yield ": still here\n\n"
                await asyncio.sleep(EVENT_INTERVAL)

        return StreamingResponse(stream(), media_type="text/event-stream")

    async def conflict(self, request: Request) -> Response:
        query = request.query_params
        key = (query.get("obj", ""), query.get("path", ""), query.get("copy", ""))
        data = await run_in_threadpool(self._conflict, key)
        if data is None:
            return self.render("message.html", 404, title="No such conflict", text="This conflict is resolved or gone.")
        return self.render("conflict.html", title="Conflict", **data)

    def _conflict(self, key: tuple[str, str, str]) -> dict[str, Any] | None:
        """The conflict that ``(oaio_id, path, copy_path)`` names, if it still stands, with its two files."""
        conflicts, _ = self._read(lambda: self.commands.conflicts({}), [])
        row = next((c for c in conflicts if (c["oaio_id"], c["path"], c.get("copy_path") or "") == key), None)
        if row is None:
            return None
        folders, _ = self._read(lambda: self.commands.ls({}), [])
        root = next((r["path"] for r in folders if r["oaio_id"] == row["oaio_id"] and r.get("path")), None)
        if row.get("kind") != "file" or not root:
            return {"row": row, "comparison": None, "root": root}
        left = compare.side(compare.inside(Path(root), row["path"]), row["path"])
        right = compare.side(compare.inside(Path(root), row["copy_path"]), row["copy_path"])
        return {"row": row, "comparison": compare.compare(left, right), "root": root}

    async def file(self, request: Request) -> Response:
        path = request.query_params.get("path", "").strip()
        if not path.startswith("/"):
            return self.render("message.html", 400, title="File", text="Give the file's full path (starting with /).")

        def read() -> dict[str, Any]:
            state, state_error = self._read(lambda: self.commands.filestatus({"path": path}), None)
            versions, versions_error = self._read(lambda: self.commands.versions({"oaio_id": path}), [])
            return {"path": path, "state": state, "error": state_error or versions_error, "versions": versions}

        return self.render("file.html", title="File", **await run_in_threadpool(read))

    async def folder(self, request: Request) -> Response:
        oaio_id = request.query_params.get("obj", "")

        def read() -> dict[str, Any]:
            folders, _ = self._read(lambda: self.commands.ls({}), [])
            row = next((r for r in folders if r["oaio_id"] == oaio_id), None)
            versions, error = self._read(lambda: self.commands.versions({"oaio_id": oaio_id}), [])
            return {"row": row, "oaio_id": oaio_id, "versions": versions, "error": error}

        data = await run_in_threadpool(read)
        if data["row"] is None:
            return self.render("message.html", 404, title="Folder", text="No such synced folder here.")
        return self.render("folder.html", title="Folder", **data)

    # -- actions -----------------------------------------------------------------------------------------------

    async def action(self, request: Request) -> Response:
        body = b""
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_FORM_BYTES:
                return JSONResponse({"detail": "form too large"}, status_code=413)
        fields = {key: values[0] for key, values in urllib.parse.parse_qs(body.decode("utf-8", "replace")).items()}
        if not hmac.compare_digest(fields.get("csrf", "").encode(), self.csrf.encode()):
            return JSONResponse({"detail": "the form is stale or from another site; reload the page"}, status_code=403)
        name = fields.get("action", "")
        if name not in ACTIONS:
            return JSONResponse({"detail": f"unknown action {name[:40]!r}"}, status_code=400)
        if name == "exclude" and fields.get("confirmed") != "yes":  # as `ctl exclude add` asks before trashing
            plan = await run_in_threadpool(self._exclusion_plan, fields.get("path", "").strip())
            if plan is not None:
                return self.render("confirm.html", title="Exclude", plan=plan, path=fields.get("path", "").strip())
        self.note = await run_in_threadpool(self._act, name, fields)
        return RedirectResponse(_back(fields.get("back", "/")), status_code=303)

    def _exclusion_plan(self, path: str) -> dict[str, Any] | None:
        """What excluding ``path`` would move to the trash (a dry run), when that is anything; None: nothing to
        ask (or the dry run failed: the exclusion itself then says why)."""
        try:
            plan = self.commands.exclude({"path": path, "dry_run": True})
        except OaiodError:
            return None
        return plan if isinstance(plan, dict) and plan.get("trashed") else None

    def _act(self, name: str, fields: Mapping[str, str]) -> tuple[str, str]:
        try:
            result = ACTIONS[name](self.commands, fields)
        except OaiodError as exc:
            return "error", f"{name} failed: {present.error_text(exc)}"
        return "ok", said(name, fields, result)

    # -- login and files -----------------------------------------------------------------------------------------

    async def login(self, request: Request) -> Response:
        if not self.server.codes.use(request.query_params.get("code", "")):
            text = "This login link was used already or is too old. Run `oaiod ctl ui` again."
            return self.render("message.html", 403, title="Log in", text=text)
        response = RedirectResponse("/", status_code=303)
        response.set_cookie(COOKIE, self.token, httponly=True, samesite="strict", path="/")
        return response

    async def static_file(self, request: Request) -> Response:
        name = request.path_params["name"]
        if name not in STATIC:
            return Response("not found", status_code=404, media_type="text/plain")
        return Response(self.static[name], media_type=STATIC[name])


ACTIONS: dict[str, Callable[[DaemonCommands, Mapping[str, str]], Any]] = {
    "pause": lambda c, f: c.pause({}),
    "resume": lambda c, f: c.resume({}),
    "sync": lambda c, f: c.sync({}),
    "restore": lambda c, f: c.restore({"oaio_id": f.get("target", ""), "stamp": f.get("stamp", "")}),
    "exclude": lambda c, f: c.exclude({"path": f.get("path", "").strip()}),
    "include": lambda c, f: c.include({"path": f.get("path", "").strip()}),
}


def said(name: str, fields: Mapping[str, str], result: Any) -> str:
    """An action's result as one line for people."""
    if isinstance(result, dict) and "queued" in result:
        return f"Queued ({result['queued']}): it {result['detail']}"
    if name == "restore":
        count = len(result) if isinstance(result, list) else None
        return f"Restored {fields.get('target')} as of {present.local_time(fields.get('stamp', ''))}" + (
            f": {count} file(s) changed" if count is not None else ""
        )
    if name == "exclude":
        return f"Excluded {fields.get('path')}: it is no longer synced on this device"
    if name == "include":
        return f"Included {fields.get('path')} again: its files come back at the next sync"
    return {"pause": "Paused", "resume": "Resumed", "sync": "Sync started"}.get(name, str(result))


def _back(target: str) -> str:
    """Where to go after an action: a local path of this page only (never another site)."""
    parts = urllib.parse.urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


def create_app(server: UiServer, token: str) -> ASGIApp:
    pages = Pages(server, token)
    return Guard(Starlette(routes=pages.routes()), server, token)
