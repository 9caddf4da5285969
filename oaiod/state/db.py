"""Opening the state database: SQLite in WAL mode, foreign keys on, schema upgraded by Alembic at open.

Errors of this boundary (SQLAlchemy's and sqlite3's are translated here)::

    OaiodError
    └── StateError               the state database failed while in use
        └── StateUnavailable     it cannot be opened: unreadable, not a database, corrupt, or its migration failed;
                                 the message names the file and says that `oaiod ctl rebuild-index` rebuilds it
"""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path

import sqlalchemy as sa
from alembic.util import CommandError
from sqlalchemy.engine import Engine

from oaiod import jsoncodec, migrate
from oaiod.errors import OaiodError

log = logging.getLogger("oaiod.state")

DB_FILE = "state.sqlite3"


class StateError(OaiodError):
    """The state database failed while in use."""


class StateUnavailable(StateError):
    """The state database cannot be opened; ``path`` names it."""

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(
            f"cannot open the state database {path}: {reason}. "
            "Run `oaiod ctl rebuild-index` to rebuild it from disk and server (your files are not touched)."
        )
        self.path = path


def _on_connect(dbapi_connection: sqlite3.Connection, _record: object) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")  # durable at checkpoints; WAL keeps the file consistent on a crash
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.close()


def create_engine(path: Path) -> Engine:
    """A SQLAlchemy engine on ``path`` with WAL, foreign keys and a busy timeout on every connection.

    JSON columns (an object's values hold its manifest: 10,000 files ≈ 1.4 MB) are written by
    :func:`oaiod.jsoncodec.dumps_text` and read by the stdlib.
    """
    engine = sa.create_engine(
        f"sqlite:///{path}", connect_args={"check_same_thread": False}, json_serializer=jsoncodec.dumps_text
    )
    sa.event.listen(engine, "connect", _on_connect)
    return engine


def open_database(path: Path) -> Engine:
    """The engine of the database at ``path``, created or upgraded to the newest schema; else StateUnavailable."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        with path.open("ab"):
            pass
        migrate.upgrade("daemon", f"sqlite:///{path}")
        engine = create_engine(path)
        with engine.connect() as connection:
            check = connection.exec_driver_sql("PRAGMA quick_check").scalar()
        if check != "ok":
            engine.dispose()
            raise StateUnavailable(path, f"integrity check failed: {check}")
    except StateUnavailable:
        raise
    except (OSError, sa.exc.SQLAlchemyError, sqlite3.Error, CommandError) as exc:
        raise StateUnavailable(path, str(exc).splitlines()[0]) from exc
    log.debug("state database %s open", path)
    return engine
