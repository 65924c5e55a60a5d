"""The first schema: tasks (keyed by time-ordered id), their tags, and server metadata.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "tasks",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("name", sa.Text, nullable=True),
        sa.Column("owner", sa.String(255), nullable=False),
        sa.Column("team", sa.String(255), nullable=True),
        sa.Column("created", sa.String(40), nullable=False),
        sa.Column("body", sa.Text, nullable=False),
    )
    op.create_index("ix_tasks_state_id", "tasks", ["state", "id"])
    op.create_index("ix_tasks_name_id", "tasks", ["name", "id"])
    op.create_index("ix_tasks_owner_id", "tasks", ["owner", "id"])
    op.create_index("ix_tasks_team_id", "tasks", ["team", "id"])
    op.create_table(
        "task_tags",
        sa.Column("task_id", sa.String(64), primary_key=True),
        sa.Column("key", sa.String(255), primary_key=True),
        sa.Column("value", sa.Text, nullable=False),
    )
    op.create_index("ix_task_tags_key_value", "task_tags", ["key", "value"])
    op.create_table(
        "meta",
        sa.Column("key", sa.String(64), primary_key=True),
        sa.Column("value", sa.Text, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("meta")
    op.drop_table("task_tags")
    op.drop_table("tasks")
