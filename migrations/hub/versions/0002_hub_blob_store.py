"""Hub blob store: blobs and blob_uploads

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22 00:40:35.680705
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
    op.create_table(
        "blob_uploads",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("owner", sa.String(length=150), nullable=False),
        sa.Column("scope", sa.String(length=255), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("name_hash", sa.String(length=64), nullable=False),
        sa.Column("upload_id_hash", sa.String(length=64), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("creator", sa.String(length=150), nullable=False),
        sa.Column("created", sa.String(length=20), nullable=False),
        sa.Column("deadline", sa.String(length=20), nullable=False),
        sa.Column("expires", sa.String(length=20), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_blob_uploads")),
        sa.UniqueConstraint("owner", "name_hash", name=op.f("uq_blob_uploads_owner_name_hash")),
        sa.UniqueConstraint("upload_id_hash", name=op.f("uq_blob_uploads_upload_id_hash")),
    )
    with op.batch_alter_table("blob_uploads", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_blob_uploads_deadline"), ["deadline"], unique=False)
        batch_op.create_index(batch_op.f("ix_blob_uploads_owner_scope"), ["owner", "scope"], unique=False)

    op.create_table(
        "blobs",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("owner", sa.String(length=150), nullable=False),
        sa.Column("scope", sa.String(length=255), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("name_hash", sa.String(length=64), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("creator", sa.String(length=150), nullable=False),
        sa.Column("created", sa.String(length=20), nullable=False),
        sa.Column("expires", sa.String(length=20), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_blobs")),
        sa.UniqueConstraint("owner", "name_hash", name=op.f("uq_blobs_owner_name_hash")),
    )
    with op.batch_alter_table("blobs", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_blobs_owner_scope"), ["owner", "scope"], unique=False)
        batch_op.create_index(batch_op.f("ix_blobs_sha256"), ["sha256"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("blobs", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_blobs_sha256"))
        batch_op.drop_index(batch_op.f("ix_blobs_owner_scope"))

    op.drop_table("blobs")
    with op.batch_alter_table("blob_uploads", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_blob_uploads_owner_scope"))
        batch_op.drop_index(batch_op.f("ix_blob_uploads_deadline"))

    op.drop_table("blob_uploads")
