"""The daemon's commands: ``oaiod run``, ``oaiod ctl …`` and ``oaiod service …``.

``ctl`` prints rich tables for people and JSON (``--json``) for scripts. Exit codes: 0 ok, 1 the command
failed, 2 a config error, **3 no daemon is running** (scripts can test for it); ``ctl status`` also exits **4
while the daemon is offline** (the server unreachable; it retries by itself) and **5 in the error state** (it
cannot sync until something is fixed: ``last_error`` says what). With ``--json`` the answer is printed on stdout
whatever the code, a missing daemon included (``{"state": "not running", …}``).
"""

from __future__ import annotations

import datetime
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from oaiod.errors import ConfigError

EXIT_FAILED = 1
EXIT_CONFIG = 2
EXIT_NO_DAEMON = 3
EXIT_OFFLINE = 4
EXIT_ERROR = 5
#: ``ctl status``'s exit code per daemon state (others: 0)
STATUS_EXIT = {"offline": EXIT_OFFLINE, "error": EXIT_ERROR}

CONTEXT = {"help_option_names": ["-h", "--help"]}


def _config_path(ctx: click.Context) -> Path | None:
    """The ``--config``/``-c`` given to ``oaiod`` or to ``ctl`` (the later one wins): a file, or a config's name
    in the config dir (:func:`oaiod.daemon.config.config_file`)."""
    from oaiod.daemon.config import config_file

    given = ctx.obj.get("config_path") if isinstance(ctx.obj, dict) else None
    return config_file(given) if given is not None else None


def pasteable(text: str) -> str:
    """``text`` with each ``oaiod ctl …`` hint naming the config this command used, so it can be pasted as is."""
    ctx = click.get_current_context(silent=True)
    prefix = ctx.obj.get("ctl_prefix") if ctx is not None and isinstance(ctx.obj, dict) else None
    if not prefix or prefix == "oaiod ctl":
        return text
    return text.replace("oaiod ctl ", f"{prefix} ")


def _fail(message: str, code: int) -> None:
    click.echo(f"oaiod: {pasteable(message)}", err=True)
    sys.exit(code)


# -- run ------------------------------------------------------------------------------------------------------


@click.command("run", context_settings=CONTEXT)
@click.pass_context
def run(ctx: click.Context) -> None:
    """Run the sync daemon in the foreground (what the service runs)."""
    from oaiod.daemon.process import run_daemon
    from oaiod.heap import use_system_malloc

    use_system_malloc()  # may re-execute this process (same PID) with PYTHONMALLOC=malloc: see its docstring
    sys.exit(run_daemon(_config_path(ctx)))


# -- ctl ------------------------------------------------------------------------------------------------------


def _client(ctx: click.Context, timeout: float | None = 300.0) -> Any:
    from oaiod.daemon.config import load_config
    from oaiod.daemon.ctl.protocol import CtlClient

    try:
        config = load_config(_config_path(ctx))
    except ConfigError as exc:
        _fail(f"config error: {exc}", EXIT_CONFIG)
    if isinstance(ctx.obj, dict):
        ctx.obj["ctl_prefix"] = config.ctl()
    return CtlClient(config.paths.socket, timeout=timeout), config


def _call(ctx: click.Context, cmd: str, render: Callable[[Any], None] | None = None, **args: Any) -> Any:
    """Run one ctl command; prints JSON with ``--json``, else ``render(result)``; maps errors to exit codes."""
    from oaiod.daemon.ctl.protocol import CtlError, NoDaemon

    client, config = _client(ctx)
    try:
        result = client.call(cmd, **args)
    except NoDaemon as exc:
        _no_daemon(exc, config)
    except CtlError as exc:
        _fail(str(exc), EXIT_FAILED)
    if ctx.params.get("as_json"):
        click.echo(json.dumps(result, indent=2, sort_keys=True))
    elif render is not None:
        render(result)
    elif result is not None:
        render_generic(result)
    return result


def _call_queued(ctx: click.Context, cmd: str, render: Callable[[Any], None], wait: bool, **args: Any) -> None:
    """A command the daemon queues while a sync cycle runs: prints "queued" unless ``wait``, which waits
    (with a progress bar) for the result; ``--json`` prints the daemon's answer either way."""
    as_json = bool(ctx.params.get("as_json"))
    if not wait:
        _call(ctx, cmd, lambda r: render_queued(r) if _is_queued(r) else render(r), wait=False, **args)
        return
    from oaiod.daemon.ctl.protocol import CtlError, NoDaemon

    client, config = _client(ctx, timeout=None)
    try:
        stream = client.stream(cmd, wait=True, **args)
        show_sync_progress(stream, quiet=as_json)
    except NoDaemon as exc:
        _no_daemon(exc, config)
    except CtlError as exc:
        _fail(str(exc), EXIT_FAILED)
    if as_json:
        click.echo(json.dumps(stream.result, indent=2, sort_keys=True))
    else:
        render(stream.result)


def _is_queued(result: Any) -> bool:
    return isinstance(result, dict) and set(result) == {"queued", "detail"}


def render_queued(result: dict[str, Any]) -> None:
    click.echo(pasteable(f"queued: {result['queued']}; it {result['detail']}"))


wait_option = click.option("--wait", is_flag=True, help="If a sync cycle is running, wait for it and the result.")


def _no_daemon(exc: Exception, config: Any) -> None:
    which = f"--config {config.source} " if config.source else ""
    _fail(
        f"{exc}.\nStart it with: oaiod {which}run   (or install the service: oaiod {which}service install)",
        EXIT_NO_DAEMON,
    )


json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
FOLDER_MODES = ("send-receive", "send-only", "receive-only")  #: folder types (ctl add --mode, ctl mode)


def _handle(_ctx: click.Context, _param: click.Parameter, value: str) -> str:
    """``OBJ`` as the daemon resolves it (:mod:`oaiod.daemon.ctl.handles`): a path that exists, or is written as
    one, is made absolute here (the daemon does not know our working directory); anything else is sent as typed."""
    looks_like_path = value in (".", "..") or value.startswith(("/", "./", "../", "~"))
    if looks_like_path or ("://" not in value and Path(value).exists()):
        return str(Path(value).expanduser().absolute())
    return value


#: ``OBJ``: an object's path (its folder or anything inside), name, unique prefix or id
obj_argument = click.argument("oaio_id", metavar="OBJ", callback=_handle)


