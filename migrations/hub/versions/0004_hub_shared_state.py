"""Hub state shared by every hub process on one database: the change clock, secrets, login failures

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-03 21:10:00

Several hub processes (and machines) may serve one PostgreSQL database (issue 12): what one process kept in
memory or in its data folder moves into the database. ``change_clock`` is the row every write transaction locks
first; it starts at the newest stamp already stored (or the upgrade's time), so stamps keep growing across the
upgrade and a cursor is never empty.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from oaiod.model import now_stamp

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "change_clock",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("stamp", sa.String(length=20), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_change_clock")),
    )
    op.create_table(
        "hub_secrets",
        sa.Column("name", sa.String(length=40), nullable=False),
        sa.Column("value", sa.String(length=128), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_hub_secrets")),
    )
    op.create_table(
        "login_failures",
        sa.Column("key_hash", sa.String(length=64), nullable=False),
        sa.Column("failures", sa.JSON(), nullable=False),
        sa.Column("lockouts", sa.Integer(), nullable=False),
        sa.Column("locked_until", sa.Float(), nullable=False),
        sa.Column("last", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("key_hash", name=op.f("pk_login_failures")),
    )
    with op.batch_alter_table("login_failures", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_login_failures_last"), ["last"], unique=False)
    op.execute(
        sa.text(
            "INSERT INTO change_clock (id, stamp) SELECT 1, COALESCE(MAX(stamp), :now) FROM ("
            "SELECT MAX(change_stamp) AS stamp FROM objects UNION ALL SELECT MAX(change_stamp) FROM subscriptions"
            " UNION ALL SELECT MAX(stamp) FROM tombstones) AS newest"
        ).bindparams(now=now_stamp())
    )


def downgrade() -> None:
    with op.batch_alter_table("login_failures", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_login_failures_last"))
    op.drop_table("login_failures")
    op.drop_table("hub_secrets")
    op.drop_table("change_clock")
