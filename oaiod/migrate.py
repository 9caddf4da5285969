"""Schema upgrades with Alembic for the hub's and the daemon's databases.

The scripts live in the top-level ``migrations/`` folder, one Alembic environment per database
(``migrations/hub``, ``migrations/daemon``). A wheel carries them as ``oaiod._migrations``; a source checkout
(editable install) reads them in place.
"""

from __future__ import annotations

import importlib.util
import logging.config
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config

from oaiod.errors import ConfigError


def migrations_root() -> Path:
    """The folder holding one Alembic environment per database."""
    try:
        spec = importlib.util.find_spec("oaiod._migrations")
    except ModuleNotFoundError:
        spec = None
    if spec is not None and spec.submodule_search_locations:  # a wheel: a namespace package inside oaiod
        root = Path(next(iter(spec.submodule_search_locations)))
    else:  # a source checkout
        root = Path(__file__).resolve().parent.parent / "migrations"
    if not root.is_dir():  # pragma: no cover - a broken install
        raise RuntimeError(f"oaiod's migrations are missing (looked in {root})")
    return root


def alembic_config(environment: str, url: str) -> Config:
    """An Alembic config for ``environment`` (``hub`` or ``daemon``) against database ``url``."""
    config = Config()
    config.set_main_option("script_location", str(migrations_root() / environment))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    config.attributes["configure_logger"] = False
    return config


def upgrade(environment: str, url: str, revision: str = "head") -> None:
    """Bring the database at ``url`` to ``revision``; safe to call on every start."""
    command.upgrade(alembic_config(environment, url), revision)


def run_environment(target_metadata: sa.MetaData) -> None:
    """The body of every ``env.py``: emit SQL offline, or upgrade online.

    Online it uses the open connection a caller handed over in ``config.attributes["connection"]``, else a
    short-lived engine on ``sqlalchemy.url``. It configures logging from an ini file only when the caller did not
    say ``config.attributes["configure_logger"] = False``, so an embedding process keeps its own log setup.
    SQLite gets batch mode (ALTER TABLE by copy).
    """
    from alembic import context  # only importable while Alembic runs an environment

    config = context.config
    if config.config_file_name is not None and config.attributes.get("configure_logger", True) is not False:
        logging.config.fileConfig(config.config_file_name)

    def migrate_over(connection: sa.Connection) -> None:
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            render_as_batch=connection.dialect.name == "sqlite",
            compare_type=True,
        )
        with context.begin_transaction():
            context.run_migrations()

    if context.is_offline_mode():
        url = config.get_main_option("sqlalchemy.url")
        context.configure(url=url, target_metadata=target_metadata, literal_binds=True, render_as_batch=True)
        with context.begin_transaction():
            context.run_migrations()
        return
    connection = config.attributes.get("connection")
    if connection is not None:
        migrate_over(connection)
        return
    url = config.get_main_option("sqlalchemy.url")
    if url is None:
        raise ConfigError("sqlalchemy.url", "the migration environment names no database and gives no connection")
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as connection:
            migrate_over(connection)
    finally:
        engine.dispose()
