"""objects.mode: a folder is send-receive (the default), send-only or receive-only (Syncthing's folder types,
issue 14 §4); the engine decides its pull and push by it

Revision ID: 0008
Revises: 0005
Create Date: 2026-12-04
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("objects") as batch:
        batch.add_column(
            sa.Column("mode", sa.String(length=12), nullable=False, server_default=sa.text("'send-receive'"))
        )


def downgrade() -> None:
    with op.batch_alter_table("objects") as batch:
        batch.drop_column("mode")