CONFIG_HELP = "Config file, or the name of one in the config dir (-c work: ~/.config/oaiod/work.toml)."
OBJ_EPILOG = (
    "OBJ names a synced object: its folder's path (or any file or folder inside it), its name, a unique prefix of "
    "its name or id, or its id (see: oaiod ctl ls)."
)


@click.group("ctl", context_settings=CONTEXT, epilog=OBJ_EPILOG)
@click.option("-c", "--config", "config_path", type=click.Path(dir_okay=False, path_type=Path), help=CONFIG_HELP)
@click.pass_context
def ctl(ctx: click.Context, config_path: Path | None) -> None:
    """Control the running daemon."""
    obj = ctx.ensure_object(dict)
    if config_path is not None:
        obj["config_path"] = config_path


STATUS_EPILOG = """\b
Exit codes:
  0  syncing works (up to date, syncing, paused, starting)
  3  no daemon is running
  4  offline: the server is unreachable; the daemon retries by itself
  5  error: something must be fixed; the first line says what
"""


@ctl.command("status", epilog=STATUS_EPILOG)
@json_option
@click.pass_context
def ctl_status(ctx: click.Context, as_json: bool) -> None:
    """Show what the daemon is doing: state, last sync, queues, transfers, conflicts, errors."""
    from oaiod.daemon.ctl.protocol import CtlError, NoDaemon

    client, config = _client(ctx)
    try:
        result = client.call("status")
    except NoDaemon as exc:
        if as_json:
            click.echo(json.dumps({"state": "not running", "error": str(exc), "config": _shown_config(config)}))
        _no_daemon(exc, config)
    except CtlError as exc:
        _fail(str(exc), EXIT_FAILED)
    if as_json:
        click.echo(json.dumps(result, indent=2, sort_keys=True))
    else:
        render_status(result)
    sys.exit(STATUS_EXIT.get(str(result.get("state")), 0))


def _shown_config(config: Any) -> str | None:
    return str(config.source) if config.source else None


@ctl.command("sync")
@click.option("--wait", is_flag=True, help="Wait for the cycle to finish, showing progress.")
@json_option
@click.pass_context
def ctl_sync(ctx: click.Context, wait: bool, as_json: bool) -> None:
    """Start a sync cycle now."""
    if not wait:
        _call(ctx, "sync", lambda r: click.echo("sync requested"), wait=False)
        return
    from oaiod.daemon.ctl.protocol import CtlError, NoDaemon

    client, config = _client(ctx, timeout=None)
    try:
        stream = client.stream("sync", wait=True)
        show_sync_progress(stream, quiet=as_json)
    except NoDaemon as exc:
        _no_daemon(exc, config)
    except CtlError as exc:
        _fail(str(exc), EXIT_FAILED)
    if as_json:
        click.echo(json.dumps(stream.result, indent=2, sort_keys=True))
    else:
        click.echo(cycle_summary(stream.result))


def cycle_summary(result: dict[str, Any]) -> str:
    """``sync --wait``'s last line: what the cycle did, in one line (``Up to date: 3 uploaded, 1 downloaded``)."""
    report = result.get("report") if isinstance(result.get("report"), dict) else {}
    assert isinstance(report, dict)
    done = [f"{report[key]} {word}" for key, word in (("uploads", "uploaded"), ("downloads", "downloaded"),
            ("copies", "copied on storage"), ("trashed", "moved to the trash")) if report.get(key)]  # fmt: skip
    problems = [f"{len(report[key])} {word}" for key, word in (("conflicts", "conflicted copies"),
                ("held", "held mass deletions"), ("errors", "failed")) if report.get(key)]  # fmt: skip
    head = "Synced, with problems" if problems else "Up to date"
    if result.get("still_changing"):
        head, problems = "Synced what was still", [*problems, f"{result['still_changing']} paths still changing"]
    return f"{head}: {', '.join(done + problems) or 'nothing to transfer'} (cycle {result.get('cycle')})"


def _simple(name: str, cmd: str, doc: str, message: str) -> None:
    @ctl.command(name, help=doc)
    @json_option
    @click.pass_context
    def command(ctx: click.Context, as_json: bool) -> None:
        _call(ctx, cmd, lambda r: click.echo(message if r is None else r))


_simple("pause", "pause", "Pause syncing (changes are still recorded).", "paused")
_simple("resume", "resume", "Resume syncing and sync at once.", "resumed")
_simple("stop", "stop", "Stop the daemon gracefully.", "stopping")


def _queued_simple(name: str, doc: str) -> None:
    @ctl.command(name, help=doc)
    @wait_option
    @json_option
    @click.pass_context
    def command(ctx: click.Context, wait: bool, as_json: bool) -> None:
        _call_queued(ctx, name, lambda r: click.echo(r), wait)


_queued_simple("reload", "Reload the config file (a bad one is refused, the old one kept).")
_queued_simple("rebuild-index", "Rebuild the state database from disk and server (files untouched).")


@ctl.command("ls")
@click.option("-l", "--long", "long", is_flag=True, help="Show each object's id too.")
@json_option
@click.pass_context
def ctl_ls(ctx: click.Context, long: bool, as_json: bool) -> None:
    """List the synced folders and objects."""
    _call(ctx, "ls", lambda rows: render_ls(rows, ids=long))


