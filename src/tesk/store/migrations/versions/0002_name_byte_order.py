"""Compare task names in byte order on PostgreSQL, so `name_prefix` is a case-sensitive literal prefix.

The store filters `name_prefix` as the index range `prefix <= name < prefix + U+10FFFF`. That range is
a prefix only under byte (code point) order. PostgreSQL databases usually use a linguistic collation
(en_US, ICU), under which `ABC` sorts between `abc` and `abc` + U+10FFFF, so `name_prefix=abc` also
returned `ABC` and `Abcd`. The column gets the "C" collation; its index is rebuilt with it, so the
range stays an index scan. SQLite compares TEXT in byte order already: nothing to do there.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute('ALTER TABLE tasks ALTER COLUMN name TYPE text COLLATE "C"')


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute('ALTER TABLE tasks ALTER COLUMN name TYPE text COLLATE "default"')
