"""``oaiod hub …``: serve the hub and administer its users and storage hosts.

Passwords come only from stdin (``--password-stdin``), never from the command line, where other local users
could read them. Every error is one line on stderr and a non-zero exit status.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click
import platformdirs

from oaiod.errors import OaiodError
from oaiod.hub.accounts import looks_secret
from oaiod.hub.blobcli import blob_store_options
from oaiod.hub.settings import DEFAULT_PORT, BlobStoreSettings, HubSettings

DEFAULT_DATA_DIR = Path(platformdirs.user_data_dir("oaiod")) / "hub"


def _data_dir_option(func: Callable[..., Any]) -> Callable[..., Any]:
    func = click.option(
        "--db-url",
        envvar="OAIOD_HUB_DB_URL",
        default="",
        help="SQLAlchemy database URL (default: SQLite in the data folder).",
    )(func)
    return click.option(
        "--data-dir",
        type=click.Path(file_okay=False, path_type=Path),
        envvar="OAIOD_HUB_DATA_DIR",
        default=DEFAULT_DATA_DIR,
        show_default=True,
        help="Folder of the hub's database.",
    )(func)


@contextmanager
def _service(data_dir: Path, db_url: str, blob_store: BlobStoreSettings | None = None) -> Iterator[Any]:
    """An opened hub service; library errors become one-line click errors."""
    from oaiod.hub.service import HubService

    try:
        settings = HubSettings(data_dir=data_dir, db_url=db_url, blob_store=blob_store or BlobStoreSettings())
        service = HubService.open(settings)
    except Exception as exc:  # a missing driver, an unreachable server, a broken file: all say so in one line
        raise click.ClickException(f"cannot open the hub database: {str(exc).splitlines()[0]}") from exc
    try:
        yield service
    except OaiodError as exc:
        raise click.ClickException(str(exc)) from exc
    finally:
        service.close()


def _read_password() -> str:
    password = sys.stdin.readline().rstrip("\r\n")
    if not password:
        raise click.ClickException('no password on stdin (pipe it in: printf %s "$PW" | oaiod hub user add …)')
    return password


@click.group()
def hub() -> None:
    """Run and administer the self-hosted oaio server."""


def _check_proxies(_ctx: click.Context, _param: click.Parameter, value: tuple[str, ...]) -> tuple[str, ...]:
    from oaiod.hub.proxy import parse_trusted_proxies

    try:
        parse_trusted_proxies(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
    return value


@hub.command()
@_data_dir_option
@click.option("--host", envvar="OAIOD_HUB_HOST", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--port",
    envvar="OAIOD_HUB_PORT",
    type=click.IntRange(0, 65535),
    default=DEFAULT_PORT,
    show_default=True,
    help="Port (0: any).",
)
@click.option(
    "--public-url",
    envvar="OAIOD_HUB_PUBLIC_URL",
    default="",
    help="Base URL clients reach the hub at (https://hub.example/api/), for csh_args/Hub behind a proxy.",
)
@click.option(
    "--trusted-proxy",
    "trusted_proxies",
    multiple=True,
    envvar="OAIOD_HUB_TRUSTED_PROXIES",
    callback=_check_proxies,
    metavar="ADDR",
    help="Address or network (10.0.0.0/8) of a reverse proxy whose X-Forwarded-For and X-Forwarded-Proto count; "
    "repeatable. Without it these headers are ignored, from loopback too.",
)
@click.option(
    "--metrics-token-file",
    type=click.Path(dir_okay=False, path_type=Path),
    envvar="OAIOD_HUB_METRICS_TOKEN_FILE",
    help="File holding a token that lets a scraper on another machine read /metrics (Authorization: Bearer). "
    "Without it /metrics answers loopback only.",
)
@click.option(
    "--workers",
    envvar="OAIOD_HUB_WORKERS",
    type=click.IntRange(1, 256),
    default=1,
    show_default=True,
    help="Hub processes serving the port (PostgreSQL only: they share the database, as hubs on several machines do).",
)
@click.option(
    "--archive-disk-limit",
    envvar="OAIOD_HUB_ARCHIVE_DISK_LIMIT",
    type=click.IntRange(0),
    default=HubSettings.archive_disk_limit,
    show_default=True,
    help="Bytes the folder zips kept at once may take in DATA_DIR/archives; a zip beyond it is refused.",
)
@click.option(
    "--archive-ttl",
    envvar="OAIOD_HUB_ARCHIVE_TTL",
    type=click.FloatRange(60),
    default=HubSettings.archive_ttl,
    show_default=True,
    help="Seconds a prepared folder zip is kept for its download.",
)
@blob_store_options()
def serve(
    data_dir: Path,
    db_url: str,
    host: str,
    port: int,
    public_url: str,
    trusted_proxies: tuple[str, ...],
    metrics_token_file: Path | None,
    workers: int,
    archive_disk_limit: int,
    archive_ttl: float,
    blob_store: BlobStoreSettings,
) -> None:
    """Serve the hub until interrupted."""
    from oaiod.heap import use_system_malloc
    from oaiod.hub.server import HubServer
    from oaiod.hub.workers import serve_workers

    if workers > 1 and (not db_url or db_url.startswith("sqlite")):
        raise click.ClickException(
            f"--workers {workers} needs a PostgreSQL database (--db-url): SQLite serves one hub process"
        )

    use_system_malloc()  # may re-execute this process (same PID) with PYTHONMALLOC=malloc: see its docstring

    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        logging.getLogger("alembic").setLevel(logging.WARNING)
    try:
        settings = HubSettings(
            data_dir=data_dir,
            db_url=db_url,
            host=host,
            port=port,
            public_url=public_url,
            trusted_proxies=trusted_proxies,
            metrics_token=_read_token(metrics_token_file) if metrics_token_file else "",
            blob_store=blob_store,
            archive_disk_limit=archive_disk_limit,
            archive_ttl=archive_ttl,
        )
        if workers > 1:
            sys.exit(serve_workers(settings, workers))
        HubServer(settings).serve_forever()
    except OaiodError as exc:
        raise click.ClickException(str(exc)) from exc
    except KeyboardInterrupt:  # uvicorn re-raises the SIGINT it shut down for: a normal stop
        logging.getLogger("oaiod.hub").info("oaiod hub stopped")


def _read_token(path: Path) -> str:
    """The metrics token: the file's first line (a file, not an argument, so other local users cannot read it)."""
    try:
        token = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise click.BadParameter(f"cannot read {path}: {exc}", param_hint="--metrics-token-file") from None
    if len(token) < 16 or any(not char.isprintable() or char.isspace() for char in token):
        raise click.BadParameter(
            f"{path} must hold one token of at least 16 printable characters without spaces",
            param_hint="--metrics-token-file",
        )
    return token