@ctl.command("add")
@click.argument("path", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--mode", type=click.Choice(FOLDER_MODES), help="Folder type (default send-receive); see ctl mode.")
@wait_option
@json_option
@click.pass_context
def ctl_add(ctx: click.Context, path: Path, mode: str | None, wait: bool, as_json: bool) -> None:
    """Sync another folder; answers once the server has registered it (or why not yet: offline, paused)."""
    args: dict[str, Any] = {"path": str(path.expanduser().absolute())}
    if mode:
        args["mode"] = mode
    _call_queued(ctx, "add", lambda r: render_added(path, r), wait, **args)


def render_added(path: Path | None, result: Any) -> None:
    """``added PATH as ID; registered on the server`` (or why not yet: offline, paused, still uploading); without
    ``path`` (a new data or file object) ``registered ID; …``."""
    if isinstance(result, dict) and "oaio_id" in result:
        detail = result.get("detail") or "registered on the server"
        what = f"added {path} as" if path is not None else "new object"
        click.echo(pasteable(f"{what} {result['oaio_id']}; {detail}"))
    else:
        click.echo(f"added {path} as {result}")


@ctl.command(
    "remove",
    epilog="Nothing is deleted: not on the server, not on the other devices, not here (the files stay). "
    "`oaiod ctl add PATH` syncs it again; `oaiod ctl delete OBJ` deletes it for everybody.",
)
@obj_argument
@wait_option
@json_option
@click.pass_context
def ctl_remove(ctx: click.Context, oaio_id: str, wait: bool, as_json: bool) -> None:
    """Stop syncing OBJ on this device (nothing is deleted anywhere)."""
    _call_queued(ctx, "remove", lambda r: click.echo(f"{oaio_id} is no longer synced on this device"), wait,
                 oaio_id=oaio_id)  # fmt: skip


@ctl.command(
    "delete",
    epilog="Every device stops syncing it; the files on the devices stay. Asks first unless --yes. "
    "Without the right D you leave the share instead (it stays for the others).",
)
@obj_argument
@click.option("-y", "--yes", is_flag=True, help="Do not ask (needed when stdin is not a terminal).")
@wait_option
@json_option
@click.pass_context
def ctl_delete(ctx: click.Context, oaio_id: str, yes: bool, wait: bool, as_json: bool) -> None:
    """Delete OBJ on the server, for everybody it is shared with."""
    if not yes:
        if not sys.stdin.isatty():
            _fail(f"not deleting {oaio_id}: confirmation needed and stdin is not a terminal; add --yes", EXIT_FAILED)
        question = f"Delete {oaio_id} on the server for everybody it is shared with? (files on the devices stay)"
        if not click.confirm(question, default=False):
            _fail("nothing deleted", EXIT_FAILED)
    _call_queued(ctx, "delete", lambda r: click.echo(f"{oaio_id}: {r}"), wait, oaio_id=oaio_id, confirmed=True)


RIGHTS_HELP = """\b
Rights:
  r  read: receive its files (changes made there are not uploaded)
  U  update: read, and upload changes
  D  delete: update, share it with others (up to D), delete it for everybody
  C  the creator's own right; it cannot be granted
"""


@ctl.command("share", epilog=RIGHTS_HELP)
@obj_argument
@click.argument("user")
@click.option("--right", type=click.Choice(["r", "U", "D"]), required=True, help="The right to grant: r, U or D.")
@json_option
@click.pass_context
def ctl_share(ctx: click.Context, oaio_id: str, user: str, right: str, as_json: bool) -> None:
    """Share OBJ with another user of the server, or change their right."""
    _call(
        ctx,
        "share",
        lambda r: click.echo(f"shared {oaio_id} with {user} ({right})"),
        oaio_id=oaio_id,
        user=user,
        right=right,
    )


@ctl.command("unshare")
@obj_argument
@click.argument("user")
@json_option
@click.pass_context
def ctl_unshare(ctx: click.Context, oaio_id: str, user: str, as_json: bool) -> None:
    """Stop sharing an object with a user."""
    _call(ctx, "unshare", lambda r: click.echo(f"unshared {oaio_id} from {user}"), oaio_id=oaio_id, user=user)


def _optional_handle(ctx: click.Context, param: click.Parameter, value: str) -> str:
    return _handle(ctx, param, value) if value else ""


_DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def _link_lifetime(_ctx: click.Context, _param: click.Parameter, value: str) -> int:
    """``7d``, ``12h``, ``30m``, ``90s`` or plain seconds."""
    text = value.strip().lower()
    unit = _DURATION_UNITS.get(text[-1:], 0) if text else 0
    number = text[:-1] if unit else text
    if not number.isdigit():
        raise click.BadParameter(f"{value!r}: give a number and a unit, e.g. 7d, 12h, 30m")
    return int(number) * (unit or 1)


@ctl.command(
    "link",
    epilog="PATH is the synced folder or a file or folder inside it; a folder's link gives a zip. Anyone holding "
    "the URL may download that file or folder without an account until it expires or is revoked. "
    "--list OBJ lists an object's links; --revoke ID revokes one. Needs the right D or C on the object.",
)
@click.argument("oaio_id", metavar="PATH", required=False, default="", callback=_optional_handle)
@click.option("--expires", "expires", default="7d", callback=_link_lifetime, help="How long it works: 7d, 12h, 30m.")
@click.option("--password-stdin", is_flag=True, help="Read a password for the link from stdin.")
@click.option("--list", "list_links", is_flag=True, help="List the links of OBJ (given as PATH).")
@click.option("--revoke", "revoke", metavar="ID", default=None, help="Revoke the link with this id.")
@json_option
@click.pass_context
def ctl_link(
    ctx: click.Context, oaio_id: str, expires: int, password_stdin: bool, list_links: bool, revoke: str | None,
    as_json: bool,
) -> None:  # fmt: skip
    """Print a share link (URL) to a synced folder or a file in it; list or revoke links."""
    if revoke is not None:
        _call(ctx, "link", lambda r: click.echo(f"revoked link {r.get('id')}"), revoke=revoke)
        return
    if not oaio_id:
        raise click.UsageError("give PATH (the synced folder, or a file or folder inside it), or --revoke ID")
    if list_links:
        _call(ctx, "link", render_links, oaio_id=oaio_id, list=True)
        return
    args: dict[str, Any] = {"oaio_id": oaio_id, "expires": expires}
    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
        if not password:
            raise click.UsageError("no password on stdin")
        args["password"] = password
    _call(ctx, "link", lambda r: click.echo(r.get("url", "")), **args)


def render_links(result: Any) -> None:
    """One line per link: id, state, what it reaches, expiry, and its URL."""
    for link in result or []:
        shown = link.get("path") or "(all)"
        lock = " password" if link.get("password") else ""
        click.echo(
            f"{link.get('id')}  {link.get('state')}{lock}  {shown}  until {link.get('expires')}  {link.get('url')}"
        )


def _listing(name: str, cmd: str, doc: str, with_obj: bool = False) -> None:
    if with_obj:

        @ctl.command(name, help=doc)
        @obj_argument
        @json_option
        @click.pass_context
        def command(ctx: click.Context, oaio_id: str, as_json: bool) -> None:
            _call(ctx, cmd, render_generic, oaio_id=oaio_id)

    else:

        @ctl.command(name, help=doc)
        @json_option
        @click.pass_context
        def command(ctx: click.Context, as_json: bool) -> None:
            _call(ctx, cmd, render_generic)


_listing("users", "users", "List the users an object is shared with, and their rights.", with_obj=True)
_listing("conflicts", "conflicts", "List conflicted copies and conflicting values.")
_listing(
    "versions",
    "versions",
    "List the stored versions of an object, or of one file when OBJ is a file in a synced folder.",
    with_obj=True,
)


@ctl.command("filestatus")
@click.argument("path", type=click.Path(path_type=Path))
@json_option
@click.pass_context
def ctl_filestatus(ctx: click.Context, path: Path, as_json: bool) -> None:
    """What oaiod does with one file or folder now (up to date, syncing, conflict, ignored…) and why."""

    def render(answer: dict[str, Any]) -> None:
        why = f" — {answer['why']}" if answer.get("why") else ""
        click.echo(f"{answer['path']}: {answer['state']}{why}")

    _call(ctx, "filestatus", render, path=str(path.expanduser().absolute()))


@ctl.command("history")
@click.argument("path", required=False, type=click.Path(path_type=Path))
@click.option("--limit", "-n", default=50, show_default=True, type=click.IntRange(1, 100_000), help="Rows at most.")
@click.option("--since", help="Only changes since: 2h, 3d, 1w, or an ISO date or time (2026-12-01).")
@json_option
@click.pass_context
def ctl_history(ctx: click.Context, path: Path | None, limit: int, since: str | None, as_json: bool) -> None:
    """Show what changed, file by file (added, changed, deleted, moved, conflict), by which device."""
    args: dict[str, Any] = {"limit": limit}
    if since is not None:
        args["since"] = since
    if path is not None:
        args["path"] = str(path.expanduser().absolute())
    _call(ctx, "history", render_history, **args)


def render_history(rows: list[dict[str, Any]]) -> None:
    """``ctl history`` for people, readable at 80 columns: when (local), what, device, and the file (its path in
    the synced folder, with the folder's name), the detail under it."""
    from rich import box
    from rich.markup import escape
    from rich.table import Table

    if not rows:
        _console().print("no changes recorded (yet)")
        return
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False)
    table.add_column("when", no_wrap=True)
    table.add_column("change", no_wrap=True)
    table.add_column("device", no_wrap=True, max_width=16, overflow="ellipsis")
    table.add_column("file", overflow="fold")
    for row in rows:
        path, folder = str(row.get("path") or ""), str(row.get("folder") or "")
        if path.startswith("/"):
            shown = short_path(path)
        else:
            name = Path(folder).name if folder else object_name({"oaio_id": row.get("oaio_id", "")})
            shown = f"{name}/{path}" if path else name
        shown = escape(shown)
        if row.get("detail"):
            shown += f"\n[dim]{escape(pasteable(str(row['detail'])))}[/]"
        table.add_row(str(row.get("when") or ""), str(row.get("action") or ""), escape(row.get("device") or "-"), shown)
    _console().print(table)


