"""history.device: which device made a change, for the per-file rows of ``ctl history`` (issue 14 §3)

Revision ID: 0007
Revises: 0005
Create Date: 2026-12-04

Rows written before this revision keep an empty device (shown as unknown). Numbered 0007 because 0006 is another
branch's; when both are merged, this one revises 0006.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("history") as batch:
        batch.add_column(sa.Column("device", sa.String(length=255), nullable=False, server_default=""))


def downgrade() -> None:
    with op.batch_alter_table("history") as batch:
        batch.drop_column("device")
