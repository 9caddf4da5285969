"""empty_dirs: the empty folders of each object's root as the index saw them (they sync as the manifest's ``dirs``);
excluded_paths: the paths of an object not synced on this device (selective sync, ``ctl exclude``)

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-04

Both start empty: the next rescan (every daemon start runs one) finds the empty folders there are.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "empty_dirs",
        sa.Column("oaio_id", sa.String(length=255), nullable=False),
        sa.Column("path", sa.String(length=4096), nullable=False),
        sa.ForeignKeyConstraint(
            ["oaio_id"], ["objects.oaio_id"], name="fk_empty_dirs_oaio_id_objects", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("oaio_id", "path", name="pk_empty_dirs"),
    )
    op.create_table(
        "excluded_paths",
        sa.Column("oaio_id", sa.String(length=255), nullable=False),
        sa.Column("path", sa.String(length=4096), nullable=False),
        sa.Column("created", sa.String(length=20), nullable=False),
        sa.ForeignKeyConstraint(
            ["oaio_id"], ["objects.oaio_id"], name="fk_excluded_paths_oaio_id_objects", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("oaio_id", "path", name="pk_excluded_paths"),
    )


def downgrade() -> None:
    op.drop_table("excluded_paths")
    op.drop_table("empty_dirs")