@ctl.command("confirm-delete")
@obj_argument
@wait_option
@json_option
@click.pass_context
def ctl_confirm_delete(ctx: click.Context, oaio_id: str, wait: bool, as_json: bool) -> None:
    """Let a held mass deletion of an object go ahead."""
    render = lambda r: click.echo(f"mass deletion of {oaio_id} confirmed")  # noqa: E731
    _call_queued(ctx, "confirm-delete", render, wait, oaio_id=oaio_id)


EXCLUDE_EPILOG = (
    "An excluded folder is not downloaded here; its local copy goes to this device's trash (files changed here and "
    "not synced yet stay on disk); nothing is deleted on the server or the other devices, and it comes back with "
    "`exclude remove`."
)


@ctl.group("exclude", epilog=EXCLUDE_EPILOG)
def ctl_exclude() -> None:
    """Selective sync: files and folders this device does not hold."""


@ctl_exclude.command("add")
@click.argument("path", type=click.Path(path_type=Path))
@click.option("--yes", is_flag=True, help="Do not ask before moving the local copy to the trash.")
@wait_option
@json_option
@click.pass_context
def ctl_exclude_add(ctx: click.Context, path: Path, yes: bool, wait: bool, as_json: bool) -> None:
    """Stop syncing PATH (a file or folder inside a synced folder) on this device."""
    where = str(path.expanduser().absolute())
    if not yes:
        plan = _call(ctx, "exclude", lambda r: None, path=where, dry_run=True)
        if plan["trashed"]:
            question = (
                f"{len(plan['trashed'])} file(s), {_bytes(plan['size'])}, under {where} go to this device's "
                "trash (they stay on the server and your other devices). Continue?"
            )
            if not sys.stdin.isatty():
                _fail(f"{question.removesuffix(' Continue?')} Run again with --yes to go ahead.", EXIT_FAILED)
            click.confirm(question, abort=True)
    render = lambda r: click.echo(f"{where} is no longer synced on this device")  # noqa: E731
    _call_queued(ctx, "exclude", render, wait, path=where)


@ctl_exclude.command("remove")
@click.argument("path", type=click.Path(path_type=Path))
@wait_option
@json_option
@click.pass_context
def ctl_exclude_remove(ctx: click.Context, path: Path, wait: bool, as_json: bool) -> None:
    """Sync PATH on this device again (its files come back from the server)."""
    where = str(path.expanduser().absolute())
    _call_queued(ctx, "include", lambda r: click.echo(f"{where} syncs on this device again"), wait, path=where)


@ctl_exclude.command("list")
@json_option
@click.pass_context
def ctl_exclude_list(ctx: click.Context, as_json: bool) -> None:
    """List the paths excluded on this device."""

    def render(rows: list[dict[str, str]]) -> None:
        for row in rows:
            click.echo(f"{row['folder']}/{row['path']}")
        if not rows:
            click.echo("nothing is excluded on this device")

    _call(ctx, "exclusions", render)


@ctl.group("trash", invoke_without_command=True)
@json_option
@click.pass_context
def ctl_trash(ctx: click.Context, as_json: bool) -> None:
    """What this device's trash holds (files a sync replaced or deleted here), newest first."""
    if ctx.invoked_subcommand is not None:
        return

    def render(rows: list[dict[str, Any]]) -> None:
        for row in rows:
            number = f" (trashed {row['number']}x that day)" if row["number"] > 1 else ""
            click.echo(f"{row['day']}  {_bytes(row['size']):>9}  {row['folder']}/{row['path']}{number}")
        if not rows:
            click.echo("the trash is empty")

    _call(ctx, "trash", render)


