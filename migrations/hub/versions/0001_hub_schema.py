"""Hub schema: users, sessions, objects, versions, subscriptions, tombstones, log, storage hosts

Revision ID: 0001
Revises:
Create Date: 2026-11-22 00:13:17.899153
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
        "objects",
        sa.Column("oaio_id", sa.String(length=255), nullable=False),
        sa.Column("client_stamp", sa.String(length=20), nullable=False),
        sa.Column("client_values", sa.JSON(), nullable=False),
        sa.Column("server_stamp", sa.String(length=20), nullable=False),
        sa.Column("server_values", sa.JSON(), nullable=False),
        sa.Column("csh_id", sa.String(length=150), nullable=True),
        sa.Column("username", sa.String(length=150), nullable=False),
        sa.Column("device_id", sa.String(length=150), nullable=False),
        sa.Column("app_id", sa.String(length=150), nullable=False),
        sa.Column("creator", sa.String(length=150), nullable=False),
        sa.Column("change_stamp", sa.String(length=20), nullable=False),
        sa.PrimaryKeyConstraint("oaio_id", name=op.f("pk_objects")),
    )
    with op.batch_alter_table("objects", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_objects_change_stamp"), ["change_stamp"], unique=False)

    op.create_table(
        "storage_hosts",
        sa.Column("csh_id", sa.String(length=150), nullable=False),
        sa.Column("kwargs", sa.JSON(), nullable=False),
        sa.Column("updated", sa.String(length=20), nullable=False),
        sa.PrimaryKeyConstraint("csh_id", name=op.f("pk_storage_hosts")),
    )
    op.create_table(
        "users",
        sa.Column("username", sa.String(length=150), nullable=False),
        sa.Column("password_hash", sa.String(length=255), nullable=True),
        sa.Column("is_supervisor", sa.Boolean(), nullable=False),
        sa.Column("created", sa.String(length=20), nullable=False),
        sa.PrimaryKeyConstraint("username", name=op.f("pk_users")),
    )
    op.create_table(
        "action_log",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("stamp", sa.String(length=20), nullable=False),
        sa.Column("username", sa.String(length=150), nullable=False),
        sa.Column("device_id", sa.String(length=150), nullable=False),
        sa.Column("app_id", sa.String(length=150), nullable=False),
        sa.Column("action", sa.String(length=20), nullable=False),
        sa.Column("oaio_id", sa.String(length=255), nullable=True),
        sa.Column("detail", sa.String(length=300), nullable=False),
        sa.ForeignKeyConstraint(
            ["username"], ["users.username"], name=op.f("fk_action_log_username_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_action_log")),
    )
    with op.batch_alter_table("action_log", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_action_log_stamp"), ["stamp"], unique=False)
        batch_op.create_index(batch_op.f("ix_action_log_username"), ["username"], unique=False)

    op.create_table(
        "sessions",
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("username", sa.String(length=150), nullable=False),
        sa.Column("created", sa.String(length=20), nullable=False),
        sa.Column("expires", sa.String(length=20), nullable=False),
        sa.ForeignKeyConstraint(
            ["username"], ["users.username"], name=op.f("fk_sessions_username_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("token_hash", name=op.f("pk_sessions")),
    )
    with op.batch_alter_table("sessions", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_sessions_expires"), ["expires"], unique=False)
        batch_op.create_index(batch_op.f("ix_sessions_username"), ["username"], unique=False)

    op.create_table(
        "subscriptions",
        sa.Column("Pid", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("oaio_id", sa.String(length=255), nullable=False),
        sa.Column("username", sa.String(length=150), nullable=False),
        sa.Column("access_right", sa.String(length=1), nullable=False),
        sa.Column("change_stamp", sa.String(length=20), nullable=False),
        sa.ForeignKeyConstraint(
            ["oaio_id"], ["objects.oaio_id"], name=op.f("fk_subscriptions_oaio_id_objects"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["username"], ["users.username"], name=op.f("fk_subscriptions_username_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("Pid", name=op.f("pk_subscriptions")),
        sa.UniqueConstraint("oaio_id", "username", name=op.f("uq_subscriptions_oaio_id_username")),
    )
    with op.batch_alter_table("subscriptions", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_subscriptions_username_change_stamp"), ["username", "change_stamp"], unique=False
        )

    op.create_table(
        "tombstones",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("oaio_id", sa.String(length=255), nullable=False),
        sa.Column("username", sa.String(length=150), nullable=False),
        sa.Column("stamp", sa.String(length=20), nullable=False),
        sa.ForeignKeyConstraint(
            ["username"], ["users.username"], name=op.f("fk_tombstones_username_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tombstones")),
        sa.UniqueConstraint("oaio_id", "username", name=op.f("uq_tombstones_oaio_id_username")),
    )
    with op.batch_alter_table("tombstones", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_tombstones_username_stamp"), ["username", "stamp"], unique=False)

    op.create_table(
        "versions",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("oaio_id", sa.String(length=255), nullable=False),
        sa.Column("stamp", sa.String(length=20), nullable=False),
        sa.Column("values", sa.JSON(), nullable=False),
        sa.Column("csh_id", sa.String(length=150), nullable=True),
        sa.Column("username", sa.String(length=150), nullable=False),
        sa.Column("device_id", sa.String(length=150), nullable=False),
        sa.Column("app_id", sa.String(length=150), nullable=False),
        sa.Column("created", sa.String(length=20), nullable=False),
        sa.ForeignKeyConstraint(
            ["oaio_id"], ["objects.oaio_id"], name=op.f("fk_versions_oaio_id_objects"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_versions")),
        sa.UniqueConstraint("oaio_id", "stamp", name=op.f("uq_versions_oaio_id_stamp")),
    )


def downgrade() -> None:
    op.drop_table("versions")
    with op.batch_alter_table("tombstones", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_tombstones_username_stamp"))

    op.drop_table("tombstones")
    with op.batch_alter_table("subscriptions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_subscriptions_username_change_stamp"))

    op.drop_table("subscriptions")
    with op.batch_alter_table("sessions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_sessions_username"))
        batch_op.drop_index(batch_op.f("ix_sessions_expires"))

    op.drop_table("sessions")
    with op.batch_alter_table("action_log", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_action_log_username"))
        batch_op.drop_index(batch_op.f("ix_action_log_stamp"))

    op.drop_table("action_log")
    op.drop_table("users")
    op.drop_table("storage_hosts")
    with op.batch_alter_table("objects", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_objects_change_stamp"))

    op.drop_table("objects")
