"""Who may read the hub's data folder: its SQLite database holds password and session hashes.

Guarantees, once :func:`protect` ran (at :meth:`HubService.open <oaiod.hub.service.HubService.open>`, before the
first connection):

- The SQLite database file is mode 0600: a new one is created so, an existing one (made 0644 by an older hub) is
  chmod'ed. SQLite creates the ``-wal`` and ``-shm`` files with the mode of the database file; existing ones are
  chmod'ed too. Nothing else in the folder is touched (the blob store makes its folders 0700).
- A data folder that group or others may enter or read (an existing folder keeps its mode; ``mkdir`` only sets
  the mode of a new one) is logged as a warning, with the ``chmod`` that closes it. The hub still starts: the
  files above are private either way, but names of blobs and uploads are not.
"""

from __future__ import annotations

import contextlib
import logging
import os
import stat
from pathlib import Path

import sqlalchemy as sa

log = logging.getLogger("oaiod.hub")

PRIVATE_FILE = 0o600
SQLITE_COMPANIONS = ("", "-wal", "-shm", "-journal")  #: suffixes of the files SQLite keeps beside a database


def protect(data_dir: Path, database_url: str) -> None:
    """Warn about an open ``data_dir`` and make a SQLite database at ``database_url`` private (module docstring)."""
    warn_if_open(data_dir)
    path = sqlite_path(database_url)
    if path is not None:
        make_private(path)


def warn_if_open(folder: Path) -> None:
    mode = stat.S_IMODE(folder.stat().st_mode)
    if mode & 0o077:
        log.warning("hub data folder %s is mode %03o: other users of this machine may read what is in it; "
                    "chmod 700 it", folder, mode)  # fmt: skip


def sqlite_path(database_url: str) -> Path | None:
    """The file of a SQLite URL; None for another database or an in-memory one."""
    url = sa.engine.make_url(database_url)
    if url.get_backend_name() != "sqlite" or not url.database or url.database == ":memory:":
        return None
    return Path(url.database)


def make_private(database: Path) -> None:
    """Create ``database`` empty with mode 0600 when missing; chmod it and its companion files to 0600."""
    with contextlib.suppress(FileExistsError):
        os.close(os.open(database, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE))
    for suffix in SQLITE_COMPANIONS:
        path = database.with_name(database.name + suffix)
        try:
            if stat.S_IMODE(path.stat().st_mode) != PRIVATE_FILE:
                path.chmod(PRIVATE_FILE)
                log.info("hub database file %s was readable by others; now mode 600", path)
        except FileNotFoundError:
            continue
        except OSError as exc:  # another user's file: the hub cannot change it, and says so
            log.warning("hub database file %s: cannot make it private (%s); chmod 600 it", path, exc)
