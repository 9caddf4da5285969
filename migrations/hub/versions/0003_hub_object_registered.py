"""Hub objects: the hub's own registration stamp

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-03 17:20:00

Clients decide which of their objects is the oldest (the client-root race, design §1) from what the hub attests,
not from the stamp an id ends with: ``objects.registered`` is the hub clock when ``register/`` committed. Rows
that exist already get their oldest stored version's arrival (``versions.created``), else their change stamp.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("objects", schema=None) as batch_op:
        batch_op.add_column(sa.Column("registered", sa.String(length=20), nullable=False, server_default=""))
    op.execute(
        "UPDATE objects SET registered = COALESCE("
        "(SELECT MIN(versions.created) FROM versions WHERE versions.oaio_id = objects.oaio_id), change_stamp)"
    )
    with op.batch_alter_table("objects", schema=None) as batch_op:
        batch_op.alter_column("registered", server_default=None)


def downgrade() -> None:
    with op.batch_alter_table("objects", schema=None) as batch_op:
        batch_op.drop_column("registered")