@ctl_trash.command("restore")
@click.argument("path", type=click.Path(path_type=Path))
@click.option("--day", help="Restore from this day's trash (YYYY-MM-DD; default: the newest that holds PATH).")
@wait_option
@json_option
@click.pass_context
def ctl_trash_restore(ctx: click.Context, path: Path, day: str | None, wait: bool, as_json: bool) -> None:
    """Put a trashed file (or a folder's trashed files) back where it was; it syncs like a file you made."""
    args: dict[str, Any] = {"path": str(path.expanduser().absolute())}
    if day is not None:
        args["day"] = day
    render = lambda r: click.echo("\n".join(f"restored {p}" for p in r))  # noqa: E731
    _call_queued(ctx, "trash-restore", render, wait, **args)


@ctl.command("restore")
@obj_argument
@click.option("--stamp", required=True, help="The version to restore (see: oaiod ctl versions OBJ).")
@click.option("--to", "to", type=click.Path(file_okay=False, path_type=Path), help="Restore into this folder.")
@wait_option
@json_option
@click.pass_context
def ctl_restore(ctx: click.Context, oaio_id: str, stamp: str, to: Path | None, wait: bool, as_json: bool) -> None:
    """Restore an old version of an object, or of one file or folder inside a synced folder."""
    args: dict[str, Any] = {"oaio_id": oaio_id, "stamp": stamp}
    if to is not None:
        args["to"] = str(to.expanduser().absolute())
    _call_queued(ctx, "restore", lambda r: click.echo(f"restored {oaio_id} at {stamp}"), wait, **args)


# -- objects of apps: values, data objects, file objects (oaiod.client is the same for programs) -------------------

VALUES_EPILOG = (
    'A VALUE is JSON when it parses as JSON (3, true, [1, 2], "3"), else text. Values merge by key with other '
    "devices' changes; a key changed on two devices keeps the first committed value (see: oaiod ctl conflicts)."
)


def parse_values(pairs: tuple[str, ...], option: str) -> dict[str, Any]:
    """``KEY=VALUE`` pairs as values (see :data:`VALUES_EPILOG`); a pair without ``=`` is a usage error."""
    values: dict[str, Any] = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{pair!r} is not KEY=VALUE", param_hint=option)
        try:
            values[key] = json.loads(text)
        except json.JSONDecodeError:
            values[key] = text
    return values


def render_values(values: dict[str, Any]) -> None:
    """An object's values, one ``key: value`` line each (the manifest and file list of a folder left out)."""
    from oaiod.daemon.ctl.present import user_values

    shown = user_values(values)
    if not shown:
        click.echo("no values")
    for key, value in sorted(shown.items()):
        click.echo(f"{key}: {value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)}")


@ctl.command("values", epilog=VALUES_EPILOG)
@obj_argument
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE", help="Set a key (repeatable).")
@click.option("--unset", "unsets", multiple=True, metavar="KEY", help="Delete a key (repeatable).")
@json_option
@click.pass_context
def ctl_values(ctx: click.Context, oaio_id: str, sets: tuple[str, ...], unsets: tuple[str, ...], as_json: bool) -> None:
    """Show an object's values, or change them with --set and --unset."""
    if not sets and not unsets:
        _call(ctx, "values", render_values, oaio_id=oaio_id)
        return
    values = parse_values(sets, "--set")
    _call_queued(ctx, "set-values", render_values, True, oaio_id=oaio_id, values=values, unset=list(unsets))


@ctl.command("new", epilog=VALUES_EPILOG)
@click.option("--values", "pairs", multiple=True, metavar="KEY=VALUE", required=True, help="A value (repeatable).")
@json_option
@click.pass_context
def ctl_new(ctx: click.Context, pairs: tuple[str, ...], as_json: bool) -> None:
    """Register a new data object with these values (_name=N names it)."""
    _call_queued(ctx, "new", lambda r: render_added(None, r), True, values=parse_values(pairs, "--values"))


@ctl.command("put")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--name", help="The object's name (_name); default: the file's name.")
@json_option
@click.pass_context
def ctl_put(ctx: click.Context, file: Path, name: str | None, as_json: bool) -> None:
    """Register a copy of FILE as a file object (kept in <client root>/filez/<id>/)."""
    source = file.expanduser().absolute()
    values = {"_name": name or source.name}
    _call_queued(ctx, "put", lambda r: render_added(None, r), True, name=source.name, source=str(source), values=values)


# -- folder types: send-only and receive-only (issue 14 §4) ------------------------------------------------------

MODE_EPILOG = (
    "send-receive (default): changes go both ways. send-only: this device's changes are pushed, the server's are "
    "not applied here (oaiod ctl override OBJ replaces them; they stay in the versions). receive-only: the "
    "server's changes are applied, local ones never sent (oaiod ctl revert OBJ puts them in the trash)."
)


@ctl.command("mode", epilog=MODE_EPILOG)
@obj_argument
@click.argument("mode", type=click.Choice(FOLDER_MODES))
@wait_option
@json_option
@click.pass_context
def ctl_mode(ctx: click.Context, oaio_id: str, mode: str, wait: bool, as_json: bool) -> None:
    """Make a folder send-receive, send-only or receive-only (Syncthing's folder types)."""
    render = lambda r: click.echo(f"{oaio_id} is {mode} now (was {r['was']})")  # noqa: E731
    _call_queued(ctx, "mode", render, wait, oaio_id=oaio_id, mode=mode)


@ctl.command("override", epilog=MODE_EPILOG)
@obj_argument
@wait_option
@json_option
@click.pass_context
def ctl_override(ctx: click.Context, oaio_id: str, wait: bool, as_json: bool) -> None:
    """Send-only folder: push this device's files over the server's changes (kept in versions)."""
    _call_queued(ctx, "override", lambda r: click.echo(f"{oaio_id}: {r}"), wait, oaio_id=oaio_id)


@ctl.command("revert", epilog=MODE_EPILOG)
@obj_argument
@wait_option
@json_option
@click.pass_context
def ctl_revert(ctx: click.Context, oaio_id: str, wait: bool, as_json: bool) -> None:
    """Receive-only folder: put the server's version back; local changes go to the trash."""

    def render(paths: list[str]) -> None:
        click.echo(f"{oaio_id}: {len(paths)} file(s) as the server has them; local changes in: oaiod ctl trash")

    _call_queued(ctx, "revert", render, wait, oaio_id=oaio_id)