# -- users --------------------------------------------------------------------------------------------------------


@hub.group()
def user() -> None:
    """Add, remove and list hub users."""


@user.command("add")
@click.argument("name")
@click.option("--supervisor", is_flag=True, help="May act for other users and create users by subscribing them.")
@click.option("--password-stdin", is_flag=True, help="Read the password from stdin (else the user cannot log in).")
@_data_dir_option
def user_add(name: str, supervisor: bool, password_stdin: bool, data_dir: Path, db_url: str) -> None:
    """Create a user."""
    password = _read_password() if password_stdin else None
    with _service(data_dir, db_url) as service:
        service.add_user(name, password, supervisor=supervisor)
    click.echo(f"added user {name}" + (" (supervisor)" if supervisor else "") + ("" if password else " (no login)"))


@user.command("del")
@click.argument("name")
@_data_dir_option
@blob_store_options()
def user_del(name: str, data_dir: Path, db_url: str, blob_store: BlobStoreSettings) -> None:
    """Remove a user with subscriptions, log entries and blobs (as wipe_user/ does)."""
    from oaiod.hub.blobstore import BlobStore

    with _service(data_dir, db_url, blob_store) as service:
        BlobStore(service)  # attaches itself: the user's blobs and the objects' blobs go too
        service.delete_user(name)
    click.echo(f"removed user {name}")


@user.command("passwd")
@click.argument("name")
@click.option("--password-stdin", is_flag=True, required=True, help="Read the new password from stdin.")
@_data_dir_option
def user_passwd(name: str, password_stdin: bool, data_dir: Path, db_url: str) -> None:
    """Set a user's password (ends their sessions)."""
    password = _read_password()
    with _service(data_dir, db_url) as service:
        service.set_password(name, password)
    click.echo(f"changed the password of {name}")


@user.command("list")
@_data_dir_option
def user_list(data_dir: Path, db_url: str) -> None:
    """List users."""
    with _service(data_dir, db_url) as service:
        for row in service.list_users():
            flags = [
                flag for flag, on in (("supervisor", row["is_supervisor"]), ("no-login", not row["can_login"])) if on
            ]
            click.echo(f"{row['username']}\t{','.join(flags) or '-'}\t{row['created']}")


# -- storage hosts --------------------------------------------------------------------------------------------


def _parse_kwargs(pairs: tuple[str, ...]) -> dict[str, Any]:
    """``key=value`` (a string) or ``key:=JSON`` (any JSON value) pairs."""
    kwargs: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep:
            raise click.BadParameter(f"{pair!r} is not key=value", param_hint="KEY=VALUE")
        as_json = key.endswith(":")
        key = key.removesuffix(":")
        if not key.isidentifier():
            raise click.BadParameter(f"{key!r} is not a keyword argument name", param_hint="KEY=VALUE")
        try:
            kwargs[key] = json.loads(raw) if as_json else raw
        except ValueError as exc:
            raise click.BadParameter(f"{key}: not JSON: {exc}", param_hint="KEY:=JSON") from None
    return kwargs


