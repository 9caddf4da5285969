"""The daemon's state: SQLite (WAL) through SQLAlchemy 2, schema by Alembic (``migrations/daemon``).

``StateRepo`` is the only way in; see :mod:`oaiod.state.db` for the errors of this boundary.
"""

from oaiod.state.db import StateError, StateUnavailable
from oaiod.state.repo import FileStat, StateRepo

__all__ = ["FileStat", "StateError", "StateRepo", "StateUnavailable"]