@ctl.command("log")
@click.option("-f", "--follow", is_flag=True, help="Keep printing new lines.")
@click.option("-n", "--lines", default=50, show_default=True, help="How many recent lines.")
@json_option
@click.pass_context
def ctl_log(ctx: click.Context, follow: bool, lines: int, as_json: bool) -> None:
    """Show the daemon's recent log lines."""
    if not follow:
        _call(ctx, "log", lambda r: click.echo("\n".join(r)) if r else None, lines=lines)
        return
    from oaiod.daemon.ctl.protocol import CtlError, NoDaemon

    client, config = _client(ctx, timeout=None)
    try:
        for line in client.stream("log", lines=lines, follow=True):
            click.echo(json.dumps(line) if as_json else line)
    except KeyboardInterrupt:
        return
    except NoDaemon as exc:
        _no_daemon(exc, config)
    except CtlError as exc:
        _fail(str(exc), EXIT_FAILED)


# -- the status page and live transfers ------------------------------------------------------------------------


@ctl.command("ui", epilog="The page runs inside the daemon, on 127.0.0.1 only; [ui] in the config turns it off.")
@click.option("--print", "print_only", is_flag=True, help="Print the login URL instead of opening a browser.")
@json_option
@click.pass_context
def ctl_ui(ctx: click.Context, print_only: bool, as_json: bool) -> None:
    """Open the daemon's status page in a browser (or print its login URL)."""
    result = _call(ctx, "ui", lambda r: None)
    if as_json:
        return
    if print_only or not _has_display() or not _open_browser(result["login_url"]):
        click.echo(result["login_url"])
        click.echo(f"(the link logs in once, within {LOGIN_MINUTES} minutes; then open {result['url']})", err=True)
    else:
        click.echo(f"opened {result['url']} in your browser")


LOGIN_MINUTES = 5  #: what ``ctl ui`` says of its link: oaiod.daemon.ui.server.LOGIN_CODE_SECONDS


def _has_display() -> bool:
    import os

    graphical = os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")
    return sys.platform == "darwin" or os.name == "nt" or bool(graphical)


def _open_browser(url: str) -> bool:
    import webbrowser

    try:
        return webbrowser.open(url)
    except webbrowser.Error:
        return False


@ctl.command("activity")
@click.option("-f", "--follow", is_flag=True, help="Keep showing transfers as they change (Ctrl-C ends).")
@json_option
@click.pass_context
def ctl_activity(ctx: click.Context, follow: bool, as_json: bool) -> None:
    """Show live transfers: what is uploaded or downloaded, bytes done of total, rate."""
    if not follow:
        _call(ctx, "activity", lambda r: click.echo("\n".join(activity_lines(r))))
        return
    from oaiod.daemon.ctl.protocol import CtlError, NoDaemon

    client, config = _client(ctx, timeout=None)
    try:
        for item in client.stream("activity", follow=True):
            if as_json:
                click.echo(json.dumps(item, sort_keys=True))
                continue
            stamp = time.strftime("%H:%M:%S")
            for line in activity_lines(item):
                click.echo(f"{stamp} {line}")
    except KeyboardInterrupt:
        return
    except NoDaemon as exc:
        _no_daemon(exc, config)
    except CtlError as exc:
        _fail(str(exc), EXIT_FAILED)


def activity_lines(result: dict[str, Any]) -> list[str]:
    """One line per transfer (``upload docs/a.txt (+2 files): 12.0 MB of 48.0 MB, 3.1 MB/s``), then what waits."""
    lines = []
    for transfer in result.get("transfers") or []:
        more = int(transfer.get("files") or 1) - 1
        what = f"{transfer.get('direction')} {transfer.get('path')}" + (f" (+{more} files)" if more > 0 else "")
        rate = transfer.get("rate")
        speed = f", {_bytes(rate)}/s" if isinstance(rate, int | float) and rate > 0 else ""
        lines.append(f"{what}: {_bytes(transfer.get('done') or 0)} of {_bytes(transfer.get('total') or 0)}{speed}")
    waiting = result.get("waiting") or {}
    queued = [
        f"{waiting[count]} {word} ({_bytes(waiting[size])})"
        for count, size, word in (
            ("queued_uploads", "queued_upload_bytes", "uploads"),
            ("queued_downloads", "queued_download_bytes", "downloads"),
        )
        if waiting.get(count)
    ]
    if queued:
        lines.append("waiting: " + ", ".join(queued))
    if not lines:
        lines.append(f"no transfers ({result.get('state', '?')})")
    return lines


# -- service ---------------------------------------------------------------------------------------------------


@click.group("service", context_settings=CONTEXT)
def service() -> None:
    """Install the daemon as a user service (systemd or launchd)."""


def _service_action(name: str, doc: str) -> None:
    @service.command(name, help=doc)
    @click.option("--dry-run", is_flag=True, help="Print what would be done; change nothing.")
    @click.pass_context
    def command(ctx: click.Context, dry_run: bool) -> None:
        from oaiod.daemon import service as svc

        try:
            plan = getattr(svc, name)(_config_path(ctx), dry_run=dry_run)
        except svc.ServiceError as exc:
            _fail(str(exc), EXIT_FAILED)
        for line in plan:
            click.echo(line)


_service_action("install", "Write the user service file and start it at login.")
_service_action("uninstall", "Stop the user service and remove its file.")
_service_action("status", "Show whether the user service is installed and running.")


# -- rendering for people ---------------------------------------------------------------------------------------


def _console() -> Any:
    from rich.console import Console

    return Console()


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and value > 1e9:  # a unix time
        return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(value))
    if isinstance(value, dict | list):
        return pasteable(json.dumps(value, sort_keys=True))
    return pasteable(str(value))


def render_generic(result: Any) -> None:
    """A list of objects as a table, an object as key/value rows, anything else as text."""
    from rich.table import Table

    console = _console()
    if isinstance(result, list) and result and all(isinstance(row, dict) for row in result):
        columns = list(dict.fromkeys(key for row in result for key in row))
        table = Table(*columns)
        for row in result:
            table.add_row(*(_cell(row.get(col)) for col in columns))
        console.print(table)
    elif isinstance(result, dict):
        table = Table("key", "value", show_header=False)
        for key, value in result.items():
            table.add_row(str(key), _cell(value))
        console.print(table)
    elif isinstance(result, list):
        if not result:
            console.print("(none)")
        for item in result:
            console.print(_cell(item), markup=False, highlight=False)
    elif result not in (None, ""):
        console.print(_cell(result), markup=False, highlight=False)


