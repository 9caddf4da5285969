"""The hub's Alembic environment and its SQLAlchemy models agree, on SQLite and PostgreSQL."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from oaiod import migrate
from oaiod.hub.db import Base


def _diffs(url: str) -> list[object]:
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": True})
            return list(compare_metadata(context, Base.metadata))
    finally:
        engine.dispose()


def test_migrations_match_the_models(db_url: str) -> None:
    migrate.upgrade("hub", db_url)
    migrate.upgrade("hub", db_url)  # every hub start does this: a no-op when up to date
    assert _diffs(db_url) == []


def test_downgrade_and_upgrade_again(db_url: str) -> None:
    migrate.upgrade("hub", db_url)
    command.downgrade(migrate.alembic_config("hub", db_url), "base")
    engine = sa.create_engine(db_url, poolclass=sa.pool.NullPool)
    with engine.connect() as conn:
        assert set(sa.inspect(conn).get_table_names()) <= {"alembic_version"}
    engine.dispose()
    migrate.upgrade("hub", db_url)
    assert _diffs(db_url) == []
