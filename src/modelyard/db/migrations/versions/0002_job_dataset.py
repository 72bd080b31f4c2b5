"""jobs.dataset: the dataset version a job was submitted with

A job names a dataset as NAME or NAME:VERSION; the server resolves it at submit
and keeps the pinned "name:version" here, so a restart or a clone reads the same
data, and a version that active jobs use can be refused removal.

Revision ID: 0002
Revises: 0001
"""
from alembic import op
import sqlalchemy as sa


revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('dataset', sa.String(length=200), nullable=True))
        batch_op.create_index('ix_jobs_dataset', ['dataset', 'id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.drop_index('ix_jobs_dataset')
        batch_op.drop_column('dataset')