def short_path(path: str) -> str:
    """``path`` with the home folder as ``~`` (shorter, and what people type)."""
    home = str(Path.home())
    return "~" + path[len(home) :] if path == home or path.startswith(home + "/") else path


def object_name(row: dict[str, Any]) -> str:
    """What people call an object: its ``_name`` (an app's object), its folder's name, else the name part of its id."""
    if row.get("name") and row.get("kind") in ("data", "files"):
        return str(row["name"])
    if row.get("path"):
        return Path(str(row["path"])).name
    from oaiod.model import dedefuse

    parts = dedefuse(str(row.get("oaio_id", ""))).split("/")
    return parts[-2] if len(parts) > 2 else str(row.get("oaio_id", ""))


STATUS_WORDS = {
    "active": "synced",
    "new": "not on server yet",
    "held": "HELD",
    "removed": "removed here",
    "excluded": "excluded",
}


def held_line(row: dict[str, Any]) -> str:
    """A held mass deletion: what it deletes, and the command that lets it go ahead (by path: pasteable)."""
    import shlex

    reason = str(row.get("detail") or row.get("reason") or "a mass deletion is held").split("; run ", 1)[0]
    handle = short_path(str(row["path"])) if row.get("path") else str(row.get("oaio_id", ""))
    handle = handle if handle.startswith("~/") and shlex.quote(handle[2:]) == handle[2:] else shlex.quote(handle)
    return f"{reason}; to go ahead: {pasteable('oaiod ctl confirm-delete ' + handle)}"


def render_ls(rows: list[dict[str, Any]], *, ids: bool = False) -> None:
    """``ctl ls`` for people, readable at 80 columns: name, state, right and folder (``~`` for home), with the
    reason under a held, removed or excluded one; ``--long`` adds the id (``--json`` has every field)."""
    from rich import box
    from rich.markup import escape
    from rich.table import Table

    from oaiod.daemon.ctl.present import values_summary

    if not rows:
        _console().print("nothing is synced (add a folder: oaiod ctl add PATH)")
        return
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False)
    table.add_column("name", no_wrap=True, max_width=24, overflow="ellipsis")
    table.add_column("state", no_wrap=True)
    table.add_column("right", no_wrap=True)
    table.add_column("folder or values", overflow="fold")
    for row in rows:
        status = str(row.get("status") or "")
        state = STATUS_WORDS.get(status, status)
        if row.get("kind") == "root":
            state += " (root)"
        folder = escape(short_path(str(row.get("path") or "")) or "-")
        if row.get("values") is not None:  # an app's object: what it holds, in a line
            summary = values_summary(row["values"])
            if row.get("kind") == "data":
                folder = escape(summary or "no values")
            else:  # a file object: its files, then its values
                folder += f"\n[dim]{escape('; '.join(filter(None, [', '.join(row.get('files') or []), summary])))}[/]"
        if ids:
            folder += f"\n[dim]{escape(str(row.get('oaio_id', '')))}[/]"
        if row.get("mode") in FOLDER_MODES[1:]:
            state += f", {row['mode']}"
        if row.get("mode_note"):
            folder += f"\n[yellow]{escape(pasteable(str(row['mode_note'])))}[/]"
        if status == "held":
            folder += f"\n[yellow]{escape(held_line(row))}[/]"
        elif row.get("detail") and status != "active":
            folder += f"\n[dim]{escape(pasteable(str(row['detail'])))}[/]"
        table.add_row(escape(object_name(row)), state, str(row.get("right") or ""), folder)
    _console().print(table)


def _bytes(count: Any) -> str:
    """A size in one unit family, decimal as the progress bar shows them: ``512 B``, ``48.2 MB``, ``1.3 GB``."""
    if not isinstance(count, int | float):
        return "?"
    for unit in ("B", "kB", "MB", "GB"):
        if abs(count) < 1000 or unit == "GB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1000
    return ""  # pragma: no cover


def _clock(when: Any, seconds: bool = False) -> str:
    """A unix time as local ``HH:MM`` (``HH:MM:SS``), with the date when it is not today."""
    if not isinstance(when, int | float) or when <= 0:
        return "?"
    moment = datetime.datetime.fromtimestamp(when)
    shown = moment.strftime("%H:%M:%S" if seconds else "%H:%M")
    return shown if moment.date() == datetime.date.today() else f"{moment:%Y-%m-%d} {shown}"


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{max(1, round(seconds))} s"
    if seconds < 5400:
        return f"{round(seconds / 60)} min"
    return f"{seconds / 3600:.1f} h"


def transfer_summary(engine: dict[str, Any], *, speed: bool = True) -> str:
    """``120 files, 48.0 MB, 12.0 MB/s, about 4 s left`` from the engine's progress ("" when nothing is queued)."""
    files = int(engine.get("queued_uploads") or 0) + int(engine.get("queued_downloads") or 0)
    size = int(engine.get("queued_upload_bytes") or 0) + int(engine.get("queued_download_bytes") or 0)
    current = engine.get("current") or {}
    left = max(0, size - int(current.get("done") or 0)) if isinstance(current, dict) else size
    if not files and not size:
        return ""
    parts = [f"{files} file{'s' if files != 1 else ''}", _bytes(left)]
    rate = engine.get("speed") if speed else None
    if isinstance(rate, int | float) and rate > 0:
        parts += [f"{_bytes(rate)}/s", f"about {_duration(left / rate)} left"]
    return ", ".join(parts)


