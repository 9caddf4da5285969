"""Revision 0003 gives every stored failure a kind: read from its message where it says, else transient."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from oaiod import migrate
from oaiod.state import StateRepo

OLD_ROWS = {
    "obj:auth": "pull: GET https://hub.example/api/stampz/ answered 401 Unauthorized",
    "obj:denied": 'push: POST https://hub.example/api/upload/ answered 403 Forbidden: {"detail": "no U"}',
    "obj:gone": "pull: GET https://hub.example/api/hub/versions/o answered 404 Not Found",
    "obj:race": "push: POST https://hub.example/api/upload/ answered 409 Conflict",
    "obj:big": "push: put 'o/s/a.iso': PUT https://hub.example/blob answered 413 Payload Too Large",
    "obj:bad": "push: POST https://hub.example/api/register/ answered 422 Unprocessable Entity",
    "obj:slow": "push: POST https://hub.example/api/upload/ answered 429 Too Many Requests",
    "obj:down": "pull: GET https://hub.example/api/stampz/ answered 503 Service Unavailable",
    "file:o:a.txt": "cannot rename /r/.oaiod-tmp-1 to /r/a.txt: Permission denied",
    "file:o:b.txt": "cannot make /r/b: No space left on device",
    "file:o:long": "[Errno 36] File name too long: '/r/xxxx'",
    "obj:net": "pull: GET https://hub.example/api/stampz/: ConnectionError: connection refused",
    "listing:x": "pull: the server sent an invalid object: _file_paths leaves its folder",
}
EXPECTED = {
    "obj:auth": "auth",
    "obj:denied": "permission",
    "obj:gone": "not_found",
    "obj:race": "conflict",
    "obj:big": "quota",
    "obj:bad": "invalid",
    "obj:slow": "transient",
    "obj:down": "transient",
    "file:o:a.txt": "permission",
    "file:o:b.txt": "quota",
    "file:o:long": "invalid",
    "obj:net": "transient",
    "listing:x": "transient",  # says nothing the migration can read: the backoff it had
}


def test_upgrade_from_0002_gives_old_failures_a_kind_and_keeps_them(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite3"
    migrate.upgrade("daemon", f"sqlite:///{path}", "0002")
    with sqlite3.connect(path) as connection:
        connection.executemany(
            "insert into errors (key, oaio_id, path, message, attempts, first_at, last_at, next_try)"
            " values (?, 'o', '', ?, 3, '20261201000000000000', '20261202000000000000', '29990101000000000000')",
            OLD_ROWS.items(),
        )
    repo = StateRepo(tmp_path)  # upgrades to the newest revision
    rows = {row.key: row for row in repo.errors()}
    assert {key: row.kind for key, row in rows.items()} == EXPECTED
    assert all(row.message == OLD_ROWS[key] and row.attempts == 3 for key, row in rows.items())
    assert all(repo.backing_off(key) for key in OLD_ROWS)  # their next try stays as it was
    repo.close()
