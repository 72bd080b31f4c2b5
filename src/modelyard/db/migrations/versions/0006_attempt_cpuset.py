"""attempts.cpuset and users.job_uid: a job's own cores, and its owner's own OS user

The scheduler hands out core indices like GPU indices (``attempts.cpuset``,
comma-joined, as ``attempts.gpus``). On a shared server (MODELYARD_JOB_UIDS)
each owner's jobs run as one unprivileged uid drawn from that range, kept on
the user row so the mapping is stable across restarts (``users.job_uid``).

Revision ID: 0006
Revises: 0009
"""
from alembic import op
import sqlalchemy as sa


revision = '0006'
down_revision = '0009'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('attempts', schema=None) as batch_op:
        batch_op.add_column(sa.Column('cpuset', sa.Text(), nullable=False, server_default=''))
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.add_column(sa.Column('job_uid', sa.Integer(), nullable=True))
        batch_op.create_unique_constraint('uq_users_job_uid', ['job_uid'])


def downgrade() -> None:
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.drop_constraint('uq_users_job_uid', type_='unique')
        batch_op.drop_column('job_uid')
    with op.batch_alter_table('attempts', schema=None) as batch_op:
        batch_op.drop_column('cpuset')
