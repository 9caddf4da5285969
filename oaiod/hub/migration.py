"""``oaiod hub migrate``: move an embedded hub (SQLite, blobs in its data folder) to PostgreSQL and an S3 bucket.

Two independent moves, each resumable (run it again after an interruption: what is done is skipped) and
verified; the source is never changed, so the old data stays until the operator deletes it:

- :func:`copy_database` — every table of the hub's schema, parents before children (``sorted_tables``), rows
  copied in batches of :data:`ROW_BATCH`, each batch committed; a row whose primary key the target holds
  already is skipped. The target schema is made by the same Alembic upgrade as ``hub serve``. Afterwards the
  row counts of every table must match (else :class:`MigrationError`), and PostgreSQL's id sequences are moved
  past the copied ids. Stop the hub first: rows written meanwhile would be missed (the count check says so).
- :func:`copy_contents` — every content a blob name points at, from one content store to another: the source's
  bytes are hashed (a content whose bytes do not match its sha256 is reported, not copied), placed in the target,
  and read back and hashed there. Content the target holds with the right size is skipped.

Progress goes to a ``rich`` progress bar (rows per table; content bytes).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from oaiod.errors import OaiodError
from oaiod.hub.blobcontent import ContentStore
from oaiod.hub.db import Base, Blob, BlobBlock

ROW_BATCH = 1000
BLOCK = 4 * 1024 * 1024

#: ``progress(what, done, total)``: called as work advances (a bar; tests stop a migration from it)
Progress = Callable[[str, int, int], None]


class MigrationError(OaiodError):
    """A migration could not finish or its verification failed; the source is unchanged."""


@dataclass
class Report:
    """What a run did: rows or contents copied, those found done already, and contents that failed their hash."""

    copied: dict[str, int] = field(default_factory=dict)
    skipped: dict[str, int] = field(default_factory=dict)
    corrupt: list[str] = field(default_factory=list)


def _nothing(_what: str, _done: int, _total: int) -> None:
    """No progress shown."""


# -- database -----------------------------------------------------------------------------------------------------


def copy_database(source_url: str, target_url: str, progress: Progress = _nothing) -> Report:
    """Copy every hub table from ``source_url`` to ``target_url`` (schema upgraded first); see the module docstring."""
    from oaiod import migrate

    if sa.engine.make_url(source_url) == sa.engine.make_url(target_url):
        raise MigrationError("the source and the target database are the same")
    migrate.upgrade("hub", target_url)
    source, target = sa.create_engine(source_url), sa.create_engine(target_url)
    report = Report()
    try:
        for table in Base.metadata.sorted_tables:
            copied, skipped = _copy_table(source, target, table, progress)
            report.copied[table.name], report.skipped[table.name] = copied, skipped
        _verify_counts(source, target)
        _advance_sequences(target)
    finally:
        source.dispose()
        target.dispose()
    return report


def _copy_table(source: sa.Engine, target: sa.Engine, table: sa.Table, progress: Progress) -> tuple[int, int]:
    """Copy the rows of ``table`` the target lacks (by primary key); ``(copied, already there)``."""
    key = list(table.primary_key.columns)
    with target.connect() as conn:
        present = {tuple(row) for row in conn.execute(sa.select(*key))}
    with source.connect() as conn:
        total = conn.scalar(sa.select(sa.func.count()).select_from(table)) or 0
    progress(table.name, len(present), total)
    copied, done, batch = 0, len(present), []
    with source.connect() as conn:
        for row in conn.execution_options(yield_per=ROW_BATCH).execute(sa.select(table).order_by(*key)):
            if tuple(row._mapping[column.name] for column in key) in present:
                continue
            batch.append(dict(row._mapping))
            if len(batch) == ROW_BATCH:
                copied += _insert(target, table, batch)
                progress(table.name, done + copied, total)
                batch = []
    copied += _insert(target, table, batch)
    progress(table.name, done + copied, total)
    return copied, len(present)


def _insert(target: sa.Engine, table: sa.Table, rows: list[dict[str, Any]]) -> int:
    if rows:
        with target.begin() as conn:
            conn.execute(sa.insert(table), rows)
    return len(rows)


def _verify_counts(source: sa.Engine, target: sa.Engine) -> None:
    differing = []
    with source.connect() as src, target.connect() as dst:
        for table in Base.metadata.sorted_tables:
            count = sa.select(sa.func.count()).select_from(table)
            had, has = src.scalar(count), dst.scalar(count)
            if had != has:
                differing.append(f"{table.name}: {had} in the source, {has} in the target")
    if differing:
        raise MigrationError(
            "row counts differ after the copy (was the hub running? stop it and run the migration again): "
            + "; ".join(differing)
        )


def _advance_sequences(target: sa.Engine) -> None:
    """Move PostgreSQL's id sequences past the copied ids (rows were inserted with their ids)."""
    if target.dialect.name != "postgresql":
        return
    with target.begin() as conn:
        for table in Base.metadata.sorted_tables:
            for column in table.primary_key.columns:
                if column.autoincrement is True and isinstance(column.type, sa.Integer):
                    sequence = conn.scalar(sa.text("SELECT pg_get_serial_sequence(:t, :c)"),
                                           {"t": table.name, "c": column.name})  # fmt: skip
                    if sequence:
                        highest = conn.scalar(sa.select(sa.func.max(column)))
                        conn.execute(sa.text("SELECT setval(:s, :v, :called)"),
                                     {"s": sequence, "v": highest or 1, "called": highest is not None})  # fmt: skip


