"""events ids are never given twice: AUTOINCREMENT on SQLite

SQLite hands out max(rowid) + 1, so removing the newest job (its events the newest rows) gave its
event ids to the next events, and every cursor over the events table (the scheduler's queue view,
the live pages' streams, ``events/stream``'s ``after`` and Last-Event-ID) could pass over them.
With AUTOINCREMENT SQLite keeps the highest id it gave in ``sqlite_sequence``. PostgreSQL's
sequences never give an id twice: nothing changes there.

Revision ID: 0015
Revises: 0014
"""
from alembic import op


revision = '0015'
down_revision = '0014'
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    # a table rebuild is SQLite's only way to add AUTOINCREMENT; the copied rows set its sequence
    with op.batch_alter_table("events", recreate="always", table_kwargs={"sqlite_autoincrement": True}):
        pass


def downgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    with op.batch_alter_table("events", recreate="always", table_kwargs={"sqlite_autoincrement": False}):
        pass
