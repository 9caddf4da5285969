"""files.sha256 indexed and a table of trashed files: a pull serves content the device already has from a local
copy instead of a download (a rename, a copy, a revert, a file restored from the trash; issue 13 §1)

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-04
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_files_sha256", "files", ["sha256"], unique=False)
    op.create_table(
        "trash",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("path", sa.String(length=4096), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("mtime_ns", sa.BigInteger(), nullable=False),
        sa.Column("inode", sa.BigInteger(), nullable=False),
        sa.Column("created", sa.String(length=20), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_trash")),
    )
    op.create_index("ix_trash_sha256", "trash", ["sha256"], unique=False)
    op.create_index("ix_trash_created", "trash", ["created"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_trash_created", table_name="trash")
    op.drop_index("ix_trash_sha256", table_name="trash")
    op.drop_table("trash")
    op.drop_index("ix_files_sha256", table_name="files")