# -- contents -----------------------------------------------------------------------------------------------------


def named_contents(database_url: str) -> list[tuple[str, int]]:
    """``(sha256, size)`` of every content a blob name points at, a content stored as blocks
    (:mod:`oaiod.hub.blobrecipes`) by its blocks."""
    engine = sa.create_engine(database_url)
    try:
        with engine.connect() as conn:
            recipes = sa.select(BlobBlock.content)
            whole = sa.select(Blob.sha256, Blob.size).where(Blob.sha256.not_in(recipes)).distinct()
            blocks = sa.select(BlobBlock.block, BlobBlock.size).distinct()
            found = {sha256: size for sha256, size in [*conn.execute(whole), *conn.execute(blocks)]}
            return sorted(found.items())
    finally:
        engine.dispose()


def copy_contents(
    source: ContentStore,
    target: ContentStore,
    contents: list[tuple[str, int]],
    staging: Path,
    progress: Progress = _nothing,
) -> Report:
    """Copy each ``(sha256, size)`` from ``source`` to ``target``, verified by hash both ends (module docstring);
    ``staging`` is a folder on the hub's disk for the bytes on their way."""
    staging.mkdir(parents=True, exist_ok=True, mode=0o700)
    report = Report(copied={"contents": 0, "bytes": 0}, skipped={"contents": 0})
    total, done = sum(size for _sha256, size in contents), 0
    progress("contents", 0, total)
    for sha256, size in contents:
        if target.size(sha256) == size:
            report.skipped["contents"] += 1
        elif _copy_one(source, target, sha256, size, staging):
            report.copied["contents"] += 1
            report.copied["bytes"] += size
        else:
            report.corrupt.append(sha256)
        done += size
        progress("contents", done, total)
    return report


def _copy_one(source: ContentStore, target: ContentStore, sha256: str, size: int, staging: Path) -> bool:
    """Stage the source's bytes (hashing them), place them in the target and check them there; False when the
    source's bytes are not the content they are named after."""
    staged = staging / f"migrate-{secrets.token_hex(8)}"
    try:
        digest = hashlib.sha256()
        with contextlib.closing(source.open(sha256)) as reader, open(staged, "wb") as file:
            while block := reader.read(BLOCK):
                digest.update(block)
                file.write(block)
            file.flush()
            os.fsync(file.fileno())
        if digest.hexdigest() != sha256 or staged.stat().st_size != size:
            return False
        target.place([(sha256, staged)])
    finally:
        with contextlib.suppress(FileNotFoundError):
            staged.unlink()
    if _hash_of(target, sha256) != sha256:
        target.remove(sha256)
        raise MigrationError(f"content {sha256} reads back from the target with another hash; removed there")
    return True


def _hash_of(store: ContentStore, sha256: str) -> str:
    digest = hashlib.sha256()
    with contextlib.closing(store.open(sha256)) as reader:
        while block := reader.read(BLOCK):
            digest.update(block)
    return digest.hexdigest()


@contextlib.contextmanager
def rich_progress() -> Iterator[Progress]:
    """A ``rich`` progress bar as a :data:`Progress` (one task per table or per content copy)."""
    from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeRemainingColumn
    from rich.progress import Progress as Bar

    with Bar(TextColumn("{task.description:<16}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn()) as bar:
        tasks: dict[str, Any] = {}

        def update(what: str, done: int, total: int) -> None:
            if what not in tasks:
                tasks[what] = bar.add_task(what, total=total)
            bar.update(tasks[what], completed=done, total=total)

        yield update