def summary_line(result: dict[str, Any]) -> str:
    """``ctl status``'s first line, what people read first: Up to date / Syncing … / Paused / Offline since … /
    Error: …"""
    state = str(result.get("state", "?"))
    engine = result.get("engine") or {}
    if state == "error":
        return f"Error: {result.get('last_error') or 'see: oaiod ctl log'}"
    if state == "offline":
        since = _clock(result.get("failing_since"))
        next_try = f", next try {_clock(result['next_try'], True)}" if result.get("next_try") else ""
        return f"Offline since {since} — retrying{next_try}"
    if state == "starting":
        return "Starting"
    if state == "paused":
        waiting = [
            f"{count} {what}"
            for count, what in (
                (engine.get("waiting_paths") or 0, "changed path(s)"),
                (engine.get("waiting_objects") or 0, "object(s) with changes to send"),
            )
            if count
        ]
        recorded = f"changes are recorded: {' and '.join(waiting)} wait" if waiting else "changes are recorded"
        return f"Paused ({recorded}; they sync after: oaiod ctl resume)"
    if state == "syncing":
        transfer = transfer_summary(engine)
        return f"Syncing {transfer}" if transfer else "Syncing"
    notes = []
    if engine.get("held"):
        notes.append(f"{len(engine['held'])} mass deletion(s) held")
    if engine.get("conflicts"):
        notes.append(f"{engine['conflicts']} conflict(s)")
    if engine.get("folder_modes"):
        notes.append(f"{len(engine['folder_modes'])} folder(s) differ from the server by their mode")
    if engine.get("errors"):
        notes.append(f"{len(engine['errors'])} item(s) failing")
    last = f" (last sync {_clock(result['last_sync'])})" if result.get("last_sync") else ""
    return "Up to date" + (f", but {', '.join(notes)}" if notes else "") + last


SHOWN_ENGINE_KEYS = {
    "state", "last_sync", "last_cycle", "held", "errors", "conflicts", "objects", "symlinks_skipped", "current",
    "folder_modes", "queued_uploads", "queued_upload_bytes", "queued_downloads", "queued_download_bytes",
    "done_bytes", "speed", "waiting_paths", "waiting_objects",
}  # fmt: skip


def render_status(result: dict[str, Any]) -> None:
    """``ctl status`` for people: one line saying how things are, then the details (what waits, what failed, what
    to run), readable at 80 columns."""
    from rich.markup import escape
    from rich.table import Table

    colour = {"idle": "green", "syncing": "cyan", "paused": "yellow", "offline": "yellow", "error": "red"}
    state = str(result.get("state", "?"))
    console = _console()
    console.print(f"[bold {colour.get(state, 'white')}]{escape(pasteable(summary_line(result)))}[/]")
    engine = result.get("engine") or {}
    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_column(no_wrap=True, style="dim")
    table.add_column(overflow="fold")
    rows: list[tuple[str, str]] = []
    if result.get("last_sync"):
        rows.append(("last sync", _clock(result["last_sync"], True)))
    queued = transfer_summary(engine, speed=False)
    if queued and state != "syncing":
        rows.append(("waiting", queued))
    for held in engine.get("held") or []:
        rows.append(("held", held_line(held)))
    for folder in engine.get("folder_modes") or []:
        rows.append((str(folder.get("mode")), f"{short_path(str(folder.get('path')))}: {folder.get('note')}"))
    if engine.get("conflicts"):
        rows.append(("conflicts", f"{engine['conflicts']} (list them: oaiod ctl conflicts)"))
    errors = [row for row in engine.get("errors") or [] if isinstance(row, dict)]
    if errors:
        rows.append(("failing", "\n".join(_error_line(row) for row in errors[:10])))
    if engine.get("symlinks_skipped"):
        rows.append(("symlinks", f"{len(engine['symlinks_skipped'])} skipped (oaiod does not follow symlinks)"))
    if result.get("queued"):
        rows.append(("ctl queued", ", ".join(map(str, result["queued"]))))
    if engine.get("objects"):
        rows.append(("objects", f"{engine['objects']} synced (list them: oaiod ctl ls)"))
    for key in ("server", "device_id", "root", "config", "pid", "version"):
        if result.get(key) not in (None, ""):
            value = short_path(str(result[key])) if key in ("root", "config") else str(result[key])
            rows.append((key.replace("_", " "), value))
    for key, value in engine.items():  # anything else the engine reports (a newer engine, the tests' fake)
        if key not in SHOWN_ENGINE_KEYS and value not in (None, [], {}, "", 0):
            rows.append((key.replace("_", " "), _cell(value)))
    for name, value in rows:
        table.add_row(name, escape(pasteable(value)))
    console.print(table)


def _error_line(row: dict[str, Any]) -> str:
    """One backed-off item: its kind first (what it waits for), what failed, when it is tried again."""
    what = str(row.get("oaio_id") or row.get("key")) + (f" {row['path']}" if row.get("path") else "")
    try:
        when = datetime.datetime.strptime(str(row.get("next_try")), "%Y%m%d%H%M%S%f").replace(tzinfo=datetime.UTC)
        next_try = f"next try {_clock(when.timestamp(), True)}"
    except ValueError:
        next_try = "due"
    return f"{row.get('kind', 'transient')}: {what}: {row.get('message', '')} ({row.get('attempts', 1)}x, {next_try})"


def _progress_numbers(item: Any) -> tuple[float | None, float | None, str]:
    """``(done, total, text)`` from a ``sync --wait`` item (the engine's Progress); else a spinner with the state."""
    state = str(item.get("state", "")) if isinstance(item, dict) else ""
    progress = item.get("progress") if isinstance(item, dict) else None
    if not isinstance(progress, dict):
        return None, None, state
    done = progress.get("done_bytes") or 0
    queued = (progress.get("queued_upload_bytes") or 0) + (progress.get("queued_download_bytes") or 0)
    remaining = max(0, queued - (progress.get("current_done") or 0))
    current = progress.get("current_path") or ""
    return done, (done + remaining) or None, f"{state} {current}".strip()


def show_sync_progress(stream: Any, *, quiet: bool = False) -> None:
    """Consume a ``sync --wait`` stream; draw a rich progress bar (bytes when the engine reports them)."""
    if quiet:
        for _item in stream:
            pass
        return
    from rich.progress import BarColumn, DownloadColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    columns = (SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TimeElapsedColumn())
    with Progress(*columns, transient=True) as bar:
        task = bar.add_task("syncing", total=None)
        for item in stream:
            done, total, text = _progress_numbers(item)
            bar.update(task, completed=done or 0, total=total or None, description=text or "syncing")


# -- standalone use: python -m oaiod.daemon.cli [--config FILE] run|ctl|service ---------------------------------


@click.group(context_settings=CONTEXT)
@click.option("-c", "--config", "config_path", type=click.Path(dir_okay=False, path_type=Path), envvar="OAIOD_CONFIG")
@click.pass_context
def main(ctx: click.Context, config_path: Path | None) -> None:
    """oaiod daemon commands."""
    ctx.obj = {"config_path": config_path}


main.add_command(run)
main.add_command(ctl)
main.add_command(service)

if __name__ == "__main__":  # pragma: no cover
    main()
