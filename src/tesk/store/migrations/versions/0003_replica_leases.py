"""Which server replica holds each task, and each replica's lease, so replicas on one store never run a
task twice and a dead replica's tasks are taken over.

`tasks.held_by` names the replica that runs (or will run) the task; NULL for tasks stored before this
revision, which the first replica to start adopts. `replicas` holds one row per replica: its lease
ends at `expires` (seconds since the epoch on the database's clock, so hosts' clocks never matter),
and `generation` changes on every registration and takeover, so exactly one replica wins a takeover.
The index serves the per-replica questions (my tasks in a state; does a dead replica hold any).

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("tasks", sa.Column("held_by", sa.String(255), nullable=True))
    op.create_index("ix_tasks_held_by_state", "tasks", ["held_by", "state"])
    op.create_table(
        "replicas",
        sa.Column("id", sa.String(255), primary_key=True),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("instance", sa.String(64), nullable=False),
        sa.Column("generation", sa.Integer, nullable=False),
        sa.Column("expires", sa.Float, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("replicas")
    op.drop_index("ix_tasks_held_by_state", "tasks")
    op.drop_column("tasks", "held_by")
