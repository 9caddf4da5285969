"""Hub blob store: contents stored as their blocks (issue 13 §2)

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-04 02:00:00

``blob_blocks`` lists, for a content uploaded block by block, its blocks in order: the content is their
concatenation, and each block is an ordinary content of the content store. Existing contents stay whole.
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
    op.create_table(
        "blob_blocks",
        sa.Column("content", sa.String(length=64), nullable=False),
        sa.Column("seq", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("block", sa.String(length=64), nullable=False),
        sa.Column("offset", sa.BigInteger(), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("content", "seq", name=op.f("pk_blob_blocks")),
    )
    with op.batch_alter_table("blob_blocks", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_blob_blocks_block"), ["block"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("blob_blocks", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_blob_blocks_block"))
    op.drop_table("blob_blocks")
