"""The state database: WAL, Alembic owns the schema (models and migrations agree), typed errors, streaming."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from oaiod.state import StateRepo, StateUnavailable
from oaiod.state.models import KIND_FOLDER, Base, FileRow, ObjectRow
from oaiod.storage.errors import TransientStorageError


def test_models_and_migrations_agree(tmp_path: Path) -> None:
    repo = StateRepo(tmp_path)
    with repo.engine.connect() as connection:
        diff = compare_metadata(MigrationContext.configure(connection, opts={"compare_type": True}), Base.metadata)
    assert diff == []
    repo.close()


def test_wal_mode_and_foreign_keys(tmp_path: Path) -> None:
    repo = StateRepo(tmp_path)
    with repo.engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    repo.close()


def test_reopen_is_idempotent(tmp_path: Path) -> None:
    StateRepo(tmp_path).close()
    repo = StateRepo(tmp_path)
    repo.set_cursor("srv", "20250101000000000000")
    repo.close()
    assert StateRepo(tmp_path).cursor("srv") == "20250101000000000000"


def test_garbage_file_gives_a_typed_error(tmp_path: Path) -> None:
    (tmp_path / "state.sqlite3").write_bytes(b"this is not a database at all" * 100)
    with pytest.raises(StateUnavailable, match="rebuild-index"):
        StateRepo(tmp_path)


def test_unwritable_location_gives_a_typed_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(StateUnavailable):
        StateRepo(blocker / "sub")


def _object(oaio_id: str) -> ObjectRow:
    return ObjectRow(oaio_id=oaio_id, kind=KIND_FOLDER, local_root="/tmp/x")


def test_files_stream_by_prefix_and_cascade(tmp_path: Path) -> None:
    repo = StateRepo(tmp_path)
    repo.save_object(_object("o1"))
    with repo.session() as s:
        for path in ("a", "a/b", "a/c/d", "a.txt", "ab", "z"):
            s.add(FileRow(oaio_id="o1", path=path, size=1, mtime_ns=2, inode=3))
    assert [row.path for row in repo.iter_files("o1")] == ["a", "a.txt", "a/b", "a/c/d", "ab", "z"]
    assert sorted(repo.file_stats("o1", "a")) == ["a", "a/b", "a/c/d"]
    repo.delete_object("o1")
    assert repo.count_files("o1") == 0
    repo.close()


def test_error_backoff_grows_and_clears(tmp_path: Path) -> None:
    repo = StateRepo(tmp_path)
    first = repo.record_error("obj:o1", TransientStorageError("boom"), oaio_id="o1")
    second = repo.record_error("obj:o1", TransientStorageError("boom again"), oaio_id="o1")
    assert second.attempts == 2 and second.next_try > first.next_try
    assert repo.backing_off("obj:o1")
    repo.clear_error("obj:o1")
    assert not repo.backing_off("obj:o1") and repo.errors() == []
    repo.close()


def test_journal_survives_reopen(tmp_path: Path) -> None:
    repo = StateRepo(tmp_path)
    repo.journal_add("commit", "o1", "20250101000000000001", "20250101000000000000", {"n": 1})
    repo.close()
    (entry,) = StateRepo(tmp_path).journal()
    assert (entry.op, entry.oaio_id, entry.data) == ("commit", "o1", {"n": 1})


def test_sqlite_sees_the_alembic_version(tmp_path: Path) -> None:
    StateRepo(tmp_path).close()
    with sqlite3.connect(tmp_path / "state.sqlite3") as connection:
        assert connection.execute("select version_num from alembic_version").fetchone() == ("0008",)
    assert sa.__version__.startswith("2.")


def test_objects_without_values_and_sorted_stat_stream(tmp_path: Path) -> None:
    repo = StateRepo(tmp_path)
    row = _object("o1")
    row.client_values = {"_oaiod": {"files": {"a": [1, 2, "x", False]}}}
    repo.save_object(row)
    with repo.session() as s:
        for path in ("b", "a/c", "a-b", "a"):
            s.add(FileRow(oaio_id="o1", path=path, size=1, mtime_ns=2, inode=3, present=path != "b"))
    (light,) = repo.objects(values=False)
    assert (light.oaio_id, light.kind, light.local_root) == ("o1", KIND_FOLDER, "/tmp/x")
    with pytest.raises(sa.orm.exc.DetachedInstanceError):
        _ = light.client_values  # not loaded: reading it is a bug, not a silent query
    assert repo.objects()[0].client_values == row.client_values
    assert list(repo.iter_file_stats("o1")) == [
        ("a", 1, 2, 3, 1),
        ("a-b", 1, 2, 3, 1),
        ("a/c", 1, 2, 3, 1),
        ("b", 1, 2, 3, 0),
    ]
    repo.close()
