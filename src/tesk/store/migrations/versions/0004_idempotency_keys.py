"""`Idempotency-Key` of CreateTask: which task a caller's request with a given key made.

A client that lost the answer to a POST (a 503, a reset connection) sends it again with the same key
and gets the same task instead of a second one. Keys are per caller (`owner`), so one user's key
never answers another's request. `created` lets an operator prune old keys.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "idempotency_keys",
        sa.Column("owner", sa.String(255), primary_key=True),
        sa.Column("key", sa.String(255), primary_key=True),
        sa.Column("task_id", sa.String(64), nullable=False),
        sa.Column("created", sa.String(40), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("idempotency_keys")
