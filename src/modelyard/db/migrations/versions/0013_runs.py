"""meeting users where they are: MLflow experiments, runs with no process, run tags and inputs, sweeps

- ``jobs.kind``: "job" (a command the platform runs) or "run" (created through the MLflow API by a
  script outside any job; it has no process and no attempt).
- ``jobs.experiment_id``: its MLflow experiment (NULL: the owner's Default, MLflow's "0").
- ``jobs.sweep_id``, ``jobs.trial``: a sweep's trial and its number in the sweep's Optuna study.
- ``jobs.run_deleted_at``: MLflow's delete-run (hidden from runs/search until restore-run).
- ``run_tags``: MLflow tags, key -> value; ``run_inputs``: datasets a run logged with ``log_input``.
- ``experiments``: each user's MLflow experiments, unique by name per owner.
- ``sweeps``: searches over parameters (README "Sweeps").

Revision ID: 0013
Revises: 0012
"""
from alembic import op
import sqlalchemy as sa


revision = '0013'
down_revision = '0012'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('run_tags',
    sa.Column('job_id', sa.Integer(), nullable=False),
    sa.Column('key', sa.String(length=250), nullable=False),
    sa.Column('value', sa.Text(), nullable=False),
    sa.ForeignKeyConstraint(['job_id'], ['jobs.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('job_id', 'key')
    )
    op.create_table('run_inputs',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('job_id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=500), nullable=False),
    sa.Column('digest', sa.String(length=64), nullable=False),
    sa.Column('dataset', sa.Text(), nullable=False),
    sa.Column('tags', sa.Text(), nullable=False),
    sa.Column('created_at', sa.Float(), nullable=False),
    sa.ForeignKeyConstraint(['job_id'], ['jobs.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('job_id', 'name', 'digest', name='uq_run_inputs_dataset')
    )
    op.create_table('experiments',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=500), nullable=False),
    sa.Column('lifecycle_stage', sa.String(length=16), nullable=False),
    sa.Column('tags', sa.Text(), nullable=False),
    sa.Column('created_at', sa.Float(), nullable=False),
    sa.Column('updated_at', sa.Float(), nullable=False),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('user_id', 'name', name='uq_experiments_owner_name')
    )
    op.create_table('sweeps',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('spec', sa.Text(), nullable=False),
    sa.Column('study', sa.String(length=200), nullable=False),
    sa.Column('snapshot_key', sa.String(length=300), nullable=True),
    sa.Column('best_job_id', sa.Integer(), nullable=True),
    sa.Column('message', sa.Text(), nullable=True),
    sa.Column('created_at', sa.Float(), nullable=False),
    sa.Column('ended_at', sa.Float(), nullable=True),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index('ix_sweeps_user', 'sweeps', ['user_id', 'id'], unique=False)
    op.create_index('ix_sweeps_state', 'sweeps', ['state'], unique=False)
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('kind', sa.String(length=8), server_default='job', nullable=False))
        batch_op.add_column(sa.Column('experiment_id', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('sweep_id', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('trial', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('run_deleted_at', sa.Float(), nullable=True))
        batch_op.create_index('ix_jobs_experiment', ['experiment_id', 'id'], unique=False)
        batch_op.create_index('ix_jobs_sweep', ['sweep_id', 'trial'], unique=True)


def downgrade() -> None:
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.drop_index('ix_jobs_sweep')
        batch_op.drop_index('ix_jobs_experiment')
        for column in ('run_deleted_at', 'trial', 'sweep_id', 'experiment_id', 'kind'):
            batch_op.drop_column(column)
    op.drop_index('ix_sweeps_state', table_name='sweeps')
    op.drop_index('ix_sweeps_user', table_name='sweeps')
    op.drop_table('sweeps')
    op.drop_table('experiments')
    op.drop_table('run_inputs')
    op.drop_table('run_tags')
