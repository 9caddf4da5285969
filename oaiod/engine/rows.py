"""Index rows of one object changed by a pull, queued and written in order in one transaction per batch.

A pull installs thousands of files; one ORM transaction per file cost more than the file itself. The queue keeps
the order of the operations (a conflict writes, deletes and rewrites rows of neighbouring paths) and groups runs
of one kind into one ``executemany``. The caller makes the installed files durable before it flushes, so a row
never describes a file that a power loss could still take back (design §3).
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.sqlite import insert

from oaiod.state.models import FileRow
from oaiod.state.repo import FileStat, StateRepo

_STAT_COLUMNS = ("present", "size", "mtime_ns", "inode", "sha256", "executable")


def _upsert(*, synced: bool) -> Any:
    statement = insert(FileRow)
    columns = _STAT_COLUMNS + (("synced_sha256", "synced_executable") if synced else ())
    return statement.on_conflict_do_update(
        index_elements=[FileRow.oaio_id, FileRow.path], set_={name: statement.excluded[name] for name in columns}
    )


_WRITE_SYNCED = _upsert(synced=True)
_WRITE_LOCAL = _upsert(synced=False)
_SET_SYNCED = (
    sa.update(FileRow)
    .where(FileRow.oaio_id == sa.bindparam("o"), FileRow.path == sa.bindparam("p"))
    .values(synced_sha256=sa.bindparam("s"), synced_executable=sa.bindparam("x"))
)
_DELETE = sa.delete(FileRow).where(FileRow.oaio_id == sa.bindparam("o"), FileRow.path == sa.bindparam("p"))


class RowWriter:
    """Queued row changes of one object (see the module docstring); ``flush`` writes them in one transaction."""

    def __init__(self, repo: StateRepo, oaio_id: str) -> None:
        self.repo = repo
        self.oaio_id = oaio_id
        self._ops: list[tuple[Any, dict[str, Any]]] = []

    def __len__(self) -> int:
        return len(self._ops)

    def write(self, rel: str, st: FileStat, sha: str, executable: bool, *, synced: bool = True) -> None:
        """The file at ``rel`` as it is on disk now; ``synced``: it is also the base version's content."""
        values = {
            "oaio_id": self.oaio_id,
            "path": rel,
            "present": True,
            "size": st.size,
            "mtime_ns": st.mtime_ns,
            "inode": st.inode,
            "sha256": sha,
            "executable": executable,
            "synced_sha256": sha if synced else None,
            "synced_executable": executable if synced else False,
            "synced_stamp": "",
        }
        self._ops.append((_WRITE_SYNCED if synced else _WRITE_LOCAL, values))

    def set_synced(self, rel: str, sha: str | None, executable: bool) -> None:
        """The base version holds ``sha`` at ``rel`` (None: not in the base); the local state is unchanged."""
        self._ops.append((_SET_SYNCED, {"o": self.oaio_id, "p": rel, "s": sha, "x": executable}))

    def delete(self, rel: str) -> None:
        self._ops.append((_DELETE, {"o": self.oaio_id, "p": rel}))

    def flush(self) -> None:
        """Apply the queue in order, runs of one statement as one executemany, in one transaction."""
        if not self._ops:
            return
        ops, self._ops = self._ops, []
        with self.repo.session() as s:
            connection = s.connection()  # Core executemany: no ORM bulk semantics, no objects
            start = 0
            while start < len(ops):
                statement = ops[start][0]
                end = start
                while end < len(ops) and ops[end][0] is statement:
                    end += 1
                connection.execute(statement, [values for _statement, values in ops[start:end]])
                start = end
