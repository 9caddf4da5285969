"""ignored file rows (frozen at their synced state) and folders excluded from the synced folder around them

Revision ID: 0002
Revises: 0001
Create Date: 2025-11-30
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("files") as batch:
        batch.add_column(sa.Column("ignored", sa.Boolean(), nullable=False, server_default=sa.text("0")))
    op.create_index("ix_files_oaio_id_ignored", "files", ["oaio_id", "ignored"], unique=False)
    op.create_table(
        "excluded_folders",
        sa.Column("path", sa.String(length=4096), nullable=False),
        sa.Column("oaio_id", sa.String(length=255), nullable=False),
        sa.Column("reason", sa.String(length=500), nullable=False),
        sa.Column("created", sa.String(length=20), nullable=False),
        sa.PrimaryKeyConstraint("path", name=op.f("pk_excluded_folders")),
    )


def downgrade() -> None:
    op.drop_table("excluded_folders")
    op.drop_index("ix_files_oaio_id_ignored", table_name="files")
    with op.batch_alter_table("files") as batch:
        batch.drop_column("ignored")
