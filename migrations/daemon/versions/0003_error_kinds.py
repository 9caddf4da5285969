"""errors.kind: what kind of failure a backed-off item had (oaiod.errors.FailureKind), inferred for existing rows

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-03

Rows written before this revision hold only a message. Their kind is read from it where the message says
(an HTTP status the HTTP layer wrote as ``answered NNN``, or an OS error's text); any other row is ``transient``, the
backoff every row had until now. Their next try stays as it was.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: ``(kind, LIKE pattern of the message)``, applied in this order (a later match wins): an OS error's text, then
#: the HTTP status the HTTP layer writes as "answered NNN" (any 4xx but 429 is invalid unless named)
INFERRED: tuple[tuple[str, str], ...] = (
    ("permission", "%Permission denied%"),
    ("permission", "%Read-only file system%"),
    ("quota", "%No space left on device%"),
    ("quota", "%Disk quota exceeded%"),
    ("invalid", "%File name too long%"),
    ("not_found", "%No such file or directory%"),
    ("invalid", "%answered 4__%"),
    ("transient", "%answered 429%"),
    ("auth", "%answered 401%"),
    ("permission", "%answered 403%"),
    ("not_found", "%answered 404%"),
    ("conflict", "%answered 409%"),
    ("not_found", "%answered 410%"),
    ("quota", "%answered 413%"),
    ("quota", "%answered 507%"),
)


def upgrade() -> None:
    with op.batch_alter_table("errors") as batch:
        batch.add_column(sa.Column("kind", sa.String(length=20), nullable=False, server_default="transient"))
    errors = sa.table("errors", sa.column("message", sa.String), sa.column("kind", sa.String))
    for kind, pattern in INFERRED:  # plain UPDATEs, so ``alembic upgrade --sql`` can write them too
        op.execute(sa.update(errors).where(errors.c.message.like(pattern)).values(kind=kind))


def downgrade() -> None:
    with op.batch_alter_table("errors") as batch:
        batch.drop_column("kind")
