"""MLflow 3's logged models: ``logged_models`` (each kept with the run that logged it, removed with
it) and ``logged_model_outputs`` (``log_outputs``: the runs a model is an output of).

Revision ID: 0014
Revises: 0013
"""
from alembic import op
import sqlalchemy as sa


revision = '0014'
down_revision = '0013'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('logged_models',
    sa.Column('id', sa.String(length=40), nullable=False),
    sa.Column('job_id', sa.Integer(), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('experiment_id', sa.Integer(), nullable=True),
    sa.Column('attempt', sa.Integer(), nullable=True),
    sa.Column('name', sa.String(length=250), nullable=False),
    sa.Column('model_type', sa.String(length=250), nullable=True),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('status_message', sa.Text(), nullable=True),
    sa.Column('params', sa.Text(), nullable=False),
    sa.Column('tags', sa.Text(), nullable=False),
    sa.Column('created_at', sa.Float(), nullable=False),
    sa.Column('updated_at', sa.Float(), nullable=False),
    sa.Column('deleted_at', sa.Float(), nullable=True),
    sa.ForeignKeyConstraint(['job_id'], ['jobs.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index('ix_logged_models_owner', 'logged_models', ['user_id', 'experiment_id'], unique=False)
    op.create_index('ix_logged_models_job', 'logged_models', ['job_id', 'name'], unique=False)
    op.create_table('logged_model_outputs',
    sa.Column('job_id', sa.Integer(), nullable=False),
    sa.Column('model_id', sa.String(length=40), nullable=False),
    sa.Column('step', sa.BigInteger(), nullable=False),
    sa.ForeignKeyConstraint(['job_id'], ['jobs.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['model_id'], ['logged_models.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('job_id', 'model_id')
    )


def downgrade() -> None:
    op.drop_table('logged_model_outputs')
    op.drop_index('ix_logged_models_job', table_name='logged_models')
    op.drop_index('ix_logged_models_owner', table_name='logged_models')
    op.drop_table('logged_models')
