"""the console: job parameters and tags, notices, users' email, quotas and notification choices, removals

- ``job_params``: a job's structured parameters (``--param NAME=VALUE``), one row each, with the
  number a value reads as, so the jobs table sorts and filters on them in SQL (``lr>=0.01``).
- ``job_tags``: a job's tags, editable after submit.
- ``jobs.removed_at``: ``modelyard rm`` (or retention) removed its data; the row stays while
  ``final/`` is kept, so the model can still be downloaded.
- ``users.email``, ``users.notify`` (which events reach the user how, JSON), and the quota an admin
  sets (``quota_gpus``, ``quota_cpus``, ``quota_queued``; NULL: no limit).
- ``notices``: what happened to a user's jobs, kept until read (the bell).
- ``removals``: what ``rm`` and the retention policy removed, and how many bytes.

Revision ID: 0012
Revises: 0011
"""
from alembic import op
import sqlalchemy as sa


revision = '0012'
down_revision = '0011'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('job_params',
    sa.Column('job_id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('value', sa.Text(), nullable=False),
    sa.Column('num', sa.Float(), nullable=True),
    sa.ForeignKeyConstraint(['job_id'], ['jobs.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('job_id', 'name')
    )
    op.create_index('ix_job_params_name', 'job_params', ['name', 'num'], unique=False)
    op.create_table('job_tags',
    sa.Column('job_id', sa.Integer(), nullable=False),
    sa.Column('tag', sa.String(length=64), nullable=False),
    sa.ForeignKeyConstraint(['job_id'], ['jobs.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('job_id', 'tag')
    )
    op.create_index('ix_job_tags_tag', 'job_tags', ['tag', 'job_id'], unique=False)
    op.create_table('notices',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('job_id', sa.Integer(), nullable=True),
    sa.Column('event', sa.String(length=16), nullable=False),
    sa.Column('title', sa.String(length=300), nullable=False),
    sa.Column('body', sa.Text(), nullable=False),
    sa.Column('link', sa.String(length=300), nullable=True),
    sa.Column('created_at', sa.Float(), nullable=False),
    sa.Column('read_at', sa.Float(), nullable=True),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['job_id'], ['jobs.id'], ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index('ix_notices_user', 'notices', ['user_id', 'read_at', 'id'], unique=False)
    op.create_table('removals',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('job_id', sa.Integer(), nullable=True),
    sa.Column('user_id', sa.Integer(), nullable=True),
    sa.Column('what', sa.String(length=32), nullable=False),
    sa.Column('detail', sa.Text(), nullable=False),
    sa.Column('bytes', sa.BigInteger(), nullable=False),
    sa.Column('reason', sa.String(length=32), nullable=False),
    sa.Column('actor', sa.String(length=100), nullable=True),
    sa.Column('time', sa.Float(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index('ix_removals_time', 'removals', ['time'], unique=False)
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('removed_at', sa.Float(), nullable=True))
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.add_column(sa.Column('email', sa.String(length=320), nullable=True))
        batch_op.add_column(sa.Column('notify', sa.Text(), nullable=True))
        batch_op.add_column(sa.Column('quota_gpus', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('quota_cpus', sa.Float(), nullable=True))
        batch_op.add_column(sa.Column('quota_queued', sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('users', schema=None) as batch_op:
        for column in ('quota_queued', 'quota_cpus', 'quota_gpus', 'notify', 'email'):
            batch_op.drop_column(column)
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.drop_column('removed_at')
    op.drop_index('ix_removals_time', table_name='removals')
    op.drop_table('removals')
    op.drop_index('ix_notices_user', table_name='notices')
    op.drop_table('notices')
    op.drop_index('ix_job_tags_tag', table_name='job_tags')
    op.drop_table('job_tags')
    op.drop_index('ix_job_params_name', table_name='job_params')
    op.drop_table('job_params')