@hub.group()
def storage() -> None:
    """Set, remove and list cloud storage hosts handed out by csh_args/."""


@storage.command("set")
@click.argument("csh_id")
@click.argument("pairs", nargs=-1, metavar="KEY=VALUE|KEY:=JSON...")
@_data_dir_option
def storage_set(csh_id: str, pairs: tuple[str, ...], data_dir: Path, db_url: str) -> None:
    """Register or replace a storage host's keyword arguments.

    ``csh_args/`` hands them to every logged-in user (the oaio protocol's design): secret-looking ones get a
    warning, since whoever holds them reads and writes the whole storage host, whatever the hub's rights say."""
    kwargs = _parse_kwargs(pairs)
    with _service(data_dir, db_url) as service:
        service.set_storage(csh_id, kwargs)
    click.echo(f"set storage host {csh_id} ({', '.join(kwargs) or 'no arguments'})")
    if secret_keys := sorted(key for key in kwargs if looks_secret(key)):
        click.echo(
            f"warning: every user of this hub receives {', '.join(secret_keys)} of {csh_id} through csh_args/{csh_id} "
            "and with them all of the storage host, whatever objects they may read; to keep per-object rights "
            "on file contents, use the hub's blob store (csh id Hub) instead",
            err=True,
        )


@storage.command("del")
@click.argument("csh_id")
@_data_dir_option
def storage_del(csh_id: str, data_dir: Path, db_url: str) -> None:
    """Remove a storage host."""
    with _service(data_dir, db_url) as service:
        service.delete_storage(csh_id)
    click.echo(f"removed storage host {csh_id}")


@storage.command("list")
@_data_dir_option
def storage_list(data_dir: Path, db_url: str) -> None:
    """List storage hosts (secret-looking values masked)."""
    with _service(data_dir, db_url) as service:
        for csh_id, kwargs in service.list_storage():
            shown = {key: "****" if looks_secret(key) else value for key, value in kwargs.items()}
            click.echo(f"{csh_id}\t{json.dumps(shown, ensure_ascii=False)}")


# -- migration ------------------------------------------------------------------------------------------------


@hub.command()
@_data_dir_option
@click.option(
    "--to-db",
    "to_db",
    default="",
    metavar="URL",
    envvar="OAIOD_HUB_MIGRATE_TO_DB",
    help="Copy the database to this SQLAlchemy URL (PostgreSQL). A password in a URL shows in ps: put it in "
    "~/.pgpass, or pass the URL in OAIOD_HUB_MIGRATE_TO_DB.",
)
@blob_store_options(prefix="to-")
def migrate(data_dir: Path, db_url: str, to_db: str, to_blob_store: BlobStoreSettings | None) -> None:
    """Move a stopped hub's database and/or blob contents to PostgreSQL and S3; resumable, verified.

    Run it again after an interruption: what is done is skipped. The source stays as it was until you delete it;
    start the hub on the new places afterwards (--db-url, --blob-store s3 …)."""
    from oaiod.hub.blobcontent import LocalContent, open_content_store
    from oaiod.hub.migration import copy_contents, copy_database, named_contents, rich_progress

    if not to_db and to_blob_store is None:
        raise click.UsageError("give --to-db URL and/or --to-blob-store s3 with its --to-s3-… options")
    source_url = HubSettings(data_dir=data_dir, db_url=db_url).database_url
    try:
        with rich_progress() as progress:
            if to_db:
                report = copy_database(source_url, to_db, progress)
                click.echo(f"database: {sum(report.copied.values())} rows copied, "
                           f"{sum(report.skipped.values())} were there already; row counts match")  # fmt: skip
            if to_blob_store is not None:
                target = open_content_store(to_blob_store, data_dir)
                contents = named_contents(to_db or source_url)
                staging = data_dir / "blobs" / "uploads"
                report = copy_contents(LocalContent(data_dir / "blobs"), target, contents, staging, progress)
                click.echo(f"contents: {report.copied['contents']} copied ({report.copied['bytes']} bytes), "
                           f"{report.skipped['contents']} were there already")  # fmt: skip
                if report.corrupt:
                    raise click.ClickException(f"{len(report.corrupt)} contents do not match their sha256 and were "
                                               f"not copied: {', '.join(report.corrupt[:5])}")  # fmt: skip
    except OaiodError as exc:
        raise click.ClickException(str(exc)) from exc
    except sa_errors() as exc:
        raise click.ClickException(f"database: {str(exc).splitlines()[0]}") from exc


def sa_errors() -> type[Exception]:
    import sqlalchemy.exc

    return sqlalchemy.exc.SQLAlchemyError
