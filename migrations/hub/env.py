"""Alembic environment of the hub's database (SQLite or PostgreSQL); body: :func:`oaiod.migrate.run_environment`."""

from oaiod.hub.db import Base
from oaiod.migrate import run_environment

run_environment(Base.metadata)
