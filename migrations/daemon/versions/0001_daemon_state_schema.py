"""daemon state schema: objects, files, cursors, journal, conflicts, history, errors

Revision ID: 0001
Revises:
Create Date: 2025-11-22
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "conflicts",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("oaio_id", sa.String(length=255), nullable=False),
        sa.Column("kind", sa.String(length=10), nullable=False),
        sa.Column("path", sa.String(length=4096), nullable=False),
        sa.Column("copy_path", sa.String(length=4096), nullable=False),
        sa.Column("detail", sa.String(length=2000), nullable=False),
        sa.Column("created", sa.String(length=20), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_conflicts")),
    )
    op.create_index(op.f("ix_conflicts_created"), "conflicts", ["created"], unique=False)
    op.create_index(op.f("ix_conflicts_oaio_id"), "conflicts", ["oaio_id"], unique=False)
    op.create_table(
        "cursors",
        sa.Column("server", sa.String(length=2048), nullable=False),
        sa.Column("last_sync_stamp", sa.String(length=20), nullable=False),
        sa.PrimaryKeyConstraint("server", name=op.f("pk_cursors")),
    )
    op.create_table(
        "errors",
        sa.Column("key", sa.String(length=4400), nullable=False),
        sa.Column("oaio_id", sa.String(length=255), nullable=False),
        sa.Column("path", sa.String(length=4096), nullable=False),
        sa.Column("message", sa.String(length=2000), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("first_at", sa.String(length=20), nullable=False),
        sa.Column("last_at", sa.String(length=20), nullable=False),
        sa.Column("next_try", sa.String(length=20), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_errors")),
    )
    op.create_index(op.f("ix_errors_next_try"), "errors", ["next_try"], unique=False)
    op.create_table(
        "history",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("at", sa.String(length=20), nullable=False),
        sa.Column("oaio_id", sa.String(length=255), nullable=False),
        sa.Column("action", sa.String(length=20), nullable=False),
        sa.Column("path", sa.String(length=4096), nullable=False),
        sa.Column("detail", sa.String(length=2000), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_history")),
    )
    op.create_index(op.f("ix_history_at"), "history", ["at"], unique=False)
    op.create_table(
        "journal",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("op", sa.String(length=20), nullable=False),
        sa.Column("oaio_id", sa.String(length=255), nullable=False),
        sa.Column("stamp", sa.String(length=20), nullable=False),
        sa.Column("base_stamp", sa.String(length=20), nullable=False),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.Column("created", sa.String(length=20), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_journal")),
    )
    op.create_index(op.f("ix_journal_oaio_id"), "journal", ["oaio_id"], unique=False)
    op.create_table(
        "objects",
        sa.Column("oaio_id", sa.String(length=255), nullable=False),
        sa.Column("client_stamp", sa.String(length=20), nullable=False),
        sa.Column("server_stamp", sa.String(length=20), nullable=False),
        sa.Column("client_values", sa.JSON(), nullable=False),
        sa.Column("server_values", sa.JSON(), nullable=False),
        sa.Column("csh_id", sa.String(length=150), nullable=True),
        sa.Column("username", sa.String(length=150), nullable=False),
        sa.Column("device_id", sa.String(length=150), nullable=False),
        sa.Column("app_id", sa.String(length=150), nullable=False),
        sa.Column("csh_access_right", sa.String(length=1), nullable=False),
        sa.Column("kind", sa.String(length=10), nullable=False),
        sa.Column("status", sa.String(length=10), nullable=False),
        sa.Column("local_root", sa.String(length=4096), nullable=True),
        sa.Column("synced_stamp", sa.String(length=20), nullable=False),
        sa.Column("synced_values", sa.JSON(), nullable=False),
        sa.Column("local_values", sa.JSON(), nullable=True),
        sa.Column("local_dirty", sa.Boolean(), nullable=False),
        sa.Column("remote_dirty", sa.Boolean(), nullable=False),
        sa.Column("hold_reason", sa.String(length=500), nullable=False),
        sa.Column("delete_confirmed", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("oaio_id", name=op.f("pk_objects")),
    )
    op.create_index(op.f("ix_objects_local_dirty"), "objects", ["local_dirty"], unique=False)
    op.create_index(op.f("ix_objects_remote_dirty"), "objects", ["remote_dirty"], unique=False)
    op.create_index(op.f("ix_objects_status"), "objects", ["status"], unique=False)
    op.create_table(
        "files",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("oaio_id", sa.String(length=255), nullable=False),
        sa.Column("path", sa.String(length=4096), nullable=False),
        sa.Column("present", sa.Boolean(), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("mtime_ns", sa.BigInteger(), nullable=False),
        sa.Column("inode", sa.BigInteger(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=True),
        sa.Column("executable", sa.Boolean(), nullable=False),
        sa.Column("synced_sha256", sa.String(length=64), nullable=True),
        sa.Column("synced_stamp", sa.String(length=20), nullable=False),
        sa.Column("synced_executable", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(
            ["oaio_id"], ["objects.oaio_id"], name=op.f("fk_files_oaio_id_objects"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_files")),
        sa.UniqueConstraint("oaio_id", "path", name=op.f("uq_files_oaio_id_path")),
    )


def downgrade() -> None:
    op.drop_table("files")
    op.drop_table("objects")
    op.drop_table("journal")
    op.drop_table("history")
    op.drop_table("errors")
    op.drop_table("cursors")
    op.drop_table("conflicts")
