"""Alembic environment of the daemon's state database (SQLite).

Run through :func:`oaiod.migrate.upgrade`; it never configures logging itself when the caller says so
(``config.attributes["configure_logger"] is False``), so the daemon keeps its own log setup.
A caller may hand over an open connection in ``config.attributes["connection"]``.
"""

from __future__ import annotations

import logging.config

import sqlalchemy as sa
from alembic import context

from oaiod.state.models import Base

config = context.config
if config.config_file_name is not None and config.attributes.get("configure_logger", True) is not False:
    logging.config.fileConfig(config.config_file_name)

target_metadata = Base.metadata


def _configure(connection: sa.Connection) -> None:
    context.configure(connection=connection, target_metadata=target_metadata, render_as_batch=True, compare_type=True)
    with context.begin_transaction():
        context.run_migrations()


def run_offline() -> None:
    """Emit SQL instead of running it (``alembic upgrade --sql``)."""
    url = config.get_main_option("sqlalchemy.url")
    context.configure(url=url, target_metadata=target_metadata, literal_binds=True, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    """Upgrade over the given connection, or a short-lived engine on ``sqlalchemy.url``."""
    connection = config.attributes.get("connection")
    if connection is not None:
        _configure(connection)
        return
    engine = sa.create_engine(config.get_main_option("sqlalchemy.url"), poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as connection:
            _configure(connection)
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_offline()
else:
    run_online()
