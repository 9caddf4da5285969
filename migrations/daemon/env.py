"""Alembic environment of the daemon's state database (SQLite); body: :func:`oaiod.migrate.run_environment`."""

from oaiod.migrate import run_environment
from oaiod.state.models import Base

run_environment(Base.metadata)
