"""Hub share links and folder archives (issue 15 §1)

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-04 05:40:00

``share_links`` holds the links a user made to a file or folder of an object (read without an account, see
``oaiod/hub/links.py``); ``folder_archives`` the zip archives of folders the hub prepares in the background
(``oaiod/hub/archives.py``): their state and progress, so every hub process on the database answers their status.
Both go with their object and with the user they rely on (foreign keys with ON DELETE CASCADE).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "share_links",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("oaio_id", sa.String(length=255), nullable=False),
        sa.Column("creator", sa.String(length=150), nullable=False),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("stamp", sa.String(length=20), nullable=False),
        sa.Column("is_folder", sa.Boolean(), nullable=False),
        sa.Column("password_hash", sa.String(length=255), nullable=True),
        sa.Column("created", sa.String(length=20), nullable=False),
        sa.Column("expires", sa.String(length=20), nullable=False),
        sa.Column("revoked", sa.String(length=20), nullable=True),
        sa.ForeignKeyConstraint(
            ["creator"], ["users.username"], name=op.f("fk_share_links_creator_users"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["oaio_id"], ["objects.oaio_id"], name=op.f("fk_share_links_oaio_id_objects"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_share_links")),
    )
    with op.batch_alter_table("share_links", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_share_links_oaio_id"), ["oaio_id"], unique=False)
    op.create_table(
        "folder_archives",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("oaio_id", sa.String(length=255), nullable=False),
        sa.Column("stamp", sa.String(length=20), nullable=False),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("username", sa.String(length=150), nullable=False),
        sa.Column("link_id", sa.String(length=32), nullable=True),
        sa.Column("state", sa.String(length=12), nullable=False),
        sa.Column("done", sa.BigInteger(), nullable=False),
        sa.Column("total", sa.BigInteger(), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("error", sa.String(length=300), nullable=False),
        sa.Column("created", sa.String(length=20), nullable=False),
        sa.Column("updated", sa.String(length=20), nullable=False),
        sa.Column("expires", sa.String(length=20), nullable=False),
        sa.ForeignKeyConstraint(
            ["link_id"], ["share_links.id"], name=op.f("fk_folder_archives_link_id_share_links"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["oaio_id"], ["objects.oaio_id"], name=op.f("fk_folder_archives_oaio_id_objects"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["username"], ["users.username"], name=op.f("fk_folder_archives_username_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_folder_archives")),
    )
    with op.batch_alter_table("folder_archives", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_folder_archives_expires"), ["expires"], unique=False)
        batch_op.create_index(batch_op.f("ix_folder_archives_oaio_id"), ["oaio_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("folder_archives", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_folder_archives_oaio_id"))
        batch_op.drop_index(batch_op.f("ix_folder_archives_expires"))
    op.drop_table("folder_archives")
    with op.batch_alter_table("share_links", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_share_links_oaio_id"))
    op.drop_table("share_links")
